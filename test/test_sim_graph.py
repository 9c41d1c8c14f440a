"""End to end as users run it: `twinbrain-ros up --use-sim` (sim_arm, policy_node, safety_node, one
process each), real rclpy, the tiny real model; this test only listens and calls services."""

import time

import numpy as np
import yaml
from rclpy.qos import qos_profile_sensor_data
from ros_harness import RosGraph
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from twinbrain_ros import graph as graph_spec
from twinbrain_ros.cli import running_graph


def test_graph_drives_the_sim_through_safety_and_estop_freezes_it(tmp_path):
    config = graph_spec.load_config()
    graph_spec.section_params(config, "sim_arm").update(image_width=64, image_height=64, task="pick")
    cfg = tmp_path / "sim.yaml"
    cfg.write_text(yaml.safe_dump(config))
    graph = RosGraph()
    try:
        controller = graph.record(JointTrajectory, "/arm_controller/joint_trajectory")
        joints = graph.record(JointState, "/joint_states", qos_profile_sensor_data)
        graph.client(Trigger, "/safety_node/estop")
        with running_graph(tmp_path / "graph.log", use_sim=True, config=cfg):
            # the sim publishes its task's instruction itself; commands must reach it through the safety node
            log = lambda: (tmp_path / "graph.log").read_text()[-3000:]  # noqa: E731
            assert graph.wait_for(lambda: controller.count() > 100, timeout=180), log()
            start = joints.since(0)[-1].position
            t_cmd = time.monotonic()
            assert graph.wait_for(lambda: controller.count() > 250, timeout=60), log()
            moved = np.array(joints.since(t_cmd)[-1].position)
            assert np.abs(moved - np.array(start)).max() > 0.05, "the sim arm did not follow the commands"
            # the sim tracks the controller commands (position actuators, small lag)
            last_cmd = np.array(controller.messages[-1].points[0].positions)
            assert np.abs(moved[:6] - last_cmd[:6]).max() < 0.3

            assert graph.call(Trigger, "/safety_node/estop").success
            time.sleep(1.5)                      # decelerate within limits, then hold
            t_frozen = time.monotonic()
            time.sleep(1.0)
            q = np.array([m.position for m in joints.since(t_frozen)])
            assert len(q) > 50
            assert np.abs(q - q[0]).max() < 2e-3, "the arm kept moving after the e-stop"
            assert "FAULT" not in (tmp_path / "graph.log").read_text(), log()
    finally:
        graph.close()
