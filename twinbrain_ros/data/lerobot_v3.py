"""LeRobot dataset v3.0, written with pyarrow + PyAV (no lerobot import: it cannot share an
environment with transformers 5 / torch 2.13).

Layout (RUNTIME.md): meta/info.json, meta/stats.json, meta/tasks.parquet,
meta/episodes/chunk-000/file-000.parquet, data/chunk-000/file-XXX.parquet,
videos/<key>/chunk-000/file-XXX.mp4. Each episode gets its own data and video file (v3 allows several
episodes per file; one per file is what makes crash safety simple).

Crash safety: an episode is written to ``.staging/`` while it is recorded. ``finalize_episode``
closes its files, moves them into place and only then rewrites the metadata (each file atomically:
temp + rename, info.json last). Until then nothing in meta/ refers to it, so a crash (even SIGKILL)
mid-episode leaves every earlier episode intact and the dataset loadable; the unfinished episode is
kept under ``.incomplete/`` rather than deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
CHUNKS_SIZE = 1000
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


class DatasetError(ValueError):
    """A dataset that cannot be read or appended to; the message names the file and the problem."""


@dataclass(frozen=True)
class Schema:
    fps: int
    cameras: dict            # camera name -> (height, width)
    state_names: list
    action_names: list

    def video_key(self, camera: str) -> str:
        return f"observation.images.{camera}"

    def features(self, codec: str) -> dict:
        feats = {}
        for cam, (h, w) in self.cameras.items():
            feats[self.video_key(cam)] = {
                "dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                "info": {"video.height": h, "video.width": w, "video.codec": codec, "video.pix_fmt": "yuv420p",
                         "video.is_depth_map": False, "video.fps": self.fps, "video.channels": 3, "has_audio": False}}
        feats["observation.state"] = {"dtype": "float32", "shape": [len(self.state_names)],
                                      "names": list(self.state_names)}
        feats["action"] = {"dtype": "float32", "shape": [len(self.action_names)], "names": list(self.action_names)}
        for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                           ("index", "int64"), ("task_index", "int64")):
            feats[key] = {"dtype": dtype, "shape": [1], "names": None}
        return feats


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _stats(values: np.ndarray) -> dict:
    values = np.asarray(values, np.float64)
    out = {"min": values.min(0), "max": values.max(0), "mean": values.mean(0), "std": values.std(0),
           "count": np.array([len(values)])}
    for q in QUANTILES:
        out[f"q{int(round(q * 100)):02d}"] = np.quantile(values, q, axis=0)
    return {k: v.tolist() for k, v in out.items()}


def _aggregate(per_episode: list[dict]) -> dict:
    """Count-weighted merge of per-episode stats (quantiles: weighted mean, as lerobot does)."""
    counts = np.array([s["count"][0] for s in per_episode], np.float64)
    w = counts / counts.sum()
    mean = sum(wi * np.array(s["mean"]) for wi, s in zip(w, per_episode))
    var = sum(wi * (np.array(s["std"]) ** 2 + (np.array(s["mean"]) - mean) ** 2) for wi, s in zip(w, per_episode))
    out = {"min": np.min([s["min"] for s in per_episode], 0).tolist(), "max": np.max([s["max"] for s in per_episode],
                                                                                     0).tolist(),
           "mean": mean.tolist(), "std": np.sqrt(var).tolist(), "count": [int(counts.sum())]}
    for key in per_episode[0]:
        if key.startswith("q"):
            out[key] = sum(wi * np.array(s[key]) for wi, s in zip(w, per_episode)).tolist()
    return out


def _tasks_table(tasks: list[str]) -> pa.Table:
    """tasks.parquet as lerobot's pandas writer lays it out: task strings as the (named) index."""
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
                     "metadata": None},
                    {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
                     "metadata": None}],
        "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.3"}
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


