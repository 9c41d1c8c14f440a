"""policy_node + safety_node with real rclpy, the tiny real model and synthetic sensor streams."""

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from ros_harness import RosGraph
from std_msgs.msg import Bool
from std_srvs.srv import Trigger
from test_safety_limiter import check_outputs
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from twinbrain_ros.bench.fake_arm import FakeArm
from twinbrain_ros.msg import ActionChunk, SafetyStatus
from twinbrain_ros.nodes.policy_node import PolicyNode
from twinbrain_ros.nodes.ros_convert import action_chunk_array, duration_to_sec, stamp_to_sec
from twinbrain_ros.nodes.safety_node import SafetyNode

JOINTS = ["joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper"]


@pytest.fixture
def graph():
    g = RosGraph()
    yield g
    g.close()


def _policy_node(graph, tiny_base_dirs, policy=None, **params):
    overrides = [Parameter("tiny_base_dir", value=str(tiny_base_dirs["qwen3_vl"]))]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    return graph.add(PolicyNode(policy=policy, context=graph.context, parameter_overrides=overrides))


def _status(rec, name):
    for msg in reversed(rec.messages):
        for s in msg.status:
            if s.name == name:
                return s, {kv.key: kv.value for kv in s.values}
    return None, {}


def _limits():

    from twinbrain_ros.graph import load_config, node_params
    from twinbrain_ros.nodes.params import joint_limits
    shared = node_params(load_config(), "safety_node")
    return joint_limits(shared)


def test_full_chain_commands_flow_at_rate_and_stop_when_inputs_freeze(graph, tiny_base_dirs):
    commands = graph.record(JointTrajectory, "/twinbrain/joint_command")
    controller = graph.record(JointTrajectory, "/arm_controller/joint_trajectory")
    chunks = graph.record(ActionChunk, "/policy_node/chunk")
    diags = graph.record(DiagnosticArray, "/diagnostics")
    policy = _policy_node(graph, tiny_base_dirs)
    graph.add(SafetyNode(context=graph.context))
    graph.start_feed(arm=FakeArm(JOINTS))   # follows the controller topic, as a robot would
    time.sleep(0.5)
    assert commands.count() == 0, "no instruction yet: the policy must stay idle"
    graph.publish_instruction("pick up the red cube")
    assert graph.wait_for(lambda: commands.count() > 150), "setpoints did not flow"
    assert graph.wait_for(lambda: controller.count() > 50), "nothing reached the controller"

    # rate: stamps of consecutive setpoints are one control period apart (median; 100 Hz configured)
    stamps = np.array([stamp_to_sec(m.header.stamp) for m in commands.messages[-150:]])
    assert np.median(np.diff(stamps)) == pytest.approx(0.01, rel=0.25)
    # every chunk has H x 7 actions stamped with its observation: the model's H = 16, more where admission
    # slowed a chunk down (the random weights' chunks can be too fast for pchip's margin)
    chunk = chunks.messages[-1]
    assert (chunk.mode, chunk.action_dim, chunk.joint_names) == (ActionChunk.MODE_JOINT_POSITION, 7, JOINTS)
    assert chunk.horizon == 16 or (chunk.horizon > 16 and policy.stats["slowed_chunks"] > 0), chunk.horizon
    assert action_chunk_array(chunk).shape == (chunk.horizon, 7) and chunk.instruction == "pick up the red cube"
    assert duration_to_sec(chunk.step_period) == pytest.approx(0.1) and duration_to_sec(chunk.inference_latency) > 0
    # stamped with the observation it was computed from: a camera stamp from the past, not publish time
    assert 0 < stamp_to_sec(chunk.header.stamp) < graph.io.get_clock().now().nanoseconds * 1e-9
    # the controller gets this tick's point one period after the tick's stamp, then the stop it would
    # follow alone (at rest at the end), with velocities
    msg = controller.messages[-1]
    assert 0 < stamp_to_sec(msg.header.stamp) <= graph.io.get_clock().now().nanoseconds * 1e-9
    assert msg.joint_names == JOINTS
    assert duration_to_sec(msg.points[0].time_from_start) == pytest.approx(0.01)
    assert all(len(p.velocities) == 7 for p in msg.points) and not any(msg.points[-1].velocities)

    # frozen camera: motion output stops once the observation is older than max_observation_age
    graph.frozen_cameras.set()
    time.sleep(1.0)
    n = commands.count()
    time.sleep(0.5)
    assert commands.count() == n, "policy kept streaming on a frozen camera"
    assert graph.wait_for(lambda: "too old" in _status(diags, "twinbrain: policy")[1].get("refusal", ""), 5.0)

    # cameras back: motion resumes; stalled joint states stop it again
    graph.frozen_cameras.clear()
    assert graph.wait_for(lambda: commands.count() > n + 20)
    graph.stop_feed()
    time.sleep(1.0)
    n = commands.count()
    time.sleep(0.5)
    assert commands.count() == n, "policy kept streaming with stalled joint states"


