"""rosbag2 -> LeRobot v3.0 (twinbrain-record bag): bags written with rosbags from sim episodes, both
storage formats, raw and JPEG cameras, jittered stamps and dropped frames; the sampling rule it shares
with the live recorder; and the imported dataset trains."""

import numpy as np
import pytest

from twinbrain_ros.data.bag_import import BagSpec, import_bags
from twinbrain_ros.data.episode_sampler import EpisodeSampler
from twinbrain_ros.data.lerobot_check import problems
from twinbrain_ros.data.lerobot_v3 import DatasetError, LeRobotV3Dataset
from twinbrain_ros.sim.sim_bag import SIM_START, TOPICS, write_sim_bag
from twinbrain_ros.train.trainer import TrainConfig, Trainer


def _spec(out, compressed=False, **kw):
    suffix = "/compressed" if compressed else ""
    values = dict(cameras={c: t + suffix for c, t in TOPICS.items()}, joint_states="/joint_states",
                  command="/leader/joint_states", out=str(out), image_size=(48, 48), instruction_topic="/instruction",
                  split="topic:/episode")
    values.update(kw)
    return BagSpec(**values)


@pytest.mark.parametrize("storage, compressed", [("sqlite3", False), ("mcap", True)])
def test_import_with_jitter_and_a_dropped_frame_stays_aligned(tmp_path, storage, compressed):
    bag = tmp_path / "bag"
    # frames 30..35 missing: a 233 ms hole at 30 fps, so at least one 10 Hz row has no new observation
    written = write_sim_bag(bag, episodes=2, storage=storage, image_size=(48, 48), compressed=compressed,
                            jitter=0.004, drop=tuple(range(30, 36)))
    report = import_bags([str(bag)], _spec(tmp_path / "ds", compressed))
    assert problems(tmp_path / "ds") == []         # rows = video frames, timestamps on the grid, lerobot's layout
    ds = LeRobotV3Dataset(tmp_path / "ds")
    assert report["episodes"] == len(ds.episodes) == 2 and ds.tasks == ["touch the green cube"]
    seconds = written["camera_frames"] / 30 / 2
    for ep in ds.episodes:                          # one row per 1/10 s of each episode, a few lost at its start
        assert abs(ep["length"] - seconds * 10) <= 3
    first = ds.episode_data(ds.episodes[0])
    repeated = first["frame_repeated"].astype(bool)
    assert repeated.sum() == report["repeated"] >= 1 and report["stalls"] == 0
    rows = np.flatnonzero(repeated)
    np.testing.assert_array_equal(first["capture_time"][rows], first["capture_time"][rows - 1])
    assert first["capture_time"][0] >= SIM_START              # header stamps (sim time), not receive times
    assert (np.diff(first["capture_time"][~repeated]) > 0).all()
    frames = ds.episode_frames(ds.episodes[1], "observation.images.front")
    assert frames.shape == (ds.episodes[1]["length"], 48, 48, 3) and frames.std() > 5   # real pictures


def test_episodes_split_by_gap_or_by_bag_and_the_dataset_trains(tmp_path):
    write_sim_bag(tmp_path / "a", episodes=2, image_size=(48, 48), gap=2.0)
    write_sim_bag(tmp_path / "b", episodes=1, image_size=(48, 48), first_seed=5)
    by_gap = import_bags([str(tmp_path / "a")], _spec(tmp_path / "gap", split="gap:1.0"))
    assert by_gap["episodes"] == 2 and problems(tmp_path / "gap") == []
    by_bag = import_bags([str(tmp_path / "a"), str(tmp_path / "b")], _spec(tmp_path / "bags", split="bag",
                                                                           task="touch the green cube",
                                                                           instruction_topic=None))
    # one episode per bag, and the 2 s hole between the episodes inside bag a ends one there too (a stall)
    assert by_bag["episodes"] == 3 and by_bag["stalls"] == 1 and problems(tmp_path / "bags") == []
    cfg = TrainConfig(dataset=str(tmp_path / "gap"), out=str(tmp_path / "run"), steps=3, batch_size=2,
                      warmup_steps=1, val_every=3, save_every=3, chunk_length=8, noise_draws=1)
    result = Trainer(cfg).run()
    assert result["steps"] == 3 and np.isfinite(result["last"]["loss"])


def test_bad_bags_and_arguments_give_clear_errors(tmp_path):
    write_sim_bag(tmp_path / "bag", episodes=1, image_size=(48, 48))
    with pytest.raises(DatasetError, match="no topic \\['/camera/top'\\]; the bag has"):
        import_bags([str(tmp_path / "bag")], _spec(tmp_path / "x", cameras={"top": "/camera/top"}))
    with pytest.raises(DatasetError, match="topic /instruction is std_msgs/msg/String; expected one of"):
        import_bags([str(tmp_path / "bag")], _spec(tmp_path / "x", command="/instruction"))
    with pytest.raises(ValueError, match="needs a task"):
        import_bags([str(tmp_path / "bag")], _spec(tmp_path / "x", instruction_topic=None))
    with pytest.raises(ValueError, match="split must be"):
        import_bags([str(tmp_path / "bag")], _spec(tmp_path / "x", split="every:3"))


class Obs:
    def __init__(self, stamp):
        self.stamp = stamp


def test_sampler_repeats_between_real_observations_and_ends_at_a_stall():
    s = EpisodeSampler(max_repeat_age=0.3)
    a = np.zeros(2)
    assert s.tick(0.0, None, a) == [] and s.tick(0.1, Obs(0.05), None) == []      # waiting: not a loss
    assert s.counts.waiting == 2
    rows = s.tick(0.2, Obs(0.15), a)
    assert [r.repeated for r in rows] == [False]
    assert s.tick(0.3, Obs(0.15), a) == [] and s.tick(0.4, None, a) == []         # held back: no new one yet
    rows = s.tick(0.5, Obs(0.45), a)
    assert [r.repeated for r in rows] == [True, True, False]
    assert [r.observation.stamp for r in rows] == [0.15, 0.15, 0.45]
    assert s.tick(0.6, None, a) == [] and s.tick(0.7, None, a) == []
    assert s.tick(0.8, None, a) == [] and s.stalled_reason.startswith("no new observation for 0.350 s")
    assert s.counts.as_dict() == {"rows": 4, "new": 2, "repeated": 2, "dropped": 2, "waiting": 2, "stalls": 1}
    assert s.tick(0.9, Obs(0.85), a) == []                                        # stalled: the owner starts anew
    with pytest.raises(ValueError, match="max_repeat_age must be > 0"):
        EpisodeSampler(0.0)
