"""Execute action chunks at control rate, blending consecutive chunks without stutter.

Time axis: action k of a chunk computed from an observation stamped ``t_obs`` is the setpoint for
``t_obs + k * step_period``. Inference takes tens of ms while the arm keeps moving, so when a chunk
arrives its steps already in the past are dropped and it is blended into what is being executed.
A chunk that arrives with nothing executing (the first after a start, a reset or a hold) starts
from its first action instead: the arm has held still at the observed state meanwhile, so none of it
has happened yet. Dropping its "past" steps started the plan ahead of the arm, which then chased it,
and with delta actions the next observations planned from an arm lagging its own plan.

  * ``replace``   — switch to the new chunk at once (a jump is possible; the safety node rate-limits).
  * ``crossfade`` — weight on the new chunk ramps 0 → 1 over ``blend_steps`` steps: no jump.
  * ``average``   — like crossfade, but the ramp ends at ``average_weight`` and old and new are
                    averaged until the old chunk runs out (temporal ensembling, ACT-style smoothing).
  * ``rtc``       — spliced like crossfade; the difference is upstream: the chunk was sampled guided
                    towards this executor's plan (runtime/rtc.py), so the two already agree where the
                    ramp blends them.

The blended result is resampled onto the new chunk's grid, so memory stays bounded however many
chunks arrive. After the last step the final setpoint is held. NaN/inf never comes out: a chunk
containing them is rejected with ValueError before it touches the trajectory.
"""

from __future__ import annotations

import numpy as np

BLEND_POLICIES = ("replace", "crossfade", "average", "rtc")


def interpolate(times: np.ndarray, values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Rows of ``values`` (N, D) at ``times`` (N,), sampled at ``t``: piecewise-linear per dimension;
    before the first time the first row is held, after the last the last row."""
    return np.stack([np.interp(t, times, values[:, d]) for d in range(values.shape[1])], axis=-1)


class ChunkExecutor:
    def __init__(self, dim: int, step_period: float, blend: str = "crossfade", blend_steps: int = 4,
                 average_weight: float = 0.5):
        if blend not in BLEND_POLICIES:
            raise ValueError(f"blend must be one of {BLEND_POLICIES}, got {blend!r}")
        if step_period <= 0 or blend_steps < 1 or not 0 < average_weight <= 1:
            raise ValueError("step_period > 0, blend_steps >= 1 and 0 < average_weight <= 1 are required")
        self.dim, self.step_period, self.blend = dim, step_period, blend
        self.blend_steps, self.average_weight = blend_steps, average_weight
        self._times: np.ndarray | None = None     # (N,) seconds
        self._values: np.ndarray | None = None    # (N, dim)
        self.chunk_stamp: float | None = None     # observation stamp of the newest chunk

    @property
    def active(self) -> bool:
        return self._times is not None

    def reset(self, hold: np.ndarray | None = None, now: float = 0.0) -> None:
        """Forget all chunks; optionally hold a position from ``now``."""
        self.chunk_stamp = None
        if hold is None:
            self._times = self._values = None
        else:
            self._times = np.array([now])
            self._values = np.asarray(hold, np.float64).reshape(1, self.dim)

    def plan(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The trajectory being executed: (times (N,), rows (N, dim)), copies; None without one."""
        return None if self._times is None else (self._times.copy(), self._values.copy())

    def setpoint(self, now: float) -> np.ndarray | None:
        if self._times is None:
            return None
        return interpolate(self._times, self._values, np.asarray([now]))[0]

    def add_chunk(self, actions: np.ndarray, obs_stamp: float, now: float) -> int:
        """Blend a new chunk in; returns how many of its steps were already in the past (dropped)."""
        actions = np.asarray(actions, np.float64)
        if actions.ndim != 2 or actions.shape[1] != self.dim or actions.shape[0] < 1:
            raise ValueError(f"chunk must be (H, {self.dim}), got {actions.shape}")
        if not np.all(np.isfinite(actions)):
            raise ValueError("chunk contains NaN/inf")
        if self.chunk_stamp is not None and obs_stamp <= self.chunk_stamp:
            raise ValueError(f"chunk from stamp {obs_stamp:.3f} is not newer than the executing one "
                             f"({self.chunk_stamp:.3f})")
        start = obs_stamp if self._times is not None else max(obs_stamp, now)   # idle arm: from action 0
        times = start + self.step_period * np.arange(actions.shape[0])
        future = times > now
        dropped = int((times < now).sum())
        # Keep the step just before `now` (if any) so interpolation at `now` stays exact.
        keep = np.maximum(np.argmax(future) - 1, 0) if future.any() else actions.shape[0] - 1
        new_t, new_v = times[keep:], actions[keep:]
        if self._times is None or self.blend == "replace":
            self._times, self._values = new_t, new_v
            self.chunk_stamp = obs_stamp
            return dropped
        ramp_end = now + self.blend_steps * self.step_period
        old_end = float(self._times[-1])
        ramp_span = self.step_period * np.arange(1, self.blend_steps + 1)
        # The blends' own breakpoints join the grid so each ramp is exact where it starts and ends.
        points = np.concatenate([[now], new_t[new_t > now], now + ramp_span, max(old_end, now) + ramp_span])
        grid = np.unique(points[(points >= now) & (points <= max(new_t[-1], now))])
        old = interpolate(self._times, self._values, grid)
        new = interpolate(new_t, new_v, grid)
        ramp = np.clip((grid - now) / (ramp_end - now), 0.0, 1.0)
        if self.blend == "average":
            # Weight ramps to average_weight, and once the old chunk has run out ramps on to 1.
            tail = np.clip((grid - max(old_end, now)) / (ramp_end - now), 0.0, 1.0)
            weight = ramp * self.average_weight + tail * (1 - self.average_weight)
        else:
            weight = ramp
        self._times = grid
        self._values = (1 - weight)[:, None] * old + weight[:, None] * new
        self.chunk_stamp = obs_stamp
        return dropped


def slow_down(chunk: np.ndarray, step_period: float, max_velocity: np.ndarray) -> tuple[np.ndarray, float]:
    """Time-scale a chunk whose steps need more than ``max_velocity`` (per dimension) instead of
    refusing it: each segment gets the time its fastest joint needs, and the path (unchanged) is
    resampled onto the ``step_period`` grid, so the result has more rows. Returns (chunk, factor)
    with factor = new duration / old duration (1.0: already feasible, returned as is)."""
    chunk = np.asarray(chunk, np.float64)
    vmax = np.asarray(max_velocity, np.float64)
    if len(chunk) < 2:
        return chunk, 1.0
    needed = np.max(np.abs(np.diff(chunk, axis=0)) / vmax, axis=1)    # seconds per segment
    durations = np.maximum(step_period, needed)
    if np.all(durations <= step_period * (1 + 1e-9)):
        return chunk, 1.0
    knots = np.concatenate([[0.0], np.cumsum(durations)])
    grid = np.arange(0.0, knots[-1] + 1e-9, step_period)
    if grid[-1] < knots[-1] - 1e-9:
        grid = np.append(grid, knots[-1])   # keep the chunk's end point (last segment slower still)
    return interpolate(knots, chunk, grid), knots[-1] / (step_period * (len(chunk) - 1))