def test_rtc_blend_under_an_emulated_slow_model(graph, tiny_base_dirs):
    """blend rtc through the node, each inference made to take at least 0.4 s (emulated_inference_time, as
    `twinbrain-bench chunking --graph` runs it): guided chunks come, every one reports at least that latency,
    and setpoints keep flowing across the splices."""
    commands = graph.record(JointTrajectory, "/twinbrain/joint_command")
    chunks = graph.record(ActionChunk, "/policy_node/chunk")
    _policy_node(graph, tiny_base_dirs, blend="rtc", emulated_inference_time=0.4)
    graph.start_feed()
    graph.publish_instruction("pick up the red cube")
    assert graph.wait_for(lambda: chunks.count() >= 3, 30.0), "no chunks under blend rtc"
    assert all(duration_to_sec(c.inference_latency) >= 0.4 - 1e-3 for c in chunks.messages)
    n = commands.count()
    assert graph.wait_for(lambda: commands.count() > n + 20), "setpoints stopped after the splices"


def test_new_instruction_replans(graph, tiny_base_dirs):
    chunks = graph.record(ActionChunk, "/policy_node/chunk")
    diags = graph.record(DiagnosticArray, "/diagnostics")
    _policy_node(graph, tiny_base_dirs, diagnostics_period=0.2)
    graph.start_feed()
    graph.publish_instruction("pick up the red cube")
    assert graph.wait_for(lambda: chunks.count() > 2)
    first = action_chunk_array(chunks.messages[-1])
    t_switch = time.monotonic()
    graph.publish_instruction("push the blue cube to the left")
    assert graph.wait_for(lambda: len(chunks.since(t_switch + 0.3)) > 1)
    after = action_chunk_array(chunks.since(t_switch + 0.3)[-1])
    # (a chunk admission slowed down has more rows)
    assert first.shape != after.shape or not np.allclose(first, after), "the chunk did not change with the instruction"
    instruction = lambda: _status(diags, "twinbrain: policy")[1].get("instruction")  # noqa: E731
    assert graph.wait_for(lambda: instruction() == "push the blue cube to the left")


class FailingModel:
    """Fault injection: the real tiny policy whose predict fails like a CUDA OOM would."""

    def __init__(self, policy):
        self.policy, self.config, self.device = policy, policy.config, policy.device

    def predict(self, *args, **kwargs):
        raise RuntimeError("CUDA out of memory (injected)")


class SlowModel(FailingModel):
    """The real tiny policy, slowed to a large model's latency so that a reset lands mid-inference."""

    def predict(self, *args, **kwargs):
        time.sleep(0.3)
        return self.policy.predict(*args, **kwargs)


