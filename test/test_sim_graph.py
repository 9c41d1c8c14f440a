"""End to end: sim_arm + policy_node + safety_node for a few seconds, real rclpy, tiny real model."""

import time

import numpy as np
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
from rclpy.qos import qos_profile_sensor_data
from trajectory_msgs.msg import JointTrajectory

from ros_harness import RosGraph
from twinbrain_ros.nodes.policy_node import PolicyNode
from twinbrain_ros.nodes.safety_node import SafetyNode
from twinbrain_ros.nodes.sim_arm_node import SimArmNode


def test_graph_drives_the_sim_through_safety_and_estop_freezes_it(tiny_base_dirs):
    graph = RosGraph()
    try:
        controller = graph.record(JointTrajectory, "/arm_controller/joint_trajectory")
        joints = graph.record(JointState, "/joint_states", qos_profile_sensor_data)
        graph.client(Trigger, "/safety_node/estop")
        graph.add(SimArmNode(context=graph.context, parameter_overrides=[
            Parameter("image_width", value=64), Parameter("image_height", value=64), Parameter("task", value="pick")]))
        graph.add(SafetyNode(context=graph.context))
        graph.add(PolicyNode(context=graph.context, parameter_overrides=[
            Parameter("tiny_base_dir", value=str(tiny_base_dirs["qwen3_vl"]))]))
        # the sim publishes its task's instruction itself; commands must reach it through the safety node
        assert graph.wait_for(lambda: controller.count() > 100, timeout=60), "no commands reached the controller"
        start = joints.since(0)[-1].position
        t_cmd = time.monotonic()
        assert graph.wait_for(lambda: controller.count() > 250, timeout=60)
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
    finally:
        graph.close()