class VideoWriter:
    def __init__(self, path: Path, fps: int, height: int, width: int, codec: str):
        import av

        self.container = av.open(str(path), mode="w")
        self.stream = self.container.add_stream({"h264": "libx264", "av1": "libsvtav1"}.get(codec, codec), rate=fps)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        if codec == "h264":
            self.stream.options = {"crf": "18", "preset": "veryfast", "g": "2"}   # g=2: fast random access
        self.av = av

    def add(self, rgb: np.ndarray) -> None:
        for packet in self.stream.encode(self.av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


class LeRobotV3Writer:
    def __init__(self, root: str | Path, schema: Schema, robot_type: str = "twinbrain_sim_arm", codec: str = "h264"):
        self.root, self.schema, self.codec, self.robot_type = Path(root), schema, codec, robot_type
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-probe"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise DatasetError(f"cannot write to dataset folder {self.root}: {exc}") from None
        self.info_path = self.root / "meta" / "info.json"
        self.episodes: list[dict] = []
        self.tasks: list[str] = []
        if self.info_path.exists():
            self._load_existing()
        self._recover_staging()
        self._episode = None

    # -- opening ------------------------------------------------------------------------------
    def _load_existing(self) -> None:
        reader = LeRobotV3Dataset(self.root)
        expected = self.schema.features(self.codec)
        theirs = reader.info["features"]
        def described(features):
            return {k: (v["dtype"], v["shape"], v.get("names")) for k, v in features.items()}

        ours, existing = described(expected), described(theirs)
        differences = []
        if reader.info["fps"] != self.schema.fps:
            differences.append(f"fps {reader.info['fps']} there, {self.schema.fps} here")
        differences += [f"{k}: {existing.get(k, 'absent')} there, {ours.get(k, 'absent')} here"
                        for k in sorted(set(ours) | set(existing)) if ours.get(k) != existing.get(k)]
        if differences:
            raise DatasetError(f"{self.info_path}: refusing to append episodes with a different schema "
                               f"({'; '.join(differences)}); use another folder")
        self.episodes = reader.episodes
        self.tasks = reader.tasks

    def _recover_staging(self) -> None:
        staging = self.root / ".staging"
        if staging.exists():
            target = self.root / ".incomplete" / time.strftime("%Y%m%d-%H%M%S")
            target.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(target)

    # -- recording ----------------------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    def start_episode(self, task: str) -> None:
        if self._episode is not None:
            raise DatasetError("an episode is already being recorded; finalize or discard it first")
        if not task or not task.strip():
            raise DatasetError("every episode needs a task (the instruction)")
        staging = self.root / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        writers = {cam: VideoWriter(staging / f"{cam}.mp4", self.schema.fps, h, w, self.codec)
                   for cam, (h, w) in self.schema.cameras.items()}
        self._episode = {"task": task.strip(), "writers": writers, "state": [], "action": [], "timestamp": [],
                         "staging": staging}

    def add_frame(self, images: dict, state, action, timestamp: float) -> None:
        ep = self._episode
        if ep is None:
            raise DatasetError("add_frame before start_episode")
        for cam, (h, w) in self.schema.cameras.items():
            img = images.get(cam)
            if img is None or img.shape != (h, w, 3) or img.dtype != np.uint8:
                raise DatasetError(f"camera {cam!r}: expected ({h}, {w}, 3) uint8, got "
                                   f"{None if img is None else (img.shape, img.dtype)}")
            ep["writers"][cam].add(img)
        ep["state"].append(np.asarray(state, np.float32).reshape(len(self.schema.state_names)))
        ep["action"].append(np.asarray(action, np.float32).reshape(len(self.schema.action_names)))
        ep["timestamp"].append(float(timestamp))

    def discard_episode(self) -> None:
        if self._episode is not None:
            for writer in self._episode["writers"].values():
                writer.close()
            shutil.rmtree(self._episode["staging"], ignore_errors=True)
            self._episode = None

    def finalize_episode(self) -> int:
        ep, self._episode = self._episode, None
        if ep is None:
            raise DatasetError("finalize_episode without an episode")
        for writer in ep["writers"].values():
            writer.close()
        n = len(ep["timestamp"])
        if n == 0:
            shutil.rmtree(ep["staging"], ignore_errors=True)
            raise DatasetError("episode has no frames; nothing was saved")
        index = len(self.episodes)
        start = self.episodes[-1]["dataset_to_index"] if self.episodes else 0
        if ep["task"] not in self.tasks:
            self.tasks.append(ep["task"])
        task_index = self.tasks.index(ep["task"])
        ts = np.asarray(ep["timestamp"], np.float64)
        ts = (ts - ts[0]).astype(np.float32)                       # real sample times, from the episode start
        state, action = np.stack(ep["state"]), np.stack(ep["action"])
        table = pa.table({
            "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(state.ravel()), state.shape[1]),
            "action": pa.FixedSizeListArray.from_arrays(pa.array(action.ravel()), action.shape[1]),
            "timestamp": pa.array(ts), "frame_index": pa.array(np.arange(n, dtype=np.int64)),
            "episode_index": pa.array(np.full(n, index, np.int64)),
            "index": pa.array(np.arange(start, start + n, dtype=np.int64)),
            "task_index": pa.array(np.full(n, task_index, np.int64)),
        })
        chunk, file = divmod(index, CHUNKS_SIZE)
        data_path = self.root / DATA_PATH.format(chunk_index=chunk, file_index=file)
        _atomic_write(data_path, lambda p: pq.write_table(table, p))
        record = {"episode_index": index, "tasks": [ep["task"]], "length": n, "data/chunk_index": chunk,
                  "data/file_index": file, "dataset_from_index": start, "dataset_to_index": start + n,
                  "stats/observation.state": json.dumps(_stats(state)), "stats/action": json.dumps(_stats(action))}
        for cam in self.schema.cameras:
            key = self.schema.video_key(cam)
            video_path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
            video_path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(ep["staging"] / f"{cam}.mp4", video_path)
            record.update({f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                           f"videos/{key}/from_timestamp": 0.0, f"videos/{key}/to_timestamp": n / self.schema.fps})
        self.episodes.append(record)
        self._write_meta()
        shutil.rmtree(ep["staging"], ignore_errors=True)
        return index

    def _write_meta(self) -> None:
        meta = self.root / "meta"
        episodes = pa.Table.from_pylist(self.episodes)
        _atomic_write(self.root / EPISODES_PATH, lambda p: pq.write_table(episodes, p))
        _atomic_write(meta / "tasks.parquet", lambda p: pq.write_table(_tasks_table(self.tasks), p))
        stats = {k: _aggregate([json.loads(e[f"stats/{k}"]) for e in self.episodes]) for k in ("observation.state",
                                                                                               "action")}
        _atomic_write(meta / "stats.json", lambda p: p.write_text(json.dumps(stats, indent=2)))
        total = self.episodes[-1]["dataset_to_index"]
        info = {"codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type,
                "total_episodes": len(self.episodes),
                "total_frames": total, "total_tasks": len(self.tasks), "chunks_size": CHUNKS_SIZE,
                "data_files_size_in_mb": 100, "video_files_size_in_mb": 500, "fps": self.schema.fps,
                "splits": {"train": f"0:{len(self.episodes)}"}, "data_path": DATA_PATH, "video_path": VIDEO_PATH,
                "features": self.schema.features(self.codec)}
        _atomic_write(self.info_path, lambda p: p.write_text(json.dumps(info, indent=2)))   # last: commits the episode


class LeRobotV3Dataset:
    """Reads a v3.0 dataset (ours or lerobot's): metadata, per-episode numeric data, decoded frames."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise DatasetError(f"not a LeRobot dataset: {info_path} is missing")
        try:
            self.info = json.loads(info_path.read_text())
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{info_path} is not valid JSON: {exc}") from None
        if self.info.get("codebase_version") != CODEBASE_VERSION:
            raise DatasetError(f"{info_path}: codebase_version {self.info.get('codebase_version')!r}, expected v3.0")
        self.fps = self.info["fps"]
        episode_files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        self.episodes = self._read_parquet_rows(episode_files, "meta/episodes")
        self.episodes = [e for e in self.episodes if e["episode_index"] < self.info["total_episodes"]]
        tasks_path = self.root / "meta" / "tasks.parquet"
        if not tasks_path.is_file():
            raise DatasetError(f"dataset incomplete: {tasks_path} is missing")
        rows = pq.read_table(tasks_path).to_pylist()
        # lerobot writes a pandas frame whose index holds the task strings; read it without pandas
        name = next((k for k in ("task", "__index_level_0__") if rows and k in rows[0]), None)
        if rows and name is None:
            raise DatasetError(f"{tasks_path}: no task column (expected 'task' or a pandas index)")
        self.tasks = [str(r[name]) for r in sorted(rows, key=lambda r: r["task_index"])]
        self.video_keys = [k for k, v in self.info["features"].items() if v["dtype"] == "video"]
        for ep in self.episodes:
            for path in self.episode_files(ep).values():
                if not path.is_file():
                    raise DatasetError(f"dataset incomplete: episode {ep['episode_index']} needs {path}, "
                                       "which is missing")

    def _read_parquet_rows(self, paths, what) -> list[dict]:
        if not paths:
            raise DatasetError(f"dataset incomplete: no {what} parquet files under {self.root}")
        rows = []
        for path in paths:
            rows.extend(pq.read_table(path).to_pylist())
        return sorted(rows, key=lambda r: r["episode_index"])

    def episode_files(self, ep: dict) -> dict:
        files = {"data": self.root / self.info["data_path"].format(chunk_index=ep["data/chunk_index"],
                                                                    file_index=ep["data/file_index"])}
        for key in self.video_keys:
            files[key] = self.root / self.info["video_path"].format(
                video_key=key, chunk_index=ep[f"videos/{key}/chunk_index"], file_index=ep[f"videos/{key}/file_index"])
        return files

    def episode_data(self, ep: dict) -> dict:
        """Numeric columns of one episode as numpy arrays."""
        table = pq.read_table(self.episode_files(ep)["data"])
        idx = np.asarray(table["episode_index"].to_numpy())
        table = table.filter(pa.array(idx == ep["episode_index"]))
        out = {}
        for name in table.column_names:
            col = table[name]
            out[name] = np.stack(col.to_pylist()).astype(np.float32) if pa.types.is_fixed_size_list(col.type) \
                or pa.types.is_list(col.type) else col.to_numpy()
        return out

    def episode_frames(self, ep: dict, key: str) -> np.ndarray:
        """Decoded RGB frames (T, H, W, 3) of one episode for one video key."""
        import av

        start = ep[f"videos/{key}/from_timestamp"]
        end = ep[f"videos/{key}/to_timestamp"]
        frames = []
        with av.open(str(self.episode_files(ep)[key])) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                t = float(frame.pts * stream.time_base)
                if start - 1e-4 <= t < end - 1e-4:
                    frames.append(frame.to_ndarray(format="rgb24"))
        return np.stack(frames)
