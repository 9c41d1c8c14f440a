"""What lerobot 0.4.x's loader and tools (lerobot-edit-dataset, aggregate, lerobot-train,
lerobot-dataset-viz) expect of a v3.0 dataset, as checks: ``problems(root)`` lists every way a dataset
falls short, ``twinbrain-record check DIR`` prints them. The tests run it on every dataset they write.

Encoded expectations (each from a failure seen with the real tools or from their source):
- files: meta/info.json, meta/stats.json, meta/tasks.parquet, meta/episodes/*.parquet, the data and
  video files each episode names;
- meta/episodes: the location columns (data/, videos/<key>/, meta/episodes/ chunk and file indices,
  dataset_from/to_index) and one ``stats/<feature>/<stat>`` column per feature and statistic, with
  per-channel (3, 1, 1) values for cameras; episodes contiguous and counted in info.json;
- meta/stats.json: every feature, cameras included, with min/max/mean/std/count and the quantiles;
- data: per episode ``length`` rows, frame_index 0..n-1, ``timestamp == frame_index / fps``;
- video: per episode exactly ``length`` frames at from_timestamp + k / fps (lerobot looks frames up
  by timestamp with a 1e-4 s tolerance).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .lerobot_stats import STAT_KEYS
from .lerobot_v3 import TIMESTAMP_TOLERANCE_S as TOLERANCE_S
from .lerobot_v3 import DatasetError, LeRobotV3Dataset

LOCATION_COLUMNS = ("episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                    "dataset_to_index", "meta/episodes/chunk_index", "meta/episodes/file_index")
VIDEO_COLUMNS = ("chunk_index", "file_index", "from_timestamp", "to_timestamp")


def problems(root: str | Path, check_videos: bool = True) -> list[str]:
    root = Path(root)
    try:
        ds = LeRobotV3Dataset(root)
    except DatasetError as exc:
        return [str(exc)]
    found: list[str] = []
    features = ds.info["features"]
    stat_features = {k: v for k, v in features.items() if v["dtype"] != "string"}
    found += _info_problems(ds)
    found += _episode_column_problems(ds, stat_features)
    found += _stats_json_problems(root / "meta" / "stats.json", stat_features)
    for ep in ds.episodes:
        found += _data_problems(ds, ep)
        if check_videos:
            for key in ds.video_keys:
                found += _video_problems(ds, ep, key)
    return found


def _is_camera(feature: dict) -> bool:
    return feature["dtype"] in ("video", "image")


def _stat_shape(feature: dict, stat: str) -> tuple:
    if stat == "count":
        return (1,)
    return (3, 1, 1) if _is_camera(feature) else (int(np.prod(feature["shape"])),)


def _info_problems(ds: LeRobotV3Dataset) -> list[str]:
    info, found = ds.info, []
    for key in ("fps", "features", "total_episodes", "total_frames", "total_tasks", "chunks_size", "data_path",
                "video_path", "splits"):
        if key not in info:
            found.append(f"info.json: no {key!r}")
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        if key not in info.get("features", {}):
            found.append(f"info.json: no feature {key!r}")
    if len(ds.episodes) != info.get("total_episodes"):
        found.append(f"info.json: total_episodes {info.get('total_episodes')}, meta/episodes has {len(ds.episodes)}")
    frames = sum(ep["length"] for ep in ds.episodes)
    if frames != info.get("total_frames"):
        found.append(f"info.json: total_frames {info.get('total_frames')}, the episodes add up to {frames}")
    if len(ds.tasks) != info.get("total_tasks"):
        found.append(f"info.json: total_tasks {info.get('total_tasks')}, tasks.parquet has {len(ds.tasks)}")
    return found


def _episode_column_problems(ds: LeRobotV3Dataset, stat_features: dict) -> list[str]:
    rows = ds.episode_rows(stats=True)
    if not rows:
        return []
    found = []
    columns = set(rows[0])
    wanted = list(LOCATION_COLUMNS) + [f"videos/{k}/{c}" for k in ds.video_keys for c in VIDEO_COLUMNS]
    found += [f"meta/episodes: no column {c!r}" for c in wanted if c not in columns]
    stray = sorted(c for c in columns if c.startswith("stats/") and len(c.split("/")) != 3)
    found += [f"meta/episodes: {c!r} is not stats/<feature>/<stat>" for c in stray]
    for name, feature in stat_features.items():
        for stat in STAT_KEYS:
            column = f"stats/{name}/{stat}"
            if column not in columns:
                found.append(f"meta/episodes: no column {column!r}")
                continue
            shape = np.asarray(rows[0][column], np.float64).shape
            if shape != _stat_shape(feature, stat):
                found.append(f"meta/episodes: {column} has shape {shape}, lerobot expects {_stat_shape(feature, stat)}")
    start = 0
    for i, row in enumerate(rows):
        if row.get("episode_index") != i:
            found.append(f"meta/episodes: row {i} has episode_index {row.get('episode_index')} (must be contiguous)")
        if row.get("dataset_from_index") != start or row.get("dataset_to_index", 0) - start != row.get("length"):
            found.append(f"episode {i}: dataset_from/to_index {row.get('dataset_from_index')}.."
                         f"{row.get('dataset_to_index')} do not follow on from {start} with length {row.get('length')}")
        start = row.get("dataset_to_index", start)
    return found


def _stats_json_problems(path: Path, stat_features: dict) -> list[str]:
    if not path.is_file():
        return [f"{path} is missing (lerobot-train needs it)"]
    stats = json.loads(path.read_text())
    found = []
    for name, feature in stat_features.items():
        if name not in stats:
            found.append(f"stats.json: no statistics for {name!r}")
            continue
        for stat in STAT_KEYS:
            if stat not in stats[name]:
                found.append(f"stats.json: {name} has no {stat!r}")
            elif np.asarray(stats[name][stat]).shape != _stat_shape(feature, stat):
                found.append(f"stats.json: {name}/{stat} has shape {np.asarray(stats[name][stat]).shape}, "
                             f"lerobot expects {_stat_shape(feature, stat)}")
    return found


def _data_problems(ds: LeRobotV3Dataset, ep: dict) -> list[str]:
    i, n = ep["episode_index"], ep["length"]
    table = ds.episode_table(ep, ["timestamp", "frame_index", "index", "task_index"])
    if table.num_rows != n:
        return [f"episode {i}: {table.num_rows} data rows, length says {n}"]
    found = []
    frame_index = table["frame_index"].to_numpy()
    if not np.array_equal(frame_index, np.arange(n)):
        found.append(f"episode {i}: frame_index is not 0..{n - 1}")
    off_grid = np.abs(table["timestamp"].to_numpy().astype(np.float64) - frame_index / ds.fps)
    if off_grid.max() > TOLERANCE_S:
        found.append(f"episode {i}: timestamps off the k / fps grid by up to {off_grid.max():.4f} s "
                     f"(row {int(off_grid.argmax())})")
    if not np.array_equal(table["index"].to_numpy(), np.arange(ep["dataset_from_index"], ep["dataset_to_index"])):
        found.append(f"episode {i}: index is not dataset_from_index..dataset_to_index")
    if table["task_index"].to_numpy().max() >= len(ds.tasks):
        found.append(f"episode {i}: a task_index beyond tasks.parquet")
    return found


def _video_problems(ds: LeRobotV3Dataset, ep: dict, key: str) -> list[str]:
    i, n = ep["episode_index"], ep["length"]
    start, end = ep[f"videos/{key}/from_timestamp"], ep[f"videos/{key}/to_timestamp"]
    if abs((end - start) - n / ds.fps) > TOLERANCE_S:
        return [f"episode {i} {key}: video span {end - start:.4f} s for {n} rows at {ds.fps} fps"]
    times = ds.frame_times(ep, key)
    if len(times) != n:
        return [f"episode {i} {key}: {len(times)} video frames for {n} rows"]
    off = np.abs(times - (start + np.arange(n) / ds.fps))
    if off.max() > TOLERANCE_S:
        return [f"episode {i} {key}: frame {int(off.argmax())} is {off.max():.4f} s off its row's timestamp"]
    return []


def main(root: str) -> int:
    found = problems(root)
    episodes = None if found else len(LeRobotV3Dataset(root).episodes)
    print(json.dumps({"dataset": str(root), "ok": not found, "episodes": episodes, "problems": found}))
    return 0 if not found else 1
