"""LeRobot v3.0 writer/reader: round trip, crash safety (SIGKILL), refusals with clear errors."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest

from twinbrain_ros.data.lerobot_v3 import DatasetError, LeRobotV3Dataset, LeRobotV3Writer, Schema
from twinbrain_ros.data.record_sim import record

NAMES = [f"j{i}" for i in range(3)]
SCHEMA = Schema(10, {"front": (48, 64)}, NAMES, NAMES)


def _frame(t):
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, : 8 + 4 * t] = (200, 40, 40)     # a bar that grows: each frame is distinct
    return img


def _write(root, episodes=2, frames=8, schema=SCHEMA):
    w = LeRobotV3Writer(root, schema)
    for e in range(episodes):
        w.start_episode(f"task {e % 2}")
        for t in range(frames):
            w.add_frame({"front": _frame(t)}, np.full(3, e + t / 10), np.full(3, -t), 0.1 * t + 0.003 * (t % 2))
        w.finalize_episode()
    return w


def test_round_trip(tmp_path):
    _write(tmp_path / "ds")
    ds = LeRobotV3Dataset(tmp_path / "ds")
    assert ds.info["codebase_version"] == "v3.0" and ds.info["total_episodes"] == 2 and ds.info["total_frames"] == 16
    assert ds.tasks == ["task 0", "task 1"]
    ep = ds.episodes[1]
    data = ds.episode_data(ep)
    np.testing.assert_allclose(data["observation.state"][:, 0], 1 + np.arange(8) / 10, rtol=1e-6)
    np.testing.assert_allclose(data["timestamp"], 0.1 * np.arange(8) + 0.003 * (np.arange(8) % 2),
                               atol=1e-6)  # real stamps
    assert list(data["index"]) == list(range(8, 16)) and set(data["task_index"]) == {1}
    frames = ds.episode_frames(ep, "observation.images.front")
    assert frames.shape == (8, 48, 64, 3)
    for t in range(8):
        assert np.abs(frames[t].astype(int) - _frame(t).astype(int)).mean() < 6   # codec tolerance
    stats = json.loads((tmp_path / "ds" / "meta" / "stats.json").read_text())
    assert set(stats["action"]) >= {"min", "max", "mean", "std", "count", "q01", "q99"}
    assert stats["action"]["count"] == [16] and stats["action"]["min"] == [-7.0] * 3
    # tasks.parquet carries the pandas index layout lerobot's reader expects
    assert b"pandas" in pq.read_schema(tmp_path / "ds" / "meta" / "tasks.parquet").metadata


def test_appending_and_schema_mismatch(tmp_path):
    _write(tmp_path / "ds")
    w = _write(tmp_path / "ds", episodes=1)           # same schema: appended
    assert w.num_episodes == 3 and LeRobotV3Dataset(tmp_path / "ds").info["total_frames"] == 24
    other = Schema(10, {"front": (48, 64)}, NAMES + ["j3"], NAMES)
    with pytest.raises(DatasetError, match="refusing to append"):
        LeRobotV3Writer(tmp_path / "ds", other)
    with pytest.raises(DatasetError, match="refusing to append.*fps 10 there, 30 here"):
        LeRobotV3Writer(tmp_path / "ds", Schema(30, {"front": (48, 64)}, NAMES, NAMES))
    with pytest.raises(DatasetError,
                       match=r"observation\.images\.front: .*\[48, 64, 3\].* there, .*\[96, 128, 3\].* here"):
        LeRobotV3Writer(tmp_path / "ds", Schema(10, {"front": (96, 128)}, NAMES, NAMES))   # only a camera size differs


def test_missing_files_and_unwritable_folder_give_clear_errors(tmp_path):
    _write(tmp_path / "ds")
    (tmp_path / "ds" / "videos" / "observation.images.front" / "chunk-000" / "file-001.mp4").unlink()
    with pytest.raises(DatasetError, match="episode 1 needs .*file-001.mp4, which is missing"):
        LeRobotV3Dataset(tmp_path / "ds")
    with pytest.raises(DatasetError, match="info.json is missing"):
        LeRobotV3Dataset(tmp_path / "nothing")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DatasetError, match="cannot write to dataset folder"):
        LeRobotV3Writer(blocker / "ds", SCHEMA)


def test_sigkill_mid_episode_keeps_earlier_episodes(tmp_path):
    root = tmp_path / "ds"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_dataset import _write, _frame, SCHEMA
        import numpy as np
        w = _write({str(root)!r}, episodes=2)
        w.start_episode("doomed")
        for t in range(5):
            w.add_frame({{"front": _frame(t)}}, np.zeros(3), np.zeros(3), t / 10)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd())
    assert proc.returncode == -9
    ds = LeRobotV3Dataset(root)
    assert ds.info["total_episodes"] == 2 and len(ds.episodes) == 2
    assert ds.episode_frames(ds.episodes[1], "observation.images.front").shape[0] == 8
    w = LeRobotV3Writer(root, SCHEMA)             # the next session carries on; the wreck is kept aside
    assert any((root / ".incomplete").iterdir()) and not (root / ".staging").exists()
    w.start_episode("next")
    w.add_frame({"front": _frame(0)}, np.zeros(3), np.zeros(3), 0.0)
    assert w.finalize_episode() == 2


def test_bad_frames_and_discard(tmp_path):
    w = LeRobotV3Writer(tmp_path / "ds", SCHEMA)
    w.start_episode("x")
    with pytest.raises(DatasetError, match="expected \\(48, 64, 3\\) uint8"):
        w.add_frame({"front": np.zeros((10, 10, 3), np.uint8)}, np.zeros(3), np.zeros(3), 0.0)
    w.discard_episode()
    with pytest.raises(DatasetError, match="needs a task"):
        w.start_episode("  ")


def test_record_sim_writes_successful_expert_episodes(tmp_path):
    result = record(str(tmp_path / "sim"), episodes=2, image_size=(48, 48), task="touch")
    assert result["episodes"] == 2
    ds = LeRobotV3Dataset(tmp_path / "sim")
    assert ds.tasks == ["touch the green cube"] and len(ds.video_keys) == 2
    data = ds.episode_data(ds.episodes[0])
    assert data["action"].shape[1] == 7 and np.all(np.isfinite(data["action"]))
    assert np.abs(np.diff(data["observation.state"], axis=0)).max() > 0.01    # the arm moved
