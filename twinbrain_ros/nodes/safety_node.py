"""safety_node: the only node that talks to the controller.

Joint mode: every command goes through the SafetyLimiter; at control rate, on its own real-time
thread (never behind input callbacks), the limited setpoint goes to the controller as a short
JointTrajectory (stamped with the tick time): this tick's point, then the output's own stop at maximum
deceleration, with velocities — so a late message or a dead safety node still ends at rest in limits.
End-effector mode: PoseStamped targets go through the PoseLimiter (workspace box, Cartesian step /
velocity / acceleration, orientation rate) and stream out at control rate.

Feedback (runtime/feedback.py): every joint state is checked; a bad one, a stall, a tracking error
latch a fault: the output decelerates to a hold and stays there until the fault has cleared and
``~/release`` is called. The limiter starts, and restarts on release, only from a validated joint
state of an arm at rest. E-stop: the ``~/estop`` service, a True on the ``~/estop`` topic (reliable +
transient_local, so a trip published before discovery completes still arrives, and a restarted node
re-latches the last trip: fail-safe; a best-effort volatile subscription takes any other publisher),
or an optional heartbeat that stops saying "ok". Only ``~/release`` releases. ``dry_run``: the limited
commands go to ``~/dry_run/*`` instead of the controller. State: twinbrain_ros/SafetyStatus on
``~/status`` (latched) on every change and at 1 Hz, and /diagnostics (ERROR while e-stopped or faulted).

A managed (lifecycle) node: configure builds the limits and interfaces, activate allows motion,
deactivate holds (decelerate, stay, refuse commands), cleanup stops the tick and frees the interfaces.
``autostart`` (default, as launch and `twinbrain-ros up` run it) goes to active at start-up.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ..msg import SafetyStatus
from ..runtime.joint_limits import CommandRejected
from ..runtime.safety import LIMIT_KINDS
from .diagnostics import ThrottledLog, diagnostic_array
from .lifecycle import destroy_entities
from .params import declare
from .qos import LATCHED
from .realtime import PeriodicThread
from .ros_convert import joint_trajectory, sec_to_stamp, stamp_to_sec
from .safety_params import PARAMS, SafetyConfig

ESTOP_ANY = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)


INACTIVE = "inactive"   # the hold of a deactivated node (lifecycle), kept with the latched faults


class SafetyNode(LifecycleNode):
    def __init__(self, **kwargs):
        self._stop = threading.Event()   # first: destroy_node may run on a half-built node
        self.control: PeriodicThread | None = None
        super().__init__("safety_node", **kwargs)
        self.p = p = declare(self, PARAMS)
        self.cfg = SafetyConfig(p, self.get_name())   # bad limits fail here, before any transition
        sys.setswitchinterval(p["gil_switch_interval"])   # the tick thread must not wait 5 ms behind callbacks
        self._renice(p["process_niceness"])
        self.log = ThrottledLog(self.get_logger())
        self.period = self.cfg.period
        self.lock = threading.Lock()
        self.active = False
        self._entities: list = []     # what on_configure created, destroyed again by on_cleanup
        self.tick_errors: deque[float] = deque(maxlen=10000)
        if p["autostart"]:
            self.trigger_configure()
            self.trigger_activate()

    # -- lifecycle (ros2 lifecycle set /safety_node configure | activate | deactivate | cleanup) -------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        """Build the limits and the interfaces; the tick thread runs, but nothing moves before activate."""
        p = self.p
        self.limiter, self.monitor, self.pose = self.cfg.limiter(), self.cfg.monitor(), self.cfg.pose_limiter()
        self.heartbeat = self.cfg.heartbeat()
        self.last_reject = ""
        self.started_at = self.now()
        self.ee_measured: tuple[np.ndarray, np.ndarray] | None = None
        self._rest_sent = self._pose_rest_sent = True
        self._commanded = False   # no command accepted since the start: see _fault
        self._limit_flags = np.zeros(len(self.limiter.names), np.uint8)   # LIMIT_* bits of the last output
        self._status_key, self._status_sent = None, 0.0   # what SafetyStatus last said, when

        inputs = MutuallyExclusiveCallbackGroup()
        keep = self._entities.append
        sub = lambda *a, **k: keep(self.create_subscription(*a, callback_group=inputs, **k))  # noqa: E731
        sub(JointTrajectory, p["command_topic"], self._on_command, 1)   # only the newest setpoint matters
        sub(JointState, p["joint_states_topic"], self._on_joint_state, qos_profile_sensor_data)
        sub(Bool, "~/estop", self._on_estop_topic, LATCHED)      # reliable + transient_local: no trip lost
        sub(Bool, "~/estop", self._on_estop_topic, ESTOP_ANY)    # matches any other publisher's QoS
        if self.heartbeat is not None:
            sub(Bool, p["estop_heartbeat_topic"], self._on_heartbeat, qos_profile_sensor_data)
        keep(self.create_service(Trigger, "~/estop", self._on_estop_service, callback_group=inputs))
        keep(self.create_service(Trigger, "~/release", self._on_release_service, callback_group=inputs))
        prefix = "~/dry_run/" if p["dry_run"] else ""
        if p["output_mode"] == "joint":
            self.controller_pub = self.create_publisher(
                JointTrajectory, prefix + "joint_trajectory" if prefix else p["controller_topic"], 10)
            keep(self.controller_pub)
        else:
            sub(PoseStamped, p["pose_topic"], self._on_pose, 10)
            sub(PoseStamped, p["ee_pose_topic"], self._on_ee_pose, qos_profile_sensor_data)
            self.pose_pub = self.create_publisher(PoseStamped, prefix + "pose" if prefix else p["pose_output_topic"],
                                                  10)
            keep(self.pose_pub)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.status_pub = self.create_publisher(SafetyStatus, "~/status", LATCHED)
        keep(self.diag_pub)
        keep(self.status_pub)
        keep(self.create_timer(1.0, self._publish_status, callback_group=MutuallyExclusiveCallbackGroup()))
        keep(self.create_timer(p["diagnostics_period"], self._publish_diagnostics,
                               callback_group=MutuallyExclusiveCallbackGroup()))
        self._stop.clear()
        self.control = PeriodicThread(
            "safety-tick", self.period, self._on_tick, running=lambda: not self._stop.is_set() and self.context.ok(),
            on_error=lambda exc: self.log("error", "tick", f"safety tick failed: {exc!r}"),
            tick_errors=self.tick_errors, priority=p["control_thread_priority"],
            on_no_priority=lambda exc: self.get_logger().warn(f"safety tick runs without real-time priority ({exc})"))
        self.control.start()
        if p["dry_run"]:
            self.get_logger().warn("dry_run: limited commands go to ~/dry_run/*, NOT to the controller")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        """Allow motion. After a deactivate only once the held output is at rest (the hold ends where the arm
        stopped); an e-stop or a fault stays latched until ~/release."""
        with self.lock:
            if INACTIVE in self.limiter.faults:
                if not self.limiter.output_at_rest:
                    self.get_logger().error("activate refused: the output is still decelerating to the hold")
                    return TransitionCallbackReturn.FAILURE
                del self.limiter.faults[INACTIVE]
            self.active = True
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        """Hold: decelerate within limits and stay; commands are refused until activate."""
        with self.lock:
            self.active = False
            self.limiter.latch_fault(INACTIVE, "deactivated (lifecycle): holding until activate")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._stop_tick()
        destroy_entities(self, self._entities)
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_tick()
        return TransitionCallbackReturn.SUCCESS

    def _stop_tick(self) -> None:
        self._stop.set()
        if self.control is not None and self.control.is_alive():
            self.control.join(timeout=1.0)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _renice(self, niceness: int) -> None:
        """Per thread on Linux: called from the thread that spins the executor, inherited by later threads."""
        if niceness:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, niceness)
            except (PermissionError, OSError) as exc:
                self.get_logger().info(f"process_niceness {niceness} not permitted ({exc}); running at the default")

    def _fault(self, kind: str, reason: str) -> None:
        """A feedback fault (call under the lock): latched once the limiter runs and a command was accepted.
        Before that it is only counted and reported: nothing has moved, and the start itself needs clean
        feedback at rest. So a fault between the start and the first command (a driver or a host that
        stalls while the policy loads its model) sends the limiter back to waiting for the arm at rest,
        as at start-up, instead of latching a fault only an operator could clear."""
        lim = self.limiter
        if lim.initialized and (self._commanded or self.p["output_mode"] != "joint"):
            if lim.latch_fault(kind, reason):
                self.get_logger().error(f"FAULT {kind}: {reason}; holding until it clears and ~/release is called")
            return
        if lim.initialized:
            lim.await_rest()
            lim.counters["start_over"] += 1
        lim.counters[kind] += 1
        self.last_reject = f"{kind}: {reason}"
        self.log("warn", kind, f"{kind} before the first command: {reason}; waiting for the arm at rest")

    # -- inputs -------------------------------------------------------------------------------
    def _on_joint_state(self, msg: JointState) -> None:
        now, stamp = self.now(), stamp_to_sec(msg.header.stamp)
        with self.lock:
            try:
                q = self.monitor.update(msg.name, msg.position, stamp, now)
            except CommandRejected as exc:
                self._fault(exc.kind, str(exc))
                return
            if self.limiter.initialized:
                latched = set(self.limiter.faults)
                self.limiter.observe(q, now, stamp or now)
                for kind in set(self.limiter.faults) - latched:
                    self.get_logger().error(f"FAULT {kind}: {self.limiter.faults[kind]}; holding until it clears "
                                            "and ~/release is called")
                return
            rest = self.monitor.rest_position(now)
            if rest is None:
                return
            self.limiter.reset(rest, now)
        self.get_logger().info("limiter started from joint_states of the arm at rest")

    def _on_command(self, msg: JointTrajectory) -> None:
        with self.lock:
            try:
                if not self.active:
                    raise self._counted(CommandRejected(INACTIVE, "node not active (lifecycle): no motion"))
                if not msg.points:
                    raise self._counted(CommandRejected("empty", "command has no points"))
                # streamed setpoints: the first point is the target
                self.limiter.set_target(msg.joint_names, msg.points[0].positions, self.now())
                self._commanded = True
            except CommandRejected as exc:
                self.last_reject = f"{exc.kind}: {exc}"
                self.log("warn", "command_rejected", f"command rejected: {self.last_reject}")

    def _counted(self, exc: CommandRejected) -> CommandRejected:
        self.limiter.count_rejection(exc.kind)
        return exc

    def _on_pose(self, msg: PoseStamped) -> None:
        pos, ori = msg.pose.position, msg.pose.orientation
        with self.lock:
            try:
                if not self.active:
                    raise self._counted(CommandRejected(INACTIVE, "node not active (lifecycle): no motion"))
                if not self.pose.initialized:
                    raise self._counted(CommandRejected("not_ready", f"no measured end-effector pose on "
                                                                     f"{self.p['ee_pose_topic']} yet"))
                if self.limiter.holding:
                    raise self._counted(CommandRejected("estop_active" if self.limiter.estopped else "fault_active",
                                                        "e-stop or fault latched; call release first"))
                self.pose.set_target([pos.x, pos.y, pos.z], [ori.x, ori.y, ori.z, ori.w], self.now())
            except CommandRejected as exc:
                self.last_reject = f"{exc.kind}: {exc}"
                self.log("warn", "pose_rejected", f"pose rejected: {self.last_reject}")

    def _on_ee_pose(self, msg: PoseStamped) -> None:
        pos, ori = msg.pose.position, msg.pose.orientation
        p, q = np.array([pos.x, pos.y, pos.z]), np.array([ori.x, ori.y, ori.z, ori.w])
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))) or abs(np.linalg.norm(q) - 1) > 1e-2:
            with self.lock:
                self._fault("ee_pose_invalid", "measured end-effector pose has NaN/inf or a non-unit quaternion")
            return
        with self.lock:
            self.ee_measured = (p, q)
            if not self.pose.initialized and self.monitor.rest_position(self.now()) is not None:
                self.pose.start(p, q, self.now())

    def _on_heartbeat(self, msg: Bool) -> None:
        with self.lock:
            self.heartbeat.beat(bool(msg.data), self.now())

    def _on_estop_topic(self, msg: Bool) -> None:
        if msg.data:   # False never releases: only the service does
            self._latch("e-stop topic")

    def _on_estop_service(self, request, response):
        self._latch("e-stop service")
        response.success, response.message = True, "e-stop latched; call ~/release to resume"
        return response

    def _on_release_service(self, request, response):
        with self.lock:
            now = self.now()
            rest = self.monitor.rest_position(now)
            blocked = self.monitor.not_at_rest_reason(now)
            if self.heartbeat is not None:
                blocked = blocked or self.heartbeat.fault(now, self.started_at)
            if not self.pose.position.output_at_rest:
                blocked = blocked or "the end-effector output is still decelerating"
            # dry run: the arm does not follow, so resume from the held output, never from the arm
            response.success, response.message = self.limiter.release(now, None if self.p["dry_run"] else rest, blocked)
            if response.success:
                self.pose.position.estopped, self.pose.position.target = False, None
                if self.ee_measured is not None and not self.p["dry_run"]:
                    self.pose.start(*self.ee_measured, now)
        (self.get_logger().warn if response.success else self.get_logger().info)(f"~/release: {response.message}")
        return response

    def _latch(self, source: str) -> None:
        with self.lock:
            was = self.limiter.estopped
            self.limiter.latch_estop()
            self.pose.position.latch_estop()
        if not was:
            self.get_logger().error(f"E-STOP latched by {source}")

    # -- output (the real-time tick thread) ---------------------------------------------------
    def _on_tick(self) -> None:
        with self.lock:
            now = self.now()
            reason = self.monitor.stalled(now)
            if reason and self.limiter.initialized:   # before the start, fresh feedback is awaited anyway
                self._fault("joint_state_stall", reason)
            if self.heartbeat is not None and not self.limiter.estopped:
                trip = self.heartbeat.fault(now, self.started_at)
                if trip:
                    self.limiter.latch_estop()
                    self.pose.position.latch_estop()
                    self.get_logger().error(f"E-STOP latched by the heartbeat: {trip}")
            # Step and publish under one lock: the order on the wire is the order of the limiter's steps.
            if self.p["output_mode"] == "joint":
                self._joint_output(now)
            else:
                self._pose_output(now)
            status = self._status_if_changed()
        if status is not None:
            self.status_pub.publish(status)

    def _joint_output(self, now: float) -> None:
        lim = self.limiter
        before = None if lim.q is None else lim.q.copy()
        result = lim.step(now)
        if result is None:
            return
        holding = lim.target is None or lim.watchdog_active or lim.holding
        at_rest = np.array_equal(before, result.positions)
        if holding and at_rest and self._rest_sent:
            return   # at rest while holding: the controller already holds the last point
        self._rest_sent = at_rest   # the standstill sample itself goes out once
        self._limit_flags = np.zeros(len(lim.names), np.uint8)
        for bit, kind in enumerate(LIMIT_KINDS):
            self._limit_flags |= result.acted[kind].astype(np.uint8) << bit
        positions, velocities = lim.stopping_horizon()
        # Stamped with the tick's time, not 0 ("start now"): a message delivered a few ms late then still
        # reaches each point on the tick grid, and the splice onto the previous message keeps its velocity.
        self.controller_pub.publish(joint_trajectory(lim.names, positions, sec_to_stamp(now), self.period,
                                                     self.period, velocities))

    def _pose_output(self, now: float) -> None:
        self.pose.position.estopped = self.limiter.holding   # feedback faults hold the end effector too
        before = None if self.pose.position.q is None else self.pose.position.q.copy()
        out = self.pose.step(now)
        if out is None:
            return
        lim = self.pose.position
        holding = lim.target is None or lim.watchdog_active or lim.holding
        at_rest = np.array_equal(before, out[0])
        if holding and at_rest and self._pose_rest_sent:
            return
        self._pose_rest_sent = at_rest
        msg = PoseStamped()
        msg.header.frame_id, msg.header.stamp = self.p["base_frame"], sec_to_stamp(now)
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in out[0])
        o = msg.pose.orientation
        o.x, o.y, o.z, o.w = (float(v) for v in out[2])
        self.pose_pub.publish(msg)

    def _status_if_changed(self) -> SafetyStatus | None:
        """SafetyStatus on a change of state (at once) or of limit flags (which can flap every tick while a
        limit shapes the motion: at most every 0.1 s). Call under the lock."""
        lim = self.limiter
        state = (lim.initialized, lim.estopped, lim.watchdog_active, tuple(sorted(lim.faults)), self.last_reject)
        flags, now = self._limit_flags.tobytes(), time.monotonic()
        key = self._status_key
        if key is not None and state == key[0] and (flags == key[1] or now - self._status_sent < 0.1):
            return None
        self._status_key, self._status_sent = (state, flags), now
        return self._status()

    def _status(self) -> SafetyStatus:
        """Snapshot of the limiter as a SafetyStatus (call under the lock)."""
        lim, c = self.limiter, self.limiter.counters
        counters = c + self.pose.counters if self.p["output_mode"] != "joint" else c
        names = sorted(counters)
        msg = SafetyStatus(ready=lim.initialized, estop_active=lim.estopped, watchdog_active=lim.watchdog_active,
                           fault_active=bool(lim.faults), faults=[f"{k}: {v}" for k, v in sorted(lim.faults.items())],
                           dry_run=self.p["dry_run"], velocity_scale=float(self.p["velocity_scale"]),
                           last_rejection=self.last_reject, joint_names=list(lim.names),
                           limit_flags=self._limit_flags.tolist(), limited_commands=counters["limited"],
                           rejected_commands=counters["rejected"], watchdog_trips=counters["watchdog"],
                           estop_latches=c["estop"], fault_latches=c["faults"], restarts=c["restart"],
                           counter_names=names, counter_values=[counters[n] for n in names])
        msg.header.stamp = sec_to_stamp(self.now())
        return msg

    def _publish_status(self) -> None:
        with self.lock:
            status = self._status()
        self.status_pub.publish(status)

    def _publish_diagnostics(self) -> None:
        with self.lock:
            lim = self.limiter
            counters = dict(lim.counters + self.pose.counters)
            estop, watchdog, ready, faults = lim.estopped, lim.watchdog_active, lim.initialized, dict(lim.faults)
        inactive = faults.pop(INACTIVE, None)
        errors = (["E-STOP latched"] if estop else []) + [f"FAULT {k}: {v}" for k, v in sorted(faults.items())]
        level = "error" if errors else ("warn" if (watchdog or not ready or inactive) else "ok")
        message = ("; ".join(errors) if errors else inactive if inactive else "watchdog: holding" if watchdog
                   else "waiting for joint_states of the arm at rest" if not ready else "ok")
        values = {f"interventions.{k}": v for k, v in sorted(counters.items())}
        values.update(estop=estop, watchdog=watchdog, faults=",".join(sorted(faults)), last_reject=self.last_reject,
                      dry_run=self.p["dry_run"], velocity_scale=self.p["velocity_scale"])
        if self.tick_errors:
            values["tick_error_p99_ms"] = round(float(np.percentile(np.array(self.tick_errors), 99)) * 1e3, 3)
        self.diag_pub.publish(diagnostic_array(sec_to_stamp(self.now()), "twinbrain: safety", self.get_name(),
                                               level, message, values))

    def destroy_node(self):
        self._stop_tick()
        return super().destroy_node()


def main(args=None):
    from .spin import run_node
    run_node(SafetyNode, args)


if __name__ == "__main__":
    main()
