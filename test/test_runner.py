"""The pip-only runner hands launch arguments to the nodes over the YAML, like launch_ros does."""

import argparse

import rclpy

from twinbrain_ros import graph
from twinbrain_ros.cli import _ros_args


def test_checkpoint_and_device_override_the_yaml(tmp_path):
    args = argparse.Namespace(config=str(graph.default_config()), namespace="", checkpoint="/ckpt/final",
                              device="cuda:1", use_sim=True)
    spec = next(n for n in graph.nodes(use_sim=True) if n.name == "policy_node")
    context = rclpy.Context()
    rclpy.init(context=context, args=_ros_args(spec, args, tmp_path))
    try:
        node = rclpy.create_node("policy_node", context=context)
        node.declare_parameter("checkpoint", "")
        node.declare_parameter("device", "auto")
        node.declare_parameter("blend", "replace")
        assert node.get_parameter("checkpoint").value == "/ckpt/final"
        assert node.get_parameter("device").value == "cuda:1"
        assert node.get_parameter("blend").value == "crossfade"      # still from config/arm.yaml
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    assert [n.name for n in graph.nodes(use_sim=False)] == ["policy_node", "safety_node"]
    # split across two hosts: the policy alone on the GPU host, its chunks executed on the robot
    assert [n.name for n in graph.nodes(use_sim=True, host="gpu")] == ["policy_node"]
    assert [n.name for n in graph.nodes(use_sim=True, host="robot")] == ["sim_arm", "chunk_runner", "safety_node"]
    split = graph.load_config(split=True)
    assert graph.node_params(split, "policy_node")["setpoints"] is False
    assert graph.node_params(split, "sim_arm")["camera_topics"][0].endswith("/compressed")
    # teleop recording: the operator (in sim, the scripted expert) drives the arm, no policy
    assert [n.name for n in graph.nodes(use_sim=True, record=True)] == ["sim_arm", "safety_node", "recorder_node"]
    assert graph.overrides(next(n for n in graph.NODES if n.name == "sim_arm"), record=True) == {"expert": True}


def test_running_graph_leaves_no_node_behind(tmp_path):
    """Every node process ends with the context, even while the graph is busy (model loading / acting)."""
    import os
    import time

    from twinbrain_ros.cli import running_graph

    log = tmp_path / "graph.log"
    with running_graph(log, use_sim=True) as runner:
        end = time.monotonic() + 120
        while "model ready" not in log.read_text() and time.monotonic() < end:
            time.sleep(0.2)
        assert "model ready" in log.read_text(), log.read_text()[-2000:]
        time.sleep(3.0)   # let the nodes finish starting: the graph is stopped while running, not half-built
    assert runner.poll() is not None, log.read_text()[-3000:]
    try:
        os.killpg(runner.pid, 0)   # signal 0: is anyone of the graph's process group still alive?
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "a node of the graph outlived running_graph:\n" + log.read_text()[-3000:]
