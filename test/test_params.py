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


URDF = """<robot name="arm">
  <link name="base"/>{links}
</robot>"""
JOINT = """
  <link name="l{i}"/>
  <joint name="{name}" type="{kind}"><parent link="{parent}"/><child link="l{i}"/>
    <limit lower="{lo}" upper="{hi}" velocity="{v}" effort="10"/>{soft}</joint>"""


def _urdf(names, soft_upper=None):
    parts = []
    for i, name in enumerate(names):
        soft = f'<safety_controller soft_lower_limit="-1.0" soft_upper_limit="{soft_upper}" k_velocity="1"/>' \
            if soft_upper is not None and i == 0 else ""
        parts.append(JOINT.format(i=i, name=name, kind="prismatic" if name == "gripper" else "revolute",
                                  parent="base" if i == 0 else f"l{i - 1}", lo=-2.0 if name != "gripper" else 0.0,
                                  hi=2.0 if name != "gripper" else 0.05, v=1.0 + i, soft=soft))
    return URDF.format(links="".join(parts))


def test_joint_limits_come_from_the_urdf_and_the_yaml_overrides(tmp_path):
    names = yaml.safe_load(graph.default_config().read_text())["/**"]["ros__parameters"]["joint_names"]
    config = yaml.safe_load(_robot_file(tmp_path, drop=["joint_lower", "max_velocity"]).read_text())
    config["/**"]["ros__parameters"]["robot_description"] = _urdf(names, soft_upper=1.5)
    values = SafetyConfig.from_config(config).p
    assert values["joint_lower"][:2] == [-1.0, -2.0] and values["joint_lower"][-1] == 0.0   # soft limit first
    assert values["max_velocity"] == [1.0 + i for i in range(len(names))]                   # from the URDF
    assert values["joint_upper"][-1] == 0.04                    # set in the YAML: it wins over the URDF's 0.05
    config["/**"]["ros__parameters"]["robot_description"] = _urdf(names[:-1])
    with pytest.raises(ParameterError, match="joint 'gripper' is missing"):
        SafetyConfig.from_config(config)
    path = tmp_path / "urdf_robot.yaml"
    config["/**"]["ros__parameters"]["robot_description"] = _urdf(names)
    path.write_text(yaml.safe_dump(config))
    context = _context(path)
    try:
        node = SafetyNode(context=context)                      # the node reads the same way
        assert node.p["max_velocity"] == values["max_velocity"]
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