def test_reset_drops_the_plan_and_everything_inferred_before_it(graph, tiny_base_dirs):
    from twinbrain_ros.model import TwinBrainPolicy

    real = TwinBrainPolicy.from_tiny_preset(tiny_base_dirs["qwen3_vl"], camera_names=["front", "wrist"])
    chunks = graph.record(ActionChunk, "/policy_node/chunk")
    node = _policy_node(graph, tiny_base_dirs, policy=SlowModel(real))
    graph.start_feed()
    graph.publish_instruction("touch the green cube")   # the same instruction before and after: a new episode
    assert graph.wait_for(lambda: node.stats["chunks"] > 2)
    before = node.stats["chunks"]
    response = graph.call(Trigger, "/policy_node/reset")
    reset_at, reset_wall = node.runner.not_before, time.monotonic()
    assert response.success
    assert node.runner.executor.setpoint(node.now()) is None, "the old plan still drives the arm after ~/reset"
    assert graph.wait_for(lambda: node.stats["chunks"] > before + 2), "no new plan after ~/reset"
    late = [stamp_to_sec(m.header.stamp) for m in chunks.since(reset_wall + 0.1)]
    assert late and min(late) > reset_at, "a chunk inferred from an observation before ~/reset was executed"
    assert node.runner.last_obs_stamp > reset_at


def test_model_exception_keeps_node_alive_with_error_and_no_motion(graph, tiny_base_dirs):
    from twinbrain_ros.model import TwinBrainPolicy

    real = TwinBrainPolicy.from_tiny_preset(tiny_base_dirs["qwen3_vl"], camera_names=["front", "wrist"])
    commands = graph.record(JointTrajectory, "/twinbrain/joint_command")
    diags = graph.record(DiagnosticArray, "/diagnostics")
    node = _policy_node(graph, tiny_base_dirs, policy=FailingModel(real), diagnostics_period=0.2)
    graph.start_feed()
    graph.publish_instruction("pick up the red cube")
    assert graph.wait_for(lambda: node.stats["model_errors"] > 3)
    level = lambda: (_status(diags, "twinbrain: policy")[0] or DiagnosticStatus()).level  # noqa: E731
    assert graph.wait_for(lambda: level() == DiagnosticStatus.ERROR)
    status, values = _status(diags, "twinbrain: policy")
    assert "out of memory" in status.message
    assert commands.count() == 0
    assert node.worker.is_alive()


class ShapedChunkModel(FailingModel):
    """Fault injection: the real tiny policy's chunk with the arm at 0, the gripper at 0.02 and one joint
    following ``path(H)`` — an infeasible chunk of a chosen kind."""

    def __init__(self, policy, joint, path):
        super().__init__(policy)
        self.joint, self.path = joint, path

    def predict(self, *args, **kwargs):
        chunk = self.policy.predict(*args, **kwargs)
        chunk[:, :6] = 0.0
        chunk[:, 6] = 0.02
        chunk[:, self.joint] = self.path(len(chunk))
        return chunk


def _run_shaped(graph, tiny_base_dirs, joint, path, **params):
    """policy_node on a ShapedChunkModel until a few chunks were accepted or rejected."""
    from twinbrain_ros.model import TwinBrainPolicy

    real = TwinBrainPolicy.from_tiny_preset(tiny_base_dirs["qwen3_vl"], camera_names=["front", "wrist"])
    chunks = graph.record(ActionChunk, "/policy_node/chunk")
    node = _policy_node(graph, tiny_base_dirs, policy=ShapedChunkModel(real, joint, path), **params)
    graph.start_feed()
    graph.publish_instruction("pick up the red cube")
    assert graph.wait_for(lambda: node.stats["chunks"] + node.stats["rejected_chunks"] > 3)
    if node.stats["chunks"]:
        assert graph.wait_for(lambda: chunks.count() > 0)
    return node, chunks


