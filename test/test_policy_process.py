"""The policy in a process of its own (runtime/policy_process.py, policy_node's inference_process): the
same chunks and answers as in process, errors with their own type, a dead child reported instead of hung
on, recovered by reconfiguring the node, and no orphan when the parent dies."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import random_image
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn as Result
from ros_harness import RosGraph
from test_nodes import _policy_node, _status
from trajectory_msgs.msg import JointTrajectory

from twinbrain_ros.runtime.policy_process import PolicyProcess, PolicyProcessError, load_policy

LIMITS = dict(joint_lower=[-1.0] * 7, joint_upper=[1.0] * 7, max_velocity=[1.0] * 7, chunk_step_period=0.1)


def _load(tiny_base_dirs, **overrides):
    return {**dict(checkpoint="", device="cpu", base_model_path="", tiny_base_dir=str(tiny_base_dirs["qwen3_vl"]),
                   camera_names=["front"], **LIMITS), **overrides}


def _alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by whoever adopted it, counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def _observation(seed=0, state=None):
    return {"front": random_image(seed)}, np.zeros(7, np.float32) if state is None else state


@pytest.fixture(scope="module")
def served(tiny_base_dirs):
    policy = PolicyProcess(_load(tiny_base_dirs), torch_threads=1)
    yield policy
    policy.close()


def test_chunks_and_answers_are_those_of_the_policy_in_this_process(served, tiny_base_dirs):
    local = load_policy(**_load(tiny_base_dirs))
    images, state = _observation()
    chunk = served.predict(images, state, "pick up the red cube", seed=3)
    assert chunk.shape == (16, 7)
    np.testing.assert_allclose(chunk, local.predict(images, state, "pick up the red cube", seed=3), atol=1e-5)
    assert served.ask(images, "what do you see?", 6) == local.ask(images, "what do you see?", 6)
    assert served.config == local.config and served.device == str(local.device) and served.pid != os.getpid()


def test_camera_frames_cross_at_the_model_input_size_with_the_same_chunk(served, tiny_base_dirs):
    """A 640x480 frame is resized before the pipe as the model would resize it: the chunk is the one the
    model computes from the full frame in this process; a frame the model refuses keeps its own error."""
    local = load_policy(**_load(tiny_base_dirs))
    frame = np.random.default_rng(5).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    small = served._at_input_size({"front": frame})["front"]
    assert small.shape[:2] == tuple(served.config.image_size)
    state = np.linspace(-0.3, 0.3, 7).astype(np.float32)
    np.testing.assert_allclose(served.predict({"front": frame}, state, "touch the red cube", seed=4),
                               local.predict({"front": frame}, state, "touch the red cube", seed=4), atol=1e-5)
    with pytest.raises(ValueError, match="too small"):
        served.predict({"front": np.zeros((10, 10, 3), np.uint8)}, state, "touch the red cube")
    with pytest.raises(ValueError, match="expected an HxWx3 uint8 RGB image"):
        served.predict({"front": frame.astype(np.float32)}, state, "touch the red cube")


def test_a_hung_process_is_killed_after_the_call_timeout(tiny_base_dirs):
    """A child that stops answering (here: SIGSTOP, as a driver hang) fails the call after call_timeout
    and is killed, instead of blocking the inference thread for ever."""
    policy = PolicyProcess(_load(tiny_base_dirs), torch_threads=1, call_timeout=2.0)
    images, state = _observation()
    assert policy.predict(images, state, "pick up the red cube").shape == (16, 7)
    os.kill(policy.pid, signal.SIGSTOP)
    with pytest.raises(PolicyProcessError, match="did not answer within 2 s: killed"):
        policy.predict(images, state, "pick up the red cube")
    assert not _alive(policy.pid)
    with pytest.raises(PolicyProcessError, match="the inference process (exited|is gone)"):
        policy.predict(images, state, "pick up the red cube")
    policy.close()


def test_the_node_process_imports_neither_torch_nor_transformers():
    code = ("import sys, twinbrain_ros.nodes.policy_node\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_bad_observation_raises_its_own_error_and_the_process_serves_on(served):
    images, _ = _observation(1)
    with pytest.raises(ValueError, match="state contains NaN"):
        served.predict(images, np.full(7, np.nan, np.float32), "pick up the red cube")
    with pytest.raises(ValueError, match="instruction must be a non-empty string"):
        served.predict(images, np.zeros(7, np.float32), "  ")
    assert served.predict(images, np.zeros(7, np.float32), "pick up the red cube").shape == (16, 7)


def test_a_missing_checkpoint_fails_at_start_with_its_own_error_and_leaves_no_process(tmp_path, tiny_base_dirs):
    before = {p.pid for p in multiprocessing.active_children()}
    with pytest.raises(FileNotFoundError, match="checkpoint directory not found"):
        PolicyProcess(_load(tiny_base_dirs, checkpoint=str(tmp_path / "missing")))
    assert {p.pid for p in multiprocessing.active_children()} == before


def test_a_killed_process_fails_every_later_call_instead_of_hanging(tiny_base_dirs):
    policy = PolicyProcess(_load(tiny_base_dirs), torch_threads=1)
    os.kill(policy.pid, signal.SIGKILL)
    images, state = _observation()
    for _ in range(3):
        with pytest.raises(PolicyProcessError, match="the inference process (exited|is gone)"):
            policy.predict(images, state, "pick up the red cube")
    policy.close()
    assert not _alive(policy.pid)


def test_close_while_another_thread_is_inside_a_call_ends_the_call_and_the_process(tiny_base_dirs):
    import threading

    policy = PolicyProcess(_load(tiny_base_dirs), torch_threads=1)
    images, state = _observation()
    outcomes, calling = [], threading.Event()

    def worker():
        while True:
            calling.set()
            try:
                outcomes.append(policy.predict(images, state, "pick up the red cube").shape)
            except PolicyProcessError as exc:
                outcomes.append(str(exc))
                return

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    calling.wait(10)
    time.sleep(0.2)
    policy.close(timeout=1.0)
    thread.join(10)
    assert not thread.is_alive(), "a caller still waits on a closed inference process"
    assert not _alive(policy.pid)
    assert all(o == (16, 7) for o in outcomes[:-1]) and "inference process" in outcomes[-1]


def test_the_process_exits_when_its_parent_is_killed(tiny_base_dirs):
    script = ("import time\nfrom twinbrain_ros.runtime.policy_process import PolicyProcess\n"
              f"p = PolicyProcess({_load(tiny_base_dirs)!r}, 1)\nprint(p.pid, flush=True)\ntime.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 60
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the inference process outlived its node"


@pytest.fixture
def graph():
    g = RosGraph()
    yield g
    g.close()


def test_policy_node_reports_a_dead_inference_process_and_reconfiguring_starts_a_new_one(graph, tiny_base_dirs):
    commands = graph.record(JointTrajectory, "/twinbrain/joint_command")
    diags = graph.record(DiagnosticArray, "/diagnostics")
    node = _policy_node(graph, tiny_base_dirs, diagnostics_period=0.2, inference_process=True)
    assert isinstance(node.policy, PolicyProcess)
    first = node.policy.pid
    graph.start_feed()
    graph.publish_instruction("pick up the red cube")
    assert graph.wait_for(lambda: commands.count() > 30), "no setpoints from the inference process"

    os.kill(first, signal.SIGKILL)   # as the OOM killer would
    level = lambda: (_status(diags, "twinbrain: policy")[0] or DiagnosticStatus()).level  # noqa: E731
    assert graph.wait_for(lambda: level() == DiagnosticStatus.ERROR), "a dead inference process went unreported"
    assert "inference process" in _status(diags, "twinbrain: policy")[0].message
    time.sleep(0.3)
    n = commands.count()
    time.sleep(0.5)
    assert commands.count() == n, "setpoints without a model"
    assert node.worker.is_alive() and node.control.is_alive(), "the node's threads ended with the child"

    assert node.trigger_deactivate() == Result.SUCCESS and node.trigger_cleanup() == Result.SUCCESS
    assert node.policy is None
    assert node.trigger_configure() == Result.SUCCESS and node.trigger_activate() == Result.SUCCESS
    assert node.policy.pid != first and _alive(node.policy.pid)
    assert graph.wait_for(lambda: commands.count() > n + 30), "no setpoints after reconfiguring"
    second = node.policy.pid
    assert node.trigger_deactivate() == Result.SUCCESS and node.trigger_cleanup() == Result.SUCCESS
    assert not _alive(second), "cleanup left the inference process running"
