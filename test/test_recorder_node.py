"""recorder_node with the sim's scripted expert as teleoperator, real rclpy: start/stop/discard."""

import time

from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from ros_harness import RosGraph
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
        assert graph.wait_for(lambda: recorder.sync.instruction == "touch the green cube" and recorder.command is not None)
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