@pytest.mark.parametrize("mode", ["slow_down", "reject"])
def test_overspeed_chunks_are_slowed_down_or_rejected(graph, tiny_base_dirs, mode):
    # joint_1 swings ±0.3 rad every step, inside its range: 6 rad/s needed, joint_1 allows 1.5
    node, chunks = _run_shaped(graph, tiny_base_dirs, 0, lambda h: 0.3 * (-1.0) ** np.arange(h),
                               overspeed_chunks=mode)
    if mode == "reject":
        assert node.stats["chunks"] == 0 and chunks.count() == 0
        return
    assert node.stats["slowed_chunks"] > 0 and node.stats["rejected_chunks"] == 0
    actions = action_chunk_array(chunks.messages[-1])
    limit = _limits()[0].max_velocity * duration_to_sec(chunks.messages[-1].step_period)
    assert len(actions) > 16 and np.abs(np.diff(actions[:, 0])).max() <= limit + 1e-9
    assert actions[:, 0].max() == pytest.approx(0.3) and actions[:, 0].min() == pytest.approx(-0.3)


@pytest.mark.parametrize("mode", ["clamp", "reject"])
def test_out_of_range_chunks_are_clamped_or_rejected(graph, tiny_base_dirs, mode):
    # joint_6 walks slowly past its upper limit (3.0), as a drifting delta-action policy's would
    node, chunks = _run_shaped(graph, tiny_base_dirs, 5, lambda h: np.linspace(2.9, 3.2, h), out_of_range_chunks=mode)
    if mode == "reject":
        assert node.stats["chunks"] == 0 and chunks.count() == 0 and node.stats["clamped_chunks"] == 0
        return
    assert node.stats["clamped_chunks"] > 0 and node.stats["rejected_chunks"] == 0
    actions = action_chunk_array(chunks.messages[-1])
    expected = np.minimum(np.linspace(2.9, 3.2, len(actions)), _limits()[5].upper)
    np.testing.assert_allclose(actions[:, 5], expected)
    assert np.all(actions[:, :5] == 0.0)


def _quiet(rec, seconds):
    """True once nothing was recorded for ``seconds`` (output stopped)."""
    return rec.count() > 0 and time.monotonic() - rec.times[-1] >= seconds


def _send(pub, names, positions):
    pub.publish(JointTrajectory(joint_names=list(names),
                                points=[JointTrajectoryPoint(positions=[float(p) for p in positions])]))


def _check_limits(outputs):
    """Every controller output within the YAML limits and margins, checked like the limiter's unit tests."""

    from twinbrain_ros.nodes.safety_params import SafetyConfig

    check_outputs([m.points[0].positions for m in outputs], SafetyConfig.from_config().limiter())


