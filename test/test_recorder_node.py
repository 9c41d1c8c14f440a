"""recorder_node with the sim's scripted expert as teleoperator, real rclpy: start/stop/discard."""

import time

import numpy as np
from rclpy.parameter import Parameter
from ros_harness import RosGraph
from std_srvs.srv import Trigger

from twinbrain_ros.data.lerobot_check import problems
from twinbrain_ros.data.lerobot_v3 import LeRobotV3Dataset
from twinbrain_ros.nodes.recorder_node import RecorderNode
from twinbrain_ros.nodes.sim_arm_node import SimArmNode


def test_records_expert_episodes_into_a_loadable_dataset(tmp_path):
    graph = RosGraph()
    try:
        for name in ("start", "stop", "discard"):
            graph.client(Trigger, f"/recorder_node/{name}")
        graph.add(SimArmNode(context=graph.context, parameter_overrides=[
            Parameter("image_width", value=64), Parameter("image_height", value=64),
            Parameter("task", value="touch"), Parameter("expert", value=True)]))
        recorder = graph.add(RecorderNode(context=graph.context, parameter_overrides=[
            Parameter("dataset_dir", value=str(tmp_path / "ds")), Parameter("image_width", value=64),
            Parameter("image_height", value=64)]))
        ready = lambda: recorder.sync.instruction == "touch the green cube" and recorder.command is not None  # noqa: E731
        assert graph.wait_for(ready)
        assert graph.call(Trigger, "/recorder_node/stop").success is False      # not recording yet
        before_start = time.monotonic()
        started = graph.call(Trigger, "/recorder_node/start")
        assert started.success, started.message
        time.sleep(2.0)
        stopped = graph.call(Trigger, "/recorder_node/stop")
        recorded_for = time.monotonic() - before_start
        assert stopped.success and "episode 0 saved" in stopped.message
        # a discarded episode leaves nothing behind
        assert graph.call(Trigger, "/recorder_node/start").success
        time.sleep(0.5)
        assert graph.call(Trigger, "/recorder_node/discard").success
    finally:
        graph.close()
    assert problems(tmp_path / "ds") == []
    ds = LeRobotV3Dataset(tmp_path / "ds")
    assert ds.info["total_episodes"] == 1 and ds.tasks == ["touch the green cube"]
    n = ds.episodes[0]["length"]
    assert 10 <= n <= recorded_for * 10 + 1                   # one row per 1/10 s while recording, no more
    data = ds.episode_data(ds.episodes[0])
    new = ~data["frame_repeated"].astype(bool)           # a loaded host can render slower than 10 Hz: flagged
    assert new.sum() >= 5 and (np.diff(data["capture_time"][new]) > 0).all()
    assert ds.episode_frames(ds.episodes[0], "observation.images.wrist").shape == (n, 64, 64, 3)


