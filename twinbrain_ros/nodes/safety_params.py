"""safety_node's parameters and the runtime objects built from them — one place, used by the node,
the benchmarks and the tests (``SafetyConfig.from_config`` reads the layered YAML the way the node gets it)."""

from __future__ import annotations

import numpy as np

from ..runtime.feedback import FeedbackLimits, FeedbackMonitor, Heartbeat
from ..runtime.joint_limits import JointSpace
from ..runtime.pose_limiter import PoseLimiter, WorkspaceBox
from ..runtime.safety import SafetyLimiter
from .params import (
    REQUIRED,
    REQUIRED_FLOATS,
    ROBOT,
    Param,
    ParameterError,
    all_non_negative,
    joint_limits,
    non_negative,
    one_of,
    positive,
    resolve,
)


def _fraction(value) -> str | None:
    return None if 0.0 < value <= 1.0 else "must be in (0, 1]"


PARAMS = ROBOT + [
    Param("output_mode", "joint", "joint: JointTrajectory to the controller; end_effector: PoseStamped targets "
          "(MoveIt Servo) from pose_topic, limited in Cartesian space.", one_of("joint", "end_effector")),
    Param("command_topic", "twinbrain/joint_command", "Joint setpoints to check (JointTrajectory)."),
    Param("controller_topic", "arm_controller/joint_trajectory", "The controller's JointTrajectory input."),
    Param("joint_states_topic", "joint_states", "Measured joint states (start, feedback checks)."),
    Param("pose_topic", "twinbrain/pose_command", "End-effector targets to check (PoseStamped)."),
    Param("pose_output_topic", "servo_node/pose_target_cmds", "Where limited end-effector poses go."),
    Param("ee_pose_topic", "twinbrain/ee_pose", "Measured end-effector pose (PoseStamped): the pose output "
          "starts and restarts from it, never from a command."),
    Param("base_frame", "base_link", "frame_id of the limited end-effector poses."),
    Param("workspace_min", REQUIRED_FLOATS, "End-effector workspace box lower corner (x, y, z)."),
    Param("workspace_max", REQUIRED_FLOATS, "End-effector workspace box upper corner (x, y, z)."),
    Param("max_ee_velocity", REQUIRED, "End-effector linear speed limit (m/s, Euclidean).", positive),
    Param("max_ee_acceleration", REQUIRED, "End-effector linear acceleration limit (m/s², Euclidean).", positive),
    Param("max_ee_angular_velocity", REQUIRED, "End-effector orientation rate limit (rad/s).", positive),
    Param("max_ee_step", 0.0, "Largest end-effector position change per tick (m); 0 disables it.", non_negative),
    Param("position_margin", REQUIRED_FLOATS, "Soft margin inside each joint's position limits, one per "
          "joint in its own units (rad; m for a prismatic gripper, where it must not block a full close).",
          all_non_negative),
    Param("max_step", 0.0, "Largest position change per tick; 0 disables it.", non_negative),
    Param("velocity_scale", 1.0, "Fraction (0, 1] of every velocity and acceleration limit (joint and end "
          "effector): a first trial on a real arm at 0.1.", _fraction),
    Param("dry_run", False, "Publish the limited commands on ~/dry_run/* instead of the controller topic (the "
          "arm does not move; the tracking check is off and releases resume from the held output)."),
    Param("command_timeout", REQUIRED, "Watchdog: decelerate to a hold after this long without a valid command.",
          positive),
    Param("max_tracking_error", REQUIRED, "A measured joint further than this from the output (blocked, lagging, "
          "pushed) latches a tracking_error fault and holds; 0 disables.", non_negative),
    Param("joint_state_timeout", REQUIRED, "No valid joint state for this long latches joint_state_stall (s).",
          positive),
    Param("max_joint_state_age", REQUIRED, "A joint state older than this on arrival (header stamp) latches "
          "joint_state_stale (s).", positive),
    Param("max_joint_state_future", 0.05, "A joint state stamped further in the future latches joint_state_future: "
          "clock skew between hosts (s).", positive),
    Param("joint_state_velocity_factor", REQUIRED, "Implied speed between consecutive joint states above this multiple "
          "of max_velocity latches joint_state_jump (an encoder glitch).", positive),
    Param("joint_state_noise", 0.001, "Per-sample jitter of the joint states always allowed (rad / m).", non_negative),
    Param("joint_state_ignore", "", "Comma-separated joint names in joint_states that are not controlled "
          "(e.g. a mimic finger); any other unknown name latches joint_state_unknown_joint."),
    Param("rest_samples", 5, "Consecutive consistent joint states that make the arm count as at rest: the "
          "limiter starts and restarts only from such a measurement.", positive),
    Param("rest_tolerance", 0.002, "Largest spread of those samples (rad / m); a release whose rest measurement "
          "is this close to the held output resumes from the output instead of restarting from the measurement.",
          positive),
    Param("estop_heartbeat_topic", "~/heartbeat", "Bool from an e-stop device: True = ok."),
    Param("estop_heartbeat_timeout", 0.0, "> 0: the e-stop trips when the heartbeat is silent this long or says "
          "False (s); 0 disables heartbeat mode.", non_negative),
    Param("control_thread_priority", 50, "SCHED_FIFO priority of the tick thread; 0 disables. Without the "
          "permission the node warns and runs unprioritised.", non_negative),
    Param("process_niceness", -10, "Nice value for this process's threads where permitted (root or CAP_SYS_NICE): "
          "the executor thread holds the GIL the tick thread needs, and must not be preempted by ordinary "
          "processes while it does (priority inversion). 0 leaves it."),
    Param("gil_switch_interval", 0.0005, "sys.setswitchinterval (s): how long the tick thread may wait for "
          "the GIL behind a callback (Python's default is 5 ms).", positive),
    Param("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", positive),
    Param("autostart", True, "Configure and activate at start-up (launch and twinbrain-ros up); false leaves the "
          "managed node unconfigured for `ros2 lifecycle set` / a lifecycle manager."),
]


