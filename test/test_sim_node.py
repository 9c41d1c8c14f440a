"""sim_arm as a ROS node: it follows the instruction it is given and reports how each episode ended."""

import json
import time

from rclpy.parameter import Parameter
from ros_harness import RosGraph
from std_msgs.msg import String
from std_srvs.srv import Trigger

from twinbrain_ros.nodes.sim_arm_node import SimArmNode


def test_sim_follows_the_instruction_and_reports_each_episode():
    """sim_arm with the task mixture: an instruction someone else publishes (`twinbrain-ros instruct`)
    retargets its success check to the named cube; ~/reset publishes how the episode ended."""
    graph = RosGraph()
    try:
        graph.client(Trigger, "/sim_arm/reset")
        results = graph.record(String, "/sim_arm/episode_result")
        sim = graph.add(SimArmNode(context=graph.context, parameter_overrides=[
            Parameter("image_width", value=32), Parameter("image_height", value=32),
            Parameter("task", value="touch:green"), Parameter("seed", value=4)]))
        assert graph.wait_for(lambda: sim.sim is not None and sim.sim.task.cube == "green")
        graph.publish_instruction("Tap the red cube")
        assert graph.wait_for(lambda: sim.sim.task.cube == "red"), sim.sim.task
        assert sim.sim.task.name == "touch" and sim.episode_task.cube == "green"
        graph.publish_instruction("make me a sandwich")          # names no task: the check stays
        time.sleep(0.3)
        assert sim.sim.task.cube == "red"
        assert graph.call(Trigger, "/sim_arm/reset").success
        assert graph.wait_for(lambda: results.count() >= 1)       # episode 1 ended: its result
        result = json.loads(results.messages[-1].data)
        assert result["seed"] == 4 and result["task"]["cube"] == "red" and result["episode_task"]["cube"] == "green"
        assert result["success"] is False and result["wrong_objects"] == [] and "closest_xy_m" in result
    finally:
        graph.close()
