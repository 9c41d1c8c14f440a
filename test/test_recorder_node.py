"""recorder_node with the sim's scripted expert as teleoperator, real rclpy: start/stop/discard."""

import time

from rclpy.parameter import Parameter
from ros_harness import RosGraph
from std_srvs.srv import Trigger

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
        started = graph.call(Trigger, "/recorder_node/start")
        assert started.success, started.message
        time.sleep(2.0)
        stopped = graph.call(Trigger, "/recorder_node/stop")
        assert stopped.success and "episode 0 saved" in stopped.message
        # a discarded episode leaves nothing behind
        assert graph.call(Trigger, "/recorder_node/start").success
        time.sleep(0.5)
        assert graph.call(Trigger, "/recorder_node/discard").success
    finally:
        graph.close()
    ds = LeRobotV3Dataset(tmp_path / "ds")
    assert ds.info["total_episodes"] == 1 and ds.tasks == ["touch the green cube"]
    n = ds.episodes[0]["length"]
    assert 10 <= n <= 22                                      # ~2 s at 10 fps, none invented
    data = ds.episode_data(ds.episodes[0])
    assert (data["timestamp"][1:] > data["timestamp"][:-1]).all()    # real, increasing sample stamps
    assert ds.episode_frames(ds.episodes[0], "observation.images.wrist").shape == (n, 64, 64, 3)


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