class SafetyConfig:
    """The runtime objects of a safety node with parameter values ``p`` (name -> value)."""

    def __init__(self, p: dict, node_name: str = "safety_node"):
        self.p, self.node_name = p, node_name
        self.period = 1.0 / p["control_rate_hz"]
        self.space_limits = joint_limits(p, node_name)
        try:
            self.box = WorkspaceBox(np.array(p["workspace_min"], float), np.array(p["workspace_max"], float))
        except ValueError as exc:
            raise ParameterError(f"{node_name}: {exc}") from None

    @classmethod
    def from_config(cls, config: dict | None = None, **overrides) -> "SafetyConfig":
        """What the node builds from the layered configuration (``graph.load_config()``, the default)."""
        from ..graph import load_config, node_params

        values = resolve(PARAMS, {**node_params(config or load_config(), "safety_node"), **overrides}, "safety_node")
        return cls(values)

    def limiter(self) -> SafetyLimiter:
        p = self.p
        return SafetyLimiter(self.space_limits, self.period, p["position_margin"], p["max_step"] or None,
                             p["command_timeout"], p["velocity_scale"],
                             None if p["dry_run"] else (p["max_tracking_error"] or None), p["rest_tolerance"])

    def monitor(self) -> FeedbackMonitor:
        p = self.p
        limits = FeedbackLimits(p["joint_state_timeout"], p["max_joint_state_age"], p["max_joint_state_future"],
                                p["joint_state_velocity_factor"], p["joint_state_noise"], p["rest_samples"],
                                p["rest_tolerance"])
        ignore = [n.strip() for n in p["joint_state_ignore"].split(",") if n.strip()]
        # plausibility against the robot's own velocity limits (no margin, no velocity_scale)
        return FeedbackMonitor(JointSpace(self.space_limits), limits, ignore)

    def pose_limiter(self) -> PoseLimiter:
        p = self.p
        return PoseLimiter(self.box, self.period, p["max_ee_velocity"], p["max_ee_acceleration"],
                           p["max_ee_angular_velocity"], p["command_timeout"], p["max_ee_step"] or None,
                           p["velocity_scale"])

    def heartbeat(self) -> Heartbeat | None:
        return Heartbeat(self.p["estop_heartbeat_timeout"]) if self.p["estop_heartbeat_timeout"] > 0 else None
