"""LeRobot dataset v3.0: the layout, the schema and the reader (the writer: ``lerobot_writer.py``).
Written with pyarrow + PyAV, no lerobot import (it cannot share an environment with transformers 5 /
torch 2.13); ``lerobot_check.py`` encodes what lerobot 0.4.x's tools expect and the tests run it on
every dataset they write.

Layout (RUNTIME.md): meta/info.json, meta/stats.json, meta/tasks.parquet,
meta/episodes/chunk-000/file-000.parquet, data/chunk-000/file-XXX.parquet,
videos/<key>/chunk-000/file-XXX.mp4.

Time follows lerobot's convention: row k of an episode has ``timestamp = k / fps`` and its video
frames sit at exactly that time, so frames are found by timestamp and can never drift from their rows.
The real capture time of each row's observation is kept beside it (``capture_time``, seconds, the
observation's own stamp), and ``frame_repeated`` flags the rows whose observation is the previous
row's because no new one arrived in time (see ``episode_sampler.py``).
"""

from __future__ import annotations

import json
import os
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
CAMERA_PREFIX = "observation.images."
TIMESTAMP_TOLERANCE_S = 1e-4    # lerobot's tolerance_s: how far a frame may sit from its row's timestamp


class DatasetError(ValueError):
    """A dataset that cannot be read or appended to; the message names the file and the problem."""


@dataclass(frozen=True)
class Schema:
    fps: int
    cameras: dict            # camera name -> (height, width)
    state_names: list
    action_names: list

    def video_key(self, camera: str) -> str:
        return CAMERA_PREFIX + camera

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
        feats["capture_time"] = {"dtype": "float64", "shape": [1], "names": None}
        feats["frame_repeated"] = {"dtype": "bool", "shape": [1], "names": None}
        for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                           ("index", "int64"), ("task_index", "int64")):
            feats[key] = {"dtype": dtype, "shape": [1], "names": None}
        return feats


def atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def tasks_table(tasks: list[str]) -> pa.Table:
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


