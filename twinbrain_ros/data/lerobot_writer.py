"""Writes LeRobot v3.0 datasets episode by episode (the layout: ``lerobot_v3.py``).

Each episode gets its own data and video file. v3 allows several episodes per file; one per file is
what keeps crash safety simple, and lerobot's aggregate tool packs them into larger files when wanted.

Crash safety: an episode is written to ``.staging/`` while it is recorded. ``finalize_episode``
closes its files, moves them into place and only then rewrites the metadata (each file atomically:
temp + rename, info.json last). Until then nothing in meta/ refers to it, so a crash (even SIGKILL)
mid-episode leaves every earlier episode intact and the dataset loadable; the unfinished episode is
kept under ``.incomplete/`` rather than deleted.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import lerobot_stats as stats
from .lerobot_v3 import (
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    DATA_PATH,
    EPISODES_PATH,
    VIDEO_PATH,
    DatasetError,
    LeRobotV3Dataset,
    Schema,
    atomic_write,
    tasks_table,
)

# the per-row columns besides the cameras, in the order they are written
COLUMNS = ("observation.state", "action", "capture_time", "frame_repeated", "timestamp", "frame_index",
           "episode_index", "index", "task_index")


class VideoWriter:
    def __init__(self, path: Path, fps: int, height: int, width: int, codec: str):
        import av

        self.container = av.open(str(path), mode="w")
        self.stream = self.container.add_stream({"h264": "libx264", "av1": "libsvtav1"}.get(codec, codec), rate=fps)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        if codec == "h264":
            self.stream.options = {"crf": "18", "preset": "veryfast", "g": "2"}   # g=2: fast random access
        self.av = av
        self.frames = 0

    def add(self, rgb: np.ndarray) -> None:
        for packet in self.stream.encode(self.av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
            self.container.mux(packet)
        self.frames += 1

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
        self.episodes: list[dict] = []        # full meta/episodes rows, stats columns included
        self.tasks: list[str] = []
        self._columns: dict[str, list[np.ndarray]] = {k: [] for k in COLUMNS}   # every row: exact dataset stats
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
        self.episodes = reader.episode_rows(stats=True)
        self.tasks = reader.tasks
        for ep in reader.episodes:
            data = reader.episode_data(ep)
            for key in COLUMNS:
                self._columns[key].append(data[key])

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

    @property
    def frames_in_episode(self) -> int:
        return 0 if self._episode is None else len(self._episode["capture_time"])

    def start_episode(self, task: str) -> None:
        if self._episode is not None:
            raise DatasetError("an episode is already being recorded; finalize or discard it first")
        if not task or not task.strip():
            raise DatasetError("every episode needs a task (the instruction)")
        staging = self.root / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        writers = {cam: VideoWriter(staging / f"{cam}.mp4", self.schema.fps, h, w, self.codec)
                   for cam, (h, w) in self.schema.cameras.items()}
        self._episode = {"task": task.strip(), "writers": writers, "state": [], "action": [], "capture_time": [],
                         "frame_repeated": [], "pixels": {cam: stats.PixelHistogram() for cam in writers},
                         "staging": staging}

    def add_frame(self, images: dict, state, action, capture_time: float, repeated: bool = False) -> None:
        """One row: its frame index sets its time (k / fps); ``capture_time`` is the observation's own
        stamp; ``repeated`` marks an observation carried over from the previous row."""
        ep = self._episode
        if ep is None:
            raise DatasetError("add_frame before start_episode")
        for cam, (h, w) in self.schema.cameras.items():
            img = images.get(cam)
            if img is None or img.shape != (h, w, 3) or img.dtype != np.uint8:
                raise DatasetError(f"camera {cam!r}: expected ({h}, {w}, 3) uint8, got "
                                   f"{None if img is None else (img.shape, img.dtype)}")
        state = np.asarray(state, np.float32).reshape(len(self.schema.state_names))
        action = np.asarray(action, np.float32).reshape(len(self.schema.action_names))
        for cam in self.schema.cameras:       # every camera gets exactly one frame per row, or none does
            ep["writers"][cam].add(images[cam])
            ep["pixels"][cam].add(images[cam])
        ep["state"].append(state)
        ep["action"].append(action)
        ep["capture_time"].append(float(capture_time))
        ep["frame_repeated"].append(bool(repeated))

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
        n = len(ep["capture_time"])
        if n == 0:
            shutil.rmtree(ep["staging"], ignore_errors=True)
            raise DatasetError("episode has no frames; nothing was saved")
        frames = {cam: w.frames for cam, w in ep["writers"].items()}
        if any(count != n for count in frames.values()):
            raise DatasetError(f"internal: {n} rows but video frames {frames}")   # add_frame makes this impossible
        index = len(self.episodes)
        start = self.episodes[-1]["dataset_to_index"] if self.episodes else 0
        if ep["task"] not in self.tasks:
            self.tasks.append(ep["task"])
        columns = {"observation.state": np.stack(ep["state"]), "action": np.stack(ep["action"]),
                   "capture_time": np.asarray(ep["capture_time"], np.float64),
                   "frame_repeated": np.asarray(ep["frame_repeated"], bool),
                   "timestamp": (np.arange(n) / self.schema.fps).astype(np.float32),
                   "frame_index": np.arange(n, dtype=np.int64), "episode_index": np.full(n, index, np.int64),
                   "index": np.arange(start, start + n, dtype=np.int64),
                   "task_index": np.full(n, self.tasks.index(ep["task"]), np.int64)}
        table = pa.table({k: pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), v.shape[1]) if v.ndim == 2
                          else pa.array(v) for k, v in columns.items()})
        chunk, file = divmod(index, CHUNKS_SIZE)
        data_path = self.root / DATA_PATH.format(chunk_index=chunk, file_index=file)
        atomic_write(data_path, lambda p: pq.write_table(table, p))
        record = {"episode_index": index, "tasks": [ep["task"]], "length": n, "data/chunk_index": chunk,
                  "data/file_index": file, "dataset_from_index": start, "dataset_to_index": start + n}
        for cam in self.schema.cameras:
            key = self.schema.video_key(cam)
            video_path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
            video_path.parent.mkdir(parents=True, exist_ok=True)
            (ep["staging"] / f"{cam}.mp4").replace(video_path)
            record.update({f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                           f"videos/{key}/from_timestamp": 0.0, f"videos/{key}/to_timestamp": n / self.schema.fps})
        record.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        episode_stats = {k: stats.numeric_stats(v) for k, v in columns.items()}
        episode_stats.update({self.schema.video_key(cam): h.stats() for cam, h in ep["pixels"].items()})
        record.update(stats.episode_columns(episode_stats))
        self.episodes.append(record)
        for key in COLUMNS:
            self._columns[key].append(columns[key])
        self._write_meta()
        shutil.rmtree(ep["staging"], ignore_errors=True)
        return index

    def dataset_stats(self) -> dict:
        out = {k: stats.numeric_stats(np.concatenate(v)) for k, v in self._columns.items()}
        per_episode = [stats.from_episode_columns(e) for e in self.episodes]
        for cam in self.schema.cameras:
            key = self.schema.video_key(cam)
            out[key] = stats.combine_envelope([s[key] for s in per_episode])
        return out

    def _write_meta(self) -> None:
        meta = self.root / "meta"
        episodes = pa.Table.from_pylist(self.episodes)
        atomic_write(self.root / EPISODES_PATH, lambda p: pq.write_table(episodes, p))
        atomic_write(meta / "tasks.parquet", lambda p: pq.write_table(tasks_table(self.tasks), p))
        dataset_stats = stats.to_json(self.dataset_stats())
        atomic_write(meta / "stats.json", lambda p: p.write_text(json.dumps(dataset_stats, indent=2)))
        total = self.episodes[-1]["dataset_to_index"]
        info = {"codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type,
                "total_episodes": len(self.episodes),
                "total_frames": total, "total_tasks": len(self.tasks), "chunks_size": CHUNKS_SIZE,
                "data_files_size_in_mb": 100, "video_files_size_in_mb": 500, "fps": self.schema.fps,
                "splits": {"train": f"0:{len(self.episodes)}"}, "data_path": DATA_PATH, "video_path": VIDEO_PATH,
                "features": self.schema.features(self.codec)}
        atomic_write(self.info_path, lambda p: p.write_text(json.dumps(info, indent=2)))   # last: commits the episode