def test_safety_node_limits_adversarial_flood_watchdog_and_estop(graph):
    controller = graph.record(JointTrajectory, "/arm_controller/joint_trajectory")
    diags = graph.record(DiagnosticArray, "/diagnostics")
    statuses = graph.record(SafetyStatus, "/safety_node/status")
    # the synthetic robot does not follow commands: tracking-error re-seeding would mask the limiter under test
    graph.add(SafetyNode(context=graph.context, parameter_overrides=[Parameter("diagnostics_period", value=0.2),
                                                                     Parameter("max_tracking_error", value=0.0)]))
    graph.start_feed()
    pub = graph.io.create_publisher(JointTrajectory, "/twinbrain/joint_command", 100)
    estop_pub = graph.io.create_publisher(Bool, "/safety_node/estop", 10)
    graph.client(Trigger, "/safety_node/release")
    graph.client(Trigger, "/safety_node/estop")
    time.sleep(0.5)
    rng = np.random.default_rng(1)
    for k in range(600):   # adversarial flood: NaN, inf, huge jumps, shuffled and unknown names
        names = list(JOINTS)
        kind = k % 6
        values = rng.uniform(-4, 4, 7)
        if kind == 1:
            values[rng.integers(7)] = np.nan
        elif kind == 2:
            values[rng.integers(7)] = np.inf
        elif kind == 3:
            values *= 1e6
        elif kind == 4:
            perm = rng.permutation(7)
            names, values = [names[i] for i in perm], values[perm]
        elif kind == 5:
            names[rng.integers(7)] = "bogus"
        _send(pub, names, values)
        time.sleep(0.002)
    assert graph.wait_for(lambda: controller.count() > 50)
    # watchdog: once the flood is processed and no valid command follows, the arm decelerates to a
    # hold and the output stops at rest
    assert graph.wait_for(lambda: _status(diags, "twinbrain: safety")[1].get("watchdog") == "True")
    assert graph.wait_for(lambda: _quiet(controller, 0.3)), "the arm did not come to rest under the watchdog"
    _check_limits(controller.messages)
    status, values = _status(diags, "twinbrain: safety")
    for kind in ("interventions.nan", "interventions.unknown_joint", "interventions.position",
                 "interventions.watchdog"):
        assert int(values.get(kind, 0)) > 0, kind
    # SafetyStatus: per-joint flags of the limits that acted, counters, watchdog state
    assert any(np.any(np.asarray(m.limit_flags) & SafetyStatus.LIMIT_POSITION) for m in statuses.messages)
    assert any(np.any(np.asarray(m.limit_flags) & SafetyStatus.LIMIT_VELOCITY) for m in statuses.messages)
    last = statuses.messages[-1]
    assert last.ready and last.watchdog_active and not last.estop_active and last.joint_names == JOINTS
    counters = dict(zip(last.counter_names, last.counter_values))
    assert counters["nan"] > 0 and counters["unknown_joint"] > 0
    assert last.rejected_commands == counters["nan"] + counters["unknown_joint"]   # the flood's only refusals
    assert last.limited_commands > 0 and last.watchdog_trips >= 1 and last.last_rejection
    n_status = statuses.count()
    periodic = graph.wait_for(lambda: statuses.count() >= n_status + 2, 5.0)
    assert periodic, "no periodic SafetyStatus while nothing changes"

    # e-stop by topic latches; a False on the topic does not release; commands are refused until release
    estop_pub.publish(Bool(data=True))
    assert graph.wait_for(lambda: _status(diags, "twinbrain: safety")[1].get("estop") == "True")
    estop_pub.publish(Bool(data=False))
    n = controller.count()
    for _ in range(30):
        _send(pub, JOINTS, [0.3] * 6 + [0.02])
        time.sleep(0.01)
    time.sleep(0.2)
    assert controller.count() == n, "commands passed while the e-stop was latched"
    assert _status(diags, "twinbrain: safety")[1].get("estop") == "True"
    assert statuses.messages[-1].estop_active and statuses.messages[-1].estop_latches == 1
    _check_limits(controller.messages)
    assert graph.call(Trigger, "/safety_node/release").success
    for _ in range(30):
        _send(pub, JOINTS, [0.3] * 6 + [0.02])
        time.sleep(0.01)
    assert graph.wait_for(lambda: controller.count() > n + 5)
    # the release restarts from the measured state (the synthetic robot stays at 0): no pull back to where
    # the arm stopped; from there on every limit holds again
    released_at = n
    step = np.array([lim.max_velocity for lim in _limits()]) * 0.01
    assert np.all(np.abs(controller.messages[released_at].points[0].positions) <= step + 1e-9)
    # e-stop by service freezes a moving arm within limits
    assert graph.call(Trigger, "/safety_node/estop").success
    assert graph.wait_for(lambda: _quiet(controller, 0.3)), "the arm did not come to rest after the e-stop"
    n = controller.count()
    _send(pub, JOINTS, [0.5] * 6 + [0.02])
    time.sleep(0.3)
    assert controller.count() == n
    _check_limits(controller.messages[released_at:])


def test_bad_parameters_fail_at_start_with_a_clear_error(graph):
    with pytest.raises(ValueError, match="max_velocity has 2 values for 7 joints"):
        SafetyNode(context=graph.context, parameter_overrides=[Parameter("max_velocity", value=[1.0, 1.0])])
    with pytest.raises(ValueError, match="command_timeout=-1.0: must be > 0"):
        SafetyNode(context=graph.context, parameter_overrides=[Parameter("command_timeout", value=-1.0)])