def test_jittered_and_dropped_camera_frames_stay_aligned_and_a_stall_ends_the_episode(tmp_path):
    """A real driver's camera: stamps jitter, frames go missing. Rows stay on the k / fps grid with exactly
    one video frame each; a row without a new observation repeats the previous one and is flagged; a
    camera that stops ends the episode at its last real observation, saved and reported, and recording
    goes on in a new episode."""
    graph = RosGraph()
    try:
        for name in ("start", "stop"):
            graph.client(Trigger, f"/recorder_node/{name}")
        recorder = graph.add(RecorderNode(context=graph.context, parameter_overrides=[
            Parameter("dataset_dir", value=str(tmp_path / "ds")), Parameter("image_width", value=64),
            Parameter("image_height", value=48), Parameter("max_observation_age", value=0.5)]))
        graph.publish_instruction("touch the green cube")
        # 30 Hz with +-5 ms stamp jitter; frames 40..46 missing: a 267 ms hole, more than two 10 Hz rows
        graph.start_feed(size=(48, 64), camera_jitter=0.005, drop_frames=range(40, 47), leader=True)
        assert graph.wait_for(lambda: recorder.sync.instruction and recorder.command is not None)
        started = graph.call(Trigger, "/recorder_node/start")
        assert started.success, started.message
        assert graph.wait_for(lambda: graph.feed.frame_number > 75, timeout=30)     # past the hole
        stopped = graph.call(Trigger, "/recorder_node/stop")
        assert stopped.success, stopped.message
        first_counts = recorder.sampler.counts
        # the camera stops for good during the second episode
        assert graph.call(Trigger, "/recorder_node/start").success
        assert graph.wait_for(lambda: recorder.writer.frames_in_episode >= 5, timeout=30)
        assert recorder.stalls == 0, recorder.warning          # the 267 ms hole was bridged by repeated rows
        graph.frozen_cameras.set()
        assert graph.wait_for(lambda: "episode 1 saved" in recorder.warning, timeout=30), recorder.warning
        assert "no new observation" in recorder.warning and "recording episode 2" in recorder.warning
        assert recorder.recording and recorder.stalls == 1
        assert graph.call(Trigger, "/recorder_node/stop").message.startswith("no rows recorded")   # still no camera
    finally:
        graph.close()
    assert problems(tmp_path / "ds") == []       # rows = video frames, timestamps on the grid, lerobot's layout
    ds = LeRobotV3Dataset(tmp_path / "ds")
    assert ds.info["total_episodes"] == 2
    data = ds.episode_data(ds.episodes[0])
    repeated = data["frame_repeated"].astype(bool)
    assert repeated.sum() == first_counts.repeated >= 1
    assert f"{first_counts.repeated} with a repeated observation" in stopped.message
    # a repeated row carries the previous row's observation (stamp and state), never a shifted one
    rows = np.flatnonzero(repeated)
    np.testing.assert_array_equal(data["capture_time"][rows], data["capture_time"][rows - 1])
    np.testing.assert_array_equal(data["observation.state"][rows], data["observation.state"][rows - 1])
    assert not repeated[0] and not repeated[-1]
    assert (np.diff(data["capture_time"][~repeated]) > 0).all()
    last = ds.episode_data(ds.episodes[1])
    assert len(last["action"]) >= 5 and not last["frame_repeated"][-1]    # ends at its last real observation


def test_record_in_sim_as_users_run_it(tmp_path):
    """`twinbrain-ros up --use-sim --record` (launch: use_sim:=true record:=true): the scripted expert plays
    the leader arm, `twinbrain-ros record start / stop` saves an episode. Before, sim_arm was not in
    expert mode, the leader topic stayed silent and stop answered "episode has no frames"."""
    import os
    import subprocess
    import sys

    import yaml

    from twinbrain_ros import graph as graph_spec
    from twinbrain_ros.cli import running_graph

    config = graph_spec.load_config()
    graph_spec.section_params(config, "sim_arm").update(image_width=64, image_height=64, task="touch")
    graph_spec.section_params(config, "recorder_node").update(dataset_dir=str(tmp_path / "ds"), image_width=64,
                                                              image_height=64)
    cfg = tmp_path / "rec.yaml"
    cfg.write_text(yaml.safe_dump(config))
    cli = lambda *a: subprocess.run([sys.executable, "-m", "twinbrain_ros.cli", *a], env=dict(os.environ),  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    log = tmp_path / "graph.log"
    with running_graph(log, use_sim=True, config=cfg, record=True):
        end = time.monotonic() + 120
        while time.monotonic() < end and cli("record", "start").returncode != 0:
            time.sleep(1.0)   # the recorder answers once it has instruction, frames and the leader arm
        time.sleep(2.5)
        stopped = cli("record", "stop")
        assert stopped.returncode == 0 and "saved" in stopped.stdout, stopped.stdout + log.read_text()[-3000:]
    assert "policy_node" not in log.read_text()          # teleop: nothing else commands the arm
    ds = LeRobotV3Dataset(tmp_path / "ds")
    assert ds.info["total_episodes"] == 1 and ds.episodes[0]["length"] >= 10

