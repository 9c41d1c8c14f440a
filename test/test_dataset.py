"""LeRobot v3.0 writer/reader: round trip, lerobot's layout (checked by data/lerobot_check on every
dataset written here), exact statistics, datasets lerobot writes (images in parquet, SO-100 names),
crash safety (SIGKILL), refusals with clear errors."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest

from twinbrain_ros.data.lerobot_check import problems
from twinbrain_ros.data.lerobot_stats import QUANTILE_KEYS
from twinbrain_ros.data.lerobot_v3 import DatasetError, LeRobotV3Dataset, Schema
from twinbrain_ros.data.lerobot_writer import LeRobotV3Writer
from twinbrain_ros.data.record_sim import record
from twinbrain_ros.train.samples import ChunkSamples, delta_action_mask

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
    assert problems(tmp_path / "ds") == []
    ds = LeRobotV3Dataset(tmp_path / "ds")
    assert ds.info["codebase_version"] == "v3.0" and ds.info["total_episodes"] == 2 and ds.info["total_frames"] == 16
    assert ds.tasks == ["task 0", "task 1"]
    ep = ds.episodes[1]
    data = ds.episode_data(ep)
    np.testing.assert_allclose(data["observation.state"][:, 0], 1 + np.arange(8) / 10, rtol=1e-6)
    np.testing.assert_allclose(data["timestamp"], np.arange(8) / 10, atol=1e-7)     # lerobot's grid: k / fps
    np.testing.assert_allclose(data["capture_time"], 0.1 * np.arange(8) + 0.003 * (np.arange(8) % 2))  # real stamps
    assert list(data["index"]) == list(range(8, 16)) and set(data["task_index"]) == {1}
    frames = ds.episode_frames(ep, "observation.images.front")
    assert frames.shape == (8, 48, 64, 3)
    for t in range(8):
        assert np.abs(frames[t].astype(int) - _frame(t).astype(int)).mean() < 6   # codec tolerance
    stats = json.loads((tmp_path / "ds" / "meta" / "stats.json").read_text())
    assert set(stats["action"]) >= {"min", "max", "mean", "std", "count", "q01", "q99"}
    assert stats["action"]["count"] == [16] and stats["action"]["min"] == [-7.0] * 3
    assert np.array(stats["observation.images.front"]["mean"]).shape == (3, 1, 1)   # cameras too, per channel
    # tasks.parquet carries the pandas index layout lerobot's reader expects
    assert b"pandas" in pq.read_schema(tmp_path / "ds" / "meta" / "tasks.parquet").metadata


def test_statistics_are_exact_and_laid_out_per_column(tmp_path):
    """Two episodes with different spreads: a count-weighted mean of their quantiles is not the
    quantile of the whole (the bug lerobot fixed); the dataset's numeric quantiles are recomputed from
    every row, also after the writer is reopened. Per episode: one column per feature and statistic."""
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    w = LeRobotV3Writer(root, SCHEMA)
    actions = [rng.normal(0, 1, (30, 3)), rng.normal(5, 0.1, (10, 3))]
    for acts in actions[:1]:
        w.start_episode("t")
        for t, a in enumerate(acts):
            w.add_frame({"front": _frame(t % 10)}, np.zeros(3), a, t / 10)
        w.finalize_episode()
    w = LeRobotV3Writer(root, SCHEMA)                     # a later session appends the second episode
    w.start_episode("t")
    for t, a in enumerate(actions[1]):
        w.add_frame({"front": _frame(t)}, np.zeros(3), a, t / 10)
    w.finalize_episode()
    assert problems(root) == []
    everything = np.concatenate(actions).astype(np.float32).astype(np.float64)
    stats = json.loads((root / "meta" / "stats.json").read_text())
    for key, q in zip(QUANTILE_KEYS, (0.01, 0.10, 0.50, 0.90, 0.99)):
        np.testing.assert_allclose(stats["action"][key], np.quantile(everything, q, axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["std"], everything.std(0), rtol=1e-6)
    episodes = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    assert episodes[1]["stats/action/count"] == [10] and len(episodes[1]["stats/action/q50"]) == 3
    assert np.array(episodes[0]["stats/observation.images.front/q99"]).shape == (3, 1, 1)
    assert {"meta/episodes/chunk_index", "meta/episodes/file_index"} <= set(episodes[0])
    # camera quantiles: lerobot's envelope (smallest lower, largest upper); red bar: channel 0 reaches 200/255
    cam = stats["observation.images.front"]
    assert np.isclose(cam["max"][0][0][0], 200 / 255) and cam["q01"][0][0][0] == 0.0


def _as_lerobot_image_dataset(root, out):
    """What lerobot writes with use_videos=False, SO-100 style: frames as PNG bytes in the data parquet
    (Hugging Face Image: {bytes, path}), cameras under any observation.images.<name>, joints named
    ``<joint>.pos``, a pandas-index tasks table, no video columns."""
    import shutil

    import cv2
    import pyarrow as pa

    shutil.copytree(root, out)
    ds = LeRobotV3Dataset(root)
    info = json.loads((out / "meta" / "info.json").read_text())
    names = [f"{n}.pos" for n in ("shoulder_pan", "elbow_flex", "gripper")]
    old_key, new_key = "observation.images.front", "observation.images.laptop"
    feature = dict(info["features"].pop(old_key), dtype="image")
    feature.pop("info")
    info["features"][new_key] = feature
    for key in ("observation.state", "action"):
        info["features"][key]["names"] = names
    info["video_path"] = None
    (out / "meta" / "info.json").write_text(json.dumps(info))
    shutil.rmtree(out / "videos")
    for ep in ds.episodes:
        path = out / ds.info["data_path"].format(chunk_index=ep["data/chunk_index"], file_index=ep["data/file_index"])
        frames = ds.episode_frames(ep, old_key)
        cells = [{"bytes": cv2.imencode(".png", f[:, :, ::-1])[1].tobytes(), "path": f"frame_{i:06d}.png"}
                 for i, f in enumerate(frames)]
        table = pq.read_table(path).append_column(new_key, pa.array(cells))
        pq.write_table(table, path)
    episodes = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    keep = [c for c in episodes.column_names if not c.startswith(f"videos/{old_key}")]
    pq.write_table(episodes.select(keep), out / "meta" / "episodes" / "chunk-000" / "file-000.parquet")


def test_reads_image_datasets_with_lerobot_names(tmp_path):
    _write(tmp_path / "ds")
    _as_lerobot_image_dataset(tmp_path / "ds", tmp_path / "images")
    ds = LeRobotV3Dataset(tmp_path / "images")
    assert ds.camera_keys == ["observation.images.laptop"] and list(ds.cameras) == ["laptop"]
    frames = ds.episode_frames(ds.episodes[1], "observation.images.laptop")
    assert frames.shape == (8, 48, 64, 3)
    samples = ChunkSamples(ds, 4, ["laptop"])
    assert len(samples) == 16 and samples[3].images[0].shape == (48, 64, 3)
    # --absolute-actions gripper (the trainer's default) finds lerobot's gripper.pos
    assert delta_action_mask(ds, "gripper") == [True, True, False]
    with pytest.raises(ValueError, match="cameras \\['front'\\] are not in the dataset.*laptop"):
        ChunkSamples(ds, 4, ["front"])


def test_repeated_rows_are_no_training_sample_but_their_actions_stay(tmp_path):
    w = LeRobotV3Writer(tmp_path / "ds", SCHEMA)
    w.start_episode("t")
    for t in range(6):
        w.add_frame({"front": _frame(t)}, np.zeros(3), np.full(3, t), t / 10, repeated=t in (2, 3))
    w.finalize_episode()
    samples = ChunkSamples(LeRobotV3Dataset(tmp_path / "ds"), 4, ["front"])
    assert [t for _, t in samples.index] == [0, 1, 4, 5] and samples.repeated_rows == 2
    np.testing.assert_array_equal(samples[1].actions[:, 0], [1, 2, 3, 4])


def test_appending_and_schema_mismatch(tmp_path):
    _write(tmp_path / "ds")
    w = _write(tmp_path / "ds", episodes=1)           # same schema: appended
    assert w.num_episodes == 3 and LeRobotV3Dataset(tmp_path / "ds").info["total_frames"] == 24
    assert problems(tmp_path / "ds") == []
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
    assert result["episodes"] == 2 and problems(tmp_path / "sim") == []
    ds = LeRobotV3Dataset(tmp_path / "sim")
    assert ds.tasks == ["touch the green cube"] and len(ds.video_keys) == 2
    data = ds.episode_data(ds.episodes[0])
    assert data["action"].shape[1] == 7 and np.all(np.isfinite(data["action"]))
    assert np.abs(np.diff(data["observation.state"], axis=0)).max() > 0.01    # the arm moved


def test_record_sim_widens_the_demonstrations_without_touching_the_actions(tmp_path):
    """Start spread, hold and DART perturbation: the recorded action is still the clean leader target
    (the same as without perturbation), while the arm the cameras and joint states see wanders off it."""
    from twinbrain_ros.sim.arm_sim import HOME

    wide = record(str(tmp_path / "wide"), episodes=1, image_size=(32, 32), task="touch", hold=2.0, perturb=0.02)
    kept = len(wide["discarded_failed_seeds"])          # seeds run in order; a perturbed one may fail
    plain = record(str(tmp_path / "plain"), episodes=1, image_size=(32, 32), task="touch", hold=2.0, first_seed=kept)
    spread = record(str(tmp_path / "spread"), episodes=1, image_size=(32, 32), task="touch", start_spread=0.3)
    assert plain["episodes"] == wide["episodes"] == spread["episodes"] == 1 and wide["perturb"] == 0.02
    assert plain["discarded_failed_seeds"] == []                                      # the same seed
    a, b = (LeRobotV3Dataset(tmp_path / d) for d in ("plain", "wide"))
    da, db = a.episode_data(a.episodes[0]), b.episode_data(b.episodes[0])
    np.testing.assert_allclose(da["action"], db["action"], atol=1e-6)   # the same leader targets throughout
    assert np.abs(da["observation.state"] - db["observation.state"]).max() > 0.01     # the arm wandered
    assert len(da["action"]) >= 10 * (2.0 + 2.5)                                       # the hold is recorded
    np.testing.assert_allclose(da["action"][-20:], da["action"][-1:].repeat(20, 0), atol=1e-6)   # at rest
    c = LeRobotV3Dataset(tmp_path / "spread")
    assert np.abs(c.episode_data(c.episodes[0])["observation.state"][0][:6] - HOME[:6]).max() > 0.05


def test_record_sim_chains_episodes_from_where_the_last_one_ended(tmp_path):
    """chain 1: every episode after the first starts at the joints the previous one ended at (the frame
    before the reset), not at home."""
    from twinbrain_ros.sim.arm_sim import HOME

    result = record(str(tmp_path / "chained"), episodes=3, image_size=(32, 32), task="touch", chain=1.0)
    assert result["episodes"] == 3 and result["chain"] == 1.0
    ds = LeRobotV3Dataset(tmp_path / "chained")
    episodes = [ds.episode_data(e)["observation.state"] for e in ds.episodes]
    np.testing.assert_allclose(episodes[0][0][:6], HOME[:6], atol=2e-3)
    if not result["discarded_failed_seeds"]:   # a failed attempt in between would have been the one followed
        assert result["chained_episodes"] == 2
        for before, after in zip(episodes, episodes[1:]):
            assert np.abs(after[0][:6] - HOME[:6]).max() > 0.2
            np.testing.assert_allclose(after[0][:6], before[-1][:6], atol=0.05)   # the last frame, 0.1 s before the end


def test_record_sim_names_every_cube_of_one_scene(tmp_path):
    """cubes_per_scene 3: each scene is recorded three times, a different cube named each time (the same
    layout, the first image the same), so only the instruction tells the demonstrations apart."""
    from twinbrain_ros.sim.tasks import parse_instruction

    result = record(str(tmp_path / "scenes"), episodes=3, image_size=(32, 32), task="touch:any", cubes_per_scene=3)
    assert result["episodes"] == 3 and result["cubes_per_scene"] == 3, result
    ds = LeRobotV3Dataset(tmp_path / "scenes")
    frames = [ds.episode_data(e) for e in ds.episodes]
    named = [parse_instruction(ds.tasks[int(f["task_index"][0])]).cube for f in frames]
    if not result["discarded_failed_seeds"]:   # else a scene's naming was dropped and the next scene began
        assert sorted(named) == ["blue", "green", "red"] and result["scenes"] == 1, (named, result)
        for cam in ds.video_keys:
            first = [ds.episode_frames(e, cam)[0].astype(int) for e in ds.episodes]
            assert np.abs(first[0] - first[1]).mean() < 2 and np.abs(first[0] - first[2]).mean() < 2
        ends = [f["action"][-1] for f in frames]
        assert min(np.abs(ends[0] - ends[1]).max(), np.abs(ends[0] - ends[2]).max()) > 0.05   # other cubes
    with pytest.raises(ValueError, match="colour is open"):
        record(str(tmp_path / "fixed"), episodes=1, image_size=(32, 32), task="touch:red", cubes_per_scene=2)
