"""safety_node: the only node that talks to the controller.

Every command from the policy (or anyone else) goes through the SafetyLimiter; the limited setpoint
is published at control rate on the controller's topic (joint_trajectory_controller semantics:
header.stamp = 0, i.e. start now). Watchdog: no valid command for ``command_timeout`` -> decelerate
to a hold. E-stop: the ``~/estop`` service or a True on the volatile ``~/estop`` topic latches it;
only the ``~/release`` service releases it (from the measured joint state). End-effector targets are
clamped to the workspace box. State goes out as twinbrain_ros/SafetyStatus on ``~/status`` (latched)
when it changes and at 1 Hz, and on /diagnostics.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ..msg import SafetyStatus
from ..runtime.safety import LIMIT_KINDS, CommandRejected, SafetyLimiter, WorkspaceBox
from .diagnostics import ThrottledLog, diagnostic_array
from .params import ROBOT, Param, all_non_negative, declare, joint_limits, non_negative, positive
from .qos import LATCHED
from .ros_convert import joint_trajectory, sec_to_stamp

PARAMS = ROBOT + [
    Param("command_topic", "/twinbrain/joint_command", "Joint setpoints to check (JointTrajectory)."),
    Param("controller_topic", "/arm_controller/joint_trajectory", "The controller's JointTrajectory input."),
    Param("joint_states_topic", "/joint_states", "Measured joint states (initialise the limiter)."),
    Param("pose_topic", "/twinbrain/pose_command", "End-effector targets to check (PoseStamped)."),
    Param("pose_output_topic", "/servo_node/pose_target_cmds", "Where checked pose targets go."),
    Param("workspace_min", [-1.0, -1.0, 0.0], "End-effector workspace box lower corner (x, y, z)."),
    Param("workspace_max", [1.0, 1.0, 1.5], "End-effector workspace box upper corner (x, y, z)."),
    Param("position_margin", [0.02] * 6 + [0.0], "Soft margin inside each joint's position limits, one per "
          "joint in its own units (rad; m for a prismatic gripper, where it must not block a full close).",
          all_non_negative),
    Param("max_step", 0.0, "Largest position change per command; 0 disables it.", non_negative),
    Param("command_timeout", 0.3, "Watchdog: decelerate to a hold after this long without a valid command.",
          positive),
    Param("max_tracking_error", 0.5, "If a measured joint is further than this from the last output (the arm "
          "was pushed, collided or a simulator reset it), restart from the measured state and hold; 0 disables.",
          non_negative),
    Param("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", positive),
]


class SafetyNode(Node):
    def __init__(self, **kwargs):
        super().__init__("safety_node", **kwargs)
        self.p = p = declare(self, PARAMS)
        self.log = ThrottledLog(self.get_logger())
        self.period = 1.0 / p["control_rate_hz"]
        self.limiter = SafetyLimiter(joint_limits(p, self.get_name()), self.period, p["position_margin"],
                                     p["max_step"] or None, p["command_timeout"])
        lo, hi = np.array(p["workspace_min"], float), np.array(p["workspace_max"], float)
        if lo.shape != (3,) or hi.shape != (3,) or np.any(lo >= hi):
            raise ValueError(f"safety_node: workspace_min {p['workspace_min']} must be below workspace_max {p['workspace_max']}")
        self.box = WorkspaceBox(lo, hi)
        self.lock = threading.Lock()
        self.last_reject = ""
        self._rest_sent = True
        self._limit_flags = np.zeros(len(self.limiter.names), np.uint8)   # LIMIT_* bits of the last output
        self._status_key, self._status_sent = (None, None), 0.0   # (state, limit flags) last published, when

        inputs = MutuallyExclusiveCallbackGroup()
        self.create_subscription(JointTrajectory, p["command_topic"], self._on_command, 10, callback_group=inputs)
        self.create_subscription(PoseStamped, p["pose_topic"], self._on_pose, 10, callback_group=inputs)
        self.create_subscription(JointState, p["joint_states_topic"], self._on_joint_state, qos_profile_sensor_data,
                                 callback_group=inputs)
        self.create_subscription(Bool, "~/estop", self._on_estop_topic, 10, callback_group=inputs)   # volatile
        self.create_service(Trigger, "~/estop", self._on_estop_service, callback_group=inputs)
        self.create_service(Trigger, "~/release", self._on_release_service, callback_group=inputs)
        self.controller_pub = self.create_publisher(JointTrajectory, p["controller_topic"], 10)
        self.pose_pub = self.create_publisher(PoseStamped, p["pose_output_topic"], 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.status_pub = self.create_publisher(SafetyStatus, "~/status", LATCHED)
        self.create_timer(1.0, self._publish_status, callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(self.period, self._on_tick, callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(p["diagnostics_period"], self._publish_diagnostics, callback_group=MutuallyExclusiveCallbackGroup())

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- inputs -------------------------------------------------------------------------------
    def _on_joint_state(self, msg: JointState) -> None:
        try:
            positions = self.limiter.order(msg.name, msg.position)
        except CommandRejected as exc:
            self.log("warn", "joint_states", f"joint_states unusable: {exc}")
            return
        with self.lock:
            was_ready = self.limiter.initialized
            reseeded = self.limiter.observe(positions, self.now(), self.p["max_tracking_error"])
        if not was_ready:
            self.get_logger().info("limiter initialised from joint_states")
        elif reseeded:
            self.log("warn", "tracking", "tracking error too large: restarted from the measured joint state")

    def _on_command(self, msg: JointTrajectory) -> None:
        if not msg.points:
            self._reject("empty", "command has no points")
            return
        point = msg.points[0]   # streamed setpoints: the next point is the target
        with self.lock:
            try:
                self.limiter.set_target(msg.joint_names, point.positions, self.now())
            except CommandRejected as exc:
                self.last_reject = f"{exc.kind}: {exc}"
                self.log("warn", "command_rejected", f"command rejected: {self.last_reject}")

    def _reject(self, kind: str, message: str) -> None:
        with self.lock:
            self.limiter.count_rejection(kind)
            self.last_reject = f"{kind}: {message}"

    def _on_pose(self, msg: PoseStamped) -> None:
        pos, ori = msg.pose.position, msg.pose.orientation
        with self.lock:
            if self.limiter.estopped:
                self.limiter.count_rejection("estop_active")
                return
            try:
                xyz, quat, clamped = self.box.limit_pose([pos.x, pos.y, pos.z], [ori.x, ori.y, ori.z, ori.w])
            except CommandRejected as exc:
                self.limiter.count_rejection(exc.kind)
                self.last_reject = f"{exc.kind}: {exc}"
                return
            if clamped:
                self.limiter.counters["workspace"] += 1
        out = PoseStamped()
        out.header = msg.header
        out.pose.position.x, out.pose.position.y, out.pose.position.z = (float(v) for v in xyz)
        out.pose.orientation.x, out.pose.orientation.y, out.pose.orientation.z, out.pose.orientation.w = (float(v) for v in quat)
        self.pose_pub.publish(out)

    def _on_estop_topic(self, msg: Bool) -> None:
        if msg.data:   # False never releases: only the service does
            self._latch("e-stop topic")

    def _on_estop_service(self, request, response):
        self._latch("e-stop service")
        response.success, response.message = True, "e-stop latched; call ~/release to resume"
        return response

    def _on_release_service(self, request, response):
        with self.lock:
            was = self.limiter.estopped
            self.limiter.release_estop(self.now())   # from the measured state: the arm may have been moved
        response.success = True
        response.message = ("e-stop released; motion resumes from the measured state with the next command" if was
                            else "e-stop was not latched")
        self.get_logger().warn("e-stop released") if was else None
        return response

    def _latch(self, source: str) -> None:
        with self.lock:
            self.limiter.latch_estop()
        self.get_logger().error(f"E-STOP latched by {source}")

    # -- output -------------------------------------------------------------------------------
    def _on_tick(self) -> None:
        # Step and publish under one lock: the order on the wire is always the order of the limiter's
        # steps, even if the executor ever ran two ticks at once.
        with self.lock:
            before = None if self.limiter.q is None else self.limiter.q.copy()
            result = self.limiter.step(self.now())
            holding = self.limiter.target is None or self.limiter.watchdog_active or self.limiter.estopped
            at_rest = np.array_equal(before, result.positions) if result is not None else True
            send = not (result is None or (holding and at_rest and self._rest_sent))
            if send:   # else at rest while holding: the controller already holds the last point
                self._rest_sent = at_rest   # the standstill sample itself goes out once
                self._limit_flags = np.zeros(len(self.limiter.names), np.uint8)
                for bit, kind in enumerate(LIMIT_KINDS):
                    self._limit_flags |= result.acted[kind].astype(np.uint8) << bit
                # stamp 0 = "start now" for joint_trajectory_controller; reach the point one period from now.
                self.controller_pub.publish(joint_trajectory(self.limiter.names, result.positions, Time(),
                                                             self.period, self.period))
            # SafetyStatus goes out on change (checked every tick; counters ride along) and at 1 Hz. A change
            # of state (ready, e-stop, watchdog, rejection) goes out at once; limit flags, which can flap
            # every tick while a limit shapes the motion, at most every 0.1 s.
            state = (self.limiter.initialized, self.limiter.estopped, self.limiter.watchdog_active, self.last_reject)
            flags, now = self._limit_flags.tobytes(), time.monotonic()
            changed = state != self._status_key[0] or (flags != self._status_key[1] and now - self._status_sent >= 0.1)
            status = self._status() if changed else None
            if changed:
                self._status_key, self._status_sent = (state, flags), now
        if status is not None:
            self.status_pub.publish(status)

    def _status(self) -> SafetyStatus:
        """Snapshot of the limiter as a SafetyStatus (call under the lock)."""
        c = self.limiter.counters
        names = sorted(c)
        msg = SafetyStatus(ready=self.limiter.initialized, estop_active=self.limiter.estopped,
                           watchdog_active=self.limiter.watchdog_active, last_rejection=self.last_reject,
                           joint_names=list(self.limiter.names), limit_flags=self._limit_flags.tolist(),
                           limited_commands=c["limited"], rejected_commands=c["rejected"],
                           watchdog_trips=c["watchdog"], estop_latches=c["estop"], tracking_resets=c["tracking_reset"],
                           counter_names=names, counter_values=[c[n] for n in names])
        msg.header.stamp = sec_to_stamp(self.now())
        return msg

    def _publish_status(self) -> None:
        with self.lock:
            status = self._status()
        self.status_pub.publish(status)

    def _publish_diagnostics(self) -> None:
        with self.lock:
            counters = dict(self.limiter.counters)
            estop, watchdog = self.limiter.estopped, self.limiter.watchdog_active
            ready = self.limiter.initialized
        level = "error" if estop else ("warn" if (watchdog or not ready) else "ok")
        message = ("E-STOP latched" if estop else "watchdog: holding" if watchdog
                   else "waiting for joint_states" if not ready else "ok")
        values = {f"interventions.{k}": v for k, v in sorted(counters.items())}
        values.update(estop=estop, watchdog=watchdog, last_reject=self.last_reject)
        self.diag_pub.publish(diagnostic_array(sec_to_stamp(self.now()), "twinbrain: safety", self.get_name(),
                                               level, message, values))


def main(args=None):
    from .spin import run_node
    run_node(SafetyNode, args)


if __name__ == "__main__":
    main()
