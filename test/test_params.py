"""Configuration as ROS users run it: the package defaults, a robot file layered on top, required limits
refused by name when missing, and read-only parameters that `ros2 param set` cannot silently ignore."""

import pytest
import rclpy
import yaml
from rclpy.parameter import Parameter

from twinbrain_ros import graph
from twinbrain_ros.nodes.params import ParameterError
from twinbrain_ros.nodes.safety_node import SafetyNode
from twinbrain_ros.nodes.safety_params import PARAMS, SafetyConfig


def _context(robot_file):
    context = rclpy.Context()
    args = ["--ros-args"] + [a for p in graph.param_files(robot_file) for a in ("--params-file", str(p))]
    rclpy.init(context=context, args=args)
    return context


def _robot_file(tmp_path, drop=(), **safety):
    config = yaml.safe_load(graph.default_config().read_text())
    for key in drop:
        for body in config.values():
            body["ros__parameters"].pop(key, None)
    config["/**/safety_node"]["ros__parameters"].update(safety)
    path = tmp_path / "my_robot.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_robot_file_is_layered_over_the_defaults(tmp_path):
    """Before: config:=my.yaml replaced arm.yaml, and everything it did not set fell back to code defaults."""
    context = _context(_robot_file(tmp_path, velocity_scale=0.1))
    try:
        node = SafetyNode(context=context)
        assert node.p["velocity_scale"] == 0.1                          # from the user's file
        assert node.p["command_topic"] == "twinbrain/joint_command"     # from the package defaults
        assert node.p["joint_upper"][-1] == 0.04                        # the robot's own limits
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


@pytest.mark.parametrize("key", ["max_velocity", "position_margin", "max_tracking_error"])
def test_a_missing_limit_is_a_start_up_error_naming_the_key(tmp_path, key):
    context = _context(_robot_file(tmp_path, drop=[key]))
    try:
        with pytest.raises(ParameterError, match=f"{key}: missing"):
            SafetyNode(context=context)
    finally:
        rclpy.try_shutdown(context=context)
    with pytest.raises(ParameterError, match=f"{key}: missing"):    # tools resolve through the same spec
        SafetyConfig.from_config(yaml.safe_load(_robot_file(tmp_path, drop=[key]).read_text()))


def test_parameters_read_at_start_up_refuse_ros2_param_set(tmp_path):
    context = _context(graph.default_config())
    try:
        node = SafetyNode(context=context)
        result = node.set_parameters([Parameter("velocity_scale", value=0.5)])[0]
        assert not result.successful and "read-only" in result.reason
        assert node.get_parameter("velocity_scale").value == 1.0
        assert all(node.describe_parameter(p.name).read_only for p in PARAMS)
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_load_config_is_what_the_nodes_get():
    config = graph.load_config()
    safety = graph.node_params(config, "safety_node")
    assert safety["command_topic"] == "twinbrain/joint_command" and safety["joint_names"][-1] == "gripper"
    assert graph.node_params(config, "sim_arm")["image_width"] == 224