class LeRobotV3Dataset:
    """Reads a v3.0 dataset (ours or lerobot's): metadata, per-episode numeric data, decoded frames.
    Cameras are the video and image features (any key; ``observation.images.<name>`` is named <name>)."""

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
        self.episodes = self.episode_rows(stats=False)
        tasks_path = self.root / "meta" / "tasks.parquet"
        if not tasks_path.is_file():
            raise DatasetError(f"dataset incomplete: {tasks_path} is missing")
        rows = pq.read_table(tasks_path).to_pylist()
        # lerobot writes a pandas frame whose index holds the task strings; read it without pandas
        name = next((k for k in ("task", "__index_level_0__") if rows and k in rows[0]), None)
        if rows and name is None:
            raise DatasetError(f"{tasks_path}: no task column (expected 'task' or a pandas index)")
        self.tasks = [str(r[name]) for r in sorted(rows, key=lambda r: r["task_index"])]
        features = self.info["features"]
        self.video_keys = [k for k, v in features.items() if v["dtype"] == "video"]
        self.image_keys = [k for k, v in features.items() if v["dtype"] == "image"]
        self.camera_keys = [k for k, v in features.items() if v["dtype"] in ("video", "image")]
        self.cameras = {camera_name(k): k for k in self.camera_keys}
        self._table_cache: tuple[Path, pa.Table] | None = None
        for ep in self.episodes:
            for path in self.episode_files(ep).values():
                if not path.is_file():
                    raise DatasetError(f"dataset incomplete: episode {ep['episode_index']} needs {path}, "
                                       "which is missing")

    def episode_rows(self, stats: bool) -> list[dict]:
        """meta/episodes rows of the committed episodes, with their ``stats/...`` columns or without."""
        paths = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not paths:
            raise DatasetError(f"dataset incomplete: no meta/episodes parquet files under {self.root}")
        rows = []
        for path in paths:
            names = pq.read_schema(path).names
            rows.extend(pq.read_table(path, columns=[n for n in names if stats or not n.startswith("stats/")])
                        .to_pylist())
        rows = [r for r in rows if r["episode_index"] < self.info["total_episodes"]]
        return sorted(rows, key=lambda r: r["episode_index"])

    def episode_files(self, ep: dict) -> dict:
        files = {"data": self.root / self.info["data_path"].format(chunk_index=ep["data/chunk_index"],
                                                                    file_index=ep["data/file_index"])}
        for key in self.video_keys:
            files[key] = self.root / self.info["video_path"].format(
                video_key=key, chunk_index=ep[f"videos/{key}/chunk_index"], file_index=ep[f"videos/{key}/file_index"])
        return files

    def episode_table(self, ep: dict, columns=None) -> pa.Table:
        path = self.episode_files(ep)["data"]
        if self._table_cache is None or self._table_cache[0] != path:   # lerobot puts many episodes in one file
            self._table_cache = (path, pq.read_table(path))
        table = self._table_cache[1]
        idx = np.asarray(table["episode_index"].to_numpy())
        table = table.filter(pa.array(idx == ep["episode_index"]))
        return table if columns is None else table.select(columns)

    def episode_data(self, ep: dict) -> dict:
        """Numeric columns of one episode as numpy arrays (image columns: ``episode_frames``)."""
        table = self.episode_table(ep)
        out = {}
        for name in table.column_names:
            if name in self.image_keys:
                continue
            col = table[name]
            out[name] = np.stack(col.to_pylist()).astype(np.float32) if pa.types.is_fixed_size_list(col.type) \
                or pa.types.is_list(col.type) else col.to_numpy()
        return out

    def episode_frames(self, ep: dict, key: str) -> np.ndarray:
        """Decoded RGB frames (T, H, W, 3) of one episode for one camera key."""
        if key in self.image_keys:
            return np.stack([_decode_image(cell, key) for cell in self.episode_table(ep, [key])[key].to_pylist()])
        if key not in self.video_keys:
            raise DatasetError(f"{self.root}: no camera {key!r}; cameras: {self.camera_keys}")
        import av

        start = ep[f"videos/{key}/from_timestamp"]
        end = ep[f"videos/{key}/to_timestamp"]
        frames = []
        with av.open(str(self.episode_files(ep)[key])) as container:
            stream = container.streams.video[0]
            if start > 0:      # lerobot concatenates episodes into one file: seek instead of decoding from 0
                container.seek(int(start / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                t = float(frame.pts * stream.time_base)
                if t >= end - TIMESTAMP_TOLERANCE_S:
                    break
                if t >= start - TIMESTAMP_TOLERANCE_S:
                    frames.append(frame.to_ndarray(format="rgb24"))
        return np.stack(frames)

    def frame_times(self, ep: dict, key: str) -> np.ndarray:
        """Presentation times (s, in the file) of one episode's frames of one video key, in order, read
        from the packets without decoding."""
        import av

        start, end = ep[f"videos/{key}/from_timestamp"], ep[f"videos/{key}/to_timestamp"]
        with av.open(str(self.episode_files(ep)[key])) as container:
            stream = container.streams.video[0]
            times = sorted(float(p.pts * stream.time_base) for p in container.demux(stream) if p.pts is not None)
        return np.array([t for t in times if start - TIMESTAMP_TOLERANCE_S <= t < end - TIMESTAMP_TOLERANCE_S])


def camera_name(key: str) -> str:
    """``observation.images.laptop`` -> ``laptop``; a camera key outside that prefix keeps its name."""
    return key[len(CAMERA_PREFIX):] if key.startswith(CAMERA_PREFIX) else key


def _decode_image(cell, key: str) -> np.ndarray:
    """One cell of an image column (Hugging Face ``Image``: {bytes, path}) -> RGB uint8."""
    import cv2

    data = cell.get("bytes") if isinstance(cell, dict) else None
    if not data:
        raise DatasetError(f"{key}: an image cell without embedded bytes ({cell!r:.80}); only embedded "
                           "images (what lerobot writes) are read")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"{key}: an image cell that does not decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
