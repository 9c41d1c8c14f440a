"""The tests' ROS graph harness lives with the benchmarks that share it."""

from twinbrain_ros.bench.ros_graph import CONFIG, Recorder, RosGraph  # noqa: F401
