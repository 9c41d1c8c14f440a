"""Feature statistics laid out as LeRobot v3.0 lays them out.

Per episode, ``meta/episodes`` has one column per feature and statistic: ``stats/<feature>/<stat>``
with ``stat`` in min, max, mean, std, count, q01, q10, q50, q90, q99 — vectors for numeric features,
(3, 1, 1) per-channel values in [0, 1] for camera features, ``count`` always ``[n]``. ``meta/stats.json``
holds the same statistics for the whole dataset.

Quantiles are exact where the data is at hand. Per episode they are computed from every row (numeric)
or from a 256-bin histogram per channel (pixels are uint8, so the histogram loses nothing). For the
whole dataset, numeric quantiles are recomputed from all rows (the writer keeps them; they are small).
Camera quantiles cannot be recovered from per-episode summaries, so they are combined the way lerobot
combines them since it dropped the weighted mean as incorrect: the smallest lower quantile and the
largest upper quantile across episodes. This gives a conservative envelope, not an estimate.
"""

from __future__ import annotations

import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{int(round(q * 100)):02d}" for q in QUANTILES)
STAT_KEYS = ("min", "max", "mean", "std", "count") + QUANTILE_KEYS
IMAGE_STATS_MAX_SIDE = 150        # frames are subsampled by a stride to at most this side, as lerobot does


def numeric_stats(values) -> dict:
    """Exact statistics of a (n,) or (n, d) array, each as an ndarray (count: shape (1,))."""
    values = np.asarray(values, np.float64)
    if values.ndim == 1:
        values = values[:, None]
    out = {"min": values.min(0), "max": values.max(0), "mean": values.mean(0), "std": values.std(0),
           "count": np.array([len(values)], np.int64)}
    for q, key in zip(QUANTILES, QUANTILE_KEYS):
        out[key] = np.quantile(values, q, axis=0)
    return out


class PixelHistogram:
    """Per-channel histogram of an episode's frames; statistics in lerobot's (3, 1, 1), [0, 1] layout."""

    def __init__(self):
        self.counts = np.zeros((3, 256), np.int64)
        self.frames = 0

    def add(self, rgb: np.ndarray) -> None:
        stride = max(1, int(np.ceil(max(rgb.shape[:2]) / IMAGE_STATS_MAX_SIDE)))
        pixels = rgb[::stride, ::stride].reshape(-1, 3)
        for c in range(3):
            self.counts[c] += np.bincount(pixels[:, c], minlength=256)
        self.frames += 1

    def stats(self) -> dict:
        levels = np.arange(256) / 255.0
        total = self.counts.sum(1)
        mean = (self.counts * levels).sum(1) / total
        var = (self.counts * (levels - mean[:, None]) ** 2).sum(1) / total
        present = self.counts > 0
        cdf = np.cumsum(self.counts, 1) / total[:, None]
        out = {"min": levels[present.argmax(1)], "max": levels[255 - present[:, ::-1].argmax(1)], "mean": mean,
               "std": np.sqrt(var)}
        for q, key in zip(QUANTILES, QUANTILE_KEYS):
            out[key] = levels[np.array([np.searchsorted(cdf[c], q) for c in range(3)])]
        out = {k: v.reshape(3, 1, 1) for k, v in out.items()}
        out["count"] = np.array([self.frames], np.int64)
        return out


def combine_envelope(per_episode: list[dict]) -> dict:
    """Dataset statistics from per-episode ones when the data is not at hand (camera features):
    exact min / max / mean / std (count-weighted, parallel variance); quantiles as an envelope."""
    counts = np.array([float(s["count"][0]) for s in per_episode])
    means = np.stack([np.asarray(s["mean"], np.float64) for s in per_episode])
    weights = (counts / counts.sum()).reshape((-1,) + (1,) * (means.ndim - 1))
    mean = (weights * means).sum(0)
    variances = np.stack([np.asarray(s["std"], np.float64) ** 2 for s in per_episode])
    var = (weights * (variances + (means - mean) ** 2)).sum(0)
    out = {"min": np.min([s["min"] for s in per_episode], 0), "max": np.max([s["max"] for s in per_episode], 0),
           "mean": mean, "std": np.sqrt(var), "count": np.array([int(counts.sum())], np.int64)}
    for key in QUANTILE_KEYS:
        pick = np.min if int(key[1:]) <= 50 else np.max
        out[key] = pick([s[key] for s in per_episode], 0)
    return out


def episode_columns(stats: dict) -> dict:
    """{feature: {stat: array}} -> the flat ``stats/<feature>/<stat>`` columns of meta/episodes."""
    return {f"stats/{feature}/{key}": np.asarray(value).tolist()
            for feature, values in stats.items() for key, value in values.items()}


def from_episode_columns(row: dict) -> dict:
    """The inverse of ``episode_columns`` for one meta/episodes row (unknown columns ignored)."""
    out: dict = {}
    for column, value in row.items():
        parts = column.split("/")
        if len(parts) == 3 and parts[0] == "stats" and value is not None:
            out.setdefault(parts[1], {})[parts[2]] = np.asarray(value, np.float64)
    return out


def to_json(stats: dict) -> dict:
    return {feature: {k: np.asarray(v).tolist() for k, v in values.items()} for feature, values in stats.items()}
