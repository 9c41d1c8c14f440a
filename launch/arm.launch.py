"""ros2 launch twinbrain_ros arm.launch.py [config:=...] [checkpoint:=...] [device:=...] [namespace:=...]
                                          [use_sim:=true] [record:=true] [host:=gpu|robot]

Starts the nodes listed in twinbrain_ros.graph (the same list the pip-only runner
`twinbrain-ros up` starts) with the same layered parameter files: config/defaults.yaml, then the
robot file (`config:=`, default config/arm.yaml), then the launch arguments.
"""

import os

from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from twinbrain_ros import graph


def _nodes(context):
    config = LaunchConfiguration("config").perform(context)
    use_sim = LaunchConfiguration("use_sim").perform(context).lower() in ("1", "true", "yes")
    record = LaunchConfiguration("record").perform(context).lower() in ("1", "true", "yes")
    checkpoint = LaunchConfiguration("checkpoint").perform(context)
    device = LaunchConfiguration("device").perform(context)
    namespace = LaunchConfiguration("namespace").perform(context)
    host = LaunchConfiguration("host").perform(context)
    return [
        Node(package=graph.PACKAGE, executable=spec.executable, name=spec.name, namespace=namespace,
             parameters=[*map(str, graph.param_files(config, split=bool(host))),
                         graph.overrides(spec, checkpoint, device, use_sim, record)],
             output="screen", emulate_tty=True,
             # policy_node or safety_node gone: stop everything, saying why, instead of running on without it
             on_exit=[Shutdown(reason=f"{spec.name} exited; shutting the graph down")] if spec.essential else None)
        for spec in graph.nodes(use_sim, record, host)
    ]


def generate_launch_description():
    # config/fastdds.xml unless a DDS profile or transport set is chosen already (graph.dds_environment)
    dds = [SetEnvironmentVariable(k, v) for k, v in graph.dds_environment(os.environ).items()]
    return LaunchDescription([
        *dds,
        DeclareLaunchArgument("config", default_value=str(graph.default_config()),
                              description="Robot parameter file, layered over config/defaults.yaml."),
        DeclareLaunchArgument("checkpoint", default_value="", description="Checkpoint directory; empty = tiny preset."),
        DeclareLaunchArgument("device", default_value="", description="auto, cpu, cuda[:N]; empty keeps the YAML."),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace for every node."),
        DeclareLaunchArgument("use_sim", default_value="false", description="Start the simulated MuJoCo arm too."),
        DeclareLaunchArgument("record", default_value="false", description="Start the teleop recorder too."),
        DeclareLaunchArgument("host", default_value="", description="gpu or robot: this host's share of the graph "
                              "split across two machines (README, Two hosts); empty: the whole graph here."),
        OpaqueFunction(function=_nodes),
    ])