def test_end_effector_mode_publishes_poses_and_safety_clamps_them_to_the_workspace(graph, tiny_base_dirs):
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import qos_profile_sensor_data
    from std_msgs.msg import Float64

    poses = graph.record(PoseStamped, "/twinbrain/pose_command")
    gripper = graph.record(Float64, "/twinbrain/gripper_command")
    checked = graph.record(PoseStamped, "/servo_node/pose_target_cmds")
    _policy_node(graph, tiny_base_dirs, output_mode="end_effector")
    graph.add(SafetyNode(context=graph.context, parameter_overrides=[Parameter("output_mode", value="end_effector")]))
    graph.start_feed()
    # the measured end-effector pose (tf / the driver in a real cell): the safety node starts from it
    ee = graph.io.create_publisher(PoseStamped, "/twinbrain/ee_pose", qos_profile_sensor_data)
    measured = PoseStamped()
    measured.pose.position.x, measured.pose.position.z, measured.pose.orientation.w = 0.3, 0.4, 1.0
    graph.io.create_timer(0.02, lambda: ee.publish(measured))
    graph.publish_instruction("touch the green cube")
    assert graph.wait_for(lambda: checked.count() > 50 and gripper.count() > 50)
    xyz = np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z] for m in checked.messages])
    assert np.linalg.norm(xyz[0] - [0.3, 0.0, 0.4]) < 0.01, "the pose output must start at the measured pose"
    assert np.linalg.norm(np.diff(xyz, axis=0), axis=1).max() <= 0.25 * 0.01 + 1e-9   # max_ee_velocity x dt
    lo, hi = np.array([-0.8, -0.8, 0.0]), np.array([0.8, 0.8, 1.2])   # config/arm.yaml workspace box
    for msg in checked.messages:
        p, q = msg.pose.position, msg.pose.orientation
        assert np.all(np.array([p.x, p.y, p.z]) >= lo - 1e-12) and np.all(np.array([p.x, p.y, p.z]) <= hi + 1e-12)
        assert abs(np.linalg.norm([q.x, q.y, q.z, q.w]) - 1.0) < 1e-6
    assert poses.messages[-1].header.frame_id == "base_link"


def test_policy_node_lifecycle_no_motion_before_activate_and_cleanup_frees_the_model(graph, tiny_base_dirs):
    from rclpy.lifecycle import TransitionCallbackReturn as Result

    commands = graph.record(JointTrajectory, "/twinbrain/joint_command")
    node = _policy_node(graph, tiny_base_dirs, autostart=False)
    assert node.policy is None and node.worker is None          # unconfigured: no model loaded yet
    assert node.trigger_configure() == Result.SUCCESS and node.policy is not None
    graph.start_feed()
    graph.publish_instruction("pick up the red cube")
    time.sleep(1.5)
    assert commands.count() == 0, "setpoints before activate"
    assert node.trigger_activate() == Result.SUCCESS
    assert graph.wait_for(lambda: commands.count() > 50), "no setpoints after activate"
    assert node.trigger_deactivate() == Result.SUCCESS
    time.sleep(0.2)
    n = commands.count()
    time.sleep(0.5)
    assert commands.count() == n, "setpoints while inactive"
    assert node.trigger_cleanup() == Result.SUCCESS
    assert node.policy is None and not node.worker.is_alive() and not node.control.is_alive()


def test_throttled_log_takes_any_mix_of_levels(graph, capfd):
    """rclpy raised "Logger severity cannot be changed between calls" when one call site logged at a second
    level: policy_node's inference worker died on the error after a slow-down warning."""
    from twinbrain_ros.nodes.diagnostics import ThrottledLog

    log = ThrottledLog(graph.io.get_logger(), period=0.0)
    for k, level in enumerate(["info", "warn", "error", "warn", "info", "error", "debug"]):
        log(level, f"key{k}", f"message {k} at {level}")
    err = capfd.readouterr().err
    assert all(f"message {k} at" in err for k in range(6)), err
