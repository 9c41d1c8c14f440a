"""chunk_runner: the robot-side half of a graph split across two hosts (policy on a GPU workstation).

The policy node on the GPU host publishes every chunk it plans (``~/chunk``, twinbrain_ros/ActionChunk,
stamped with the observation it was planned from) instead of streaming setpoints over the link; this node,
on the robot computer, executes them at control rate and streams setpoints to the safety node beside it.
So only ~10 chunks a second cross the link towards the robot, and the 100 Hz stream to the safety node
never does. The freshness rules (runtime/remote_chunks.py): a chunk is refused when its observation is
older than ``max_chunk_age`` on arrival, or stamped in the future (clock skew); streaming stops when the
newest chunk's observation gets older than that (a partition), so the safety node's watchdog brings the
arm to rest; and it resumes from the measured position, without a jump. Counters, the oldest observation
any setpoint came from and the clock diagnosis go to /diagnostics.
"""

from __future__ import annotations

import sys
import threading
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from ..msg import ActionChunk
from ..runtime.chunk_executor import BLEND_POLICIES
from ..runtime.remote_chunks import RemoteChunkExecutor
from .diagnostics import ThrottledLog, diagnostic_array
from .params import INTERPOLATION, REQUIRED, ROBOT, Param, declare, non_negative, one_of, positive
from .realtime import PeriodicThread
from .ros_convert import action_chunk_array, duration_to_sec, joint_trajectory, sec_to_stamp, stamp_to_sec

PARAMS = ROBOT + [
    Param("chunk_topic", "policy_node/chunk", "ActionChunk input: the policy node's ~/chunk on the GPU host."),
    Param("command_topic", "twinbrain/joint_command", "Setpoints for the safety node (JointTrajectory)."),
    Param("joint_states_topic", "joint_states", "Measured joint states: where a resumed stream starts from."),
    Param("max_chunk_age", REQUIRED, "No setpoint from a chunk whose observation is older than this by the "
          "robot's clock (s): older on arrival is refused, and streaming stops when the newest one ages past it.",
          positive),
    Param("max_chunk_future", 0.05, "A chunk stamped further than this in the future is refused: clock skew (s).",
          positive),
    Param("blend", "crossfade", "How a new chunk takes over: " + ", ".join(BLEND_POLICIES) + ".",
          one_of(*BLEND_POLICIES)),
    Param("blend_steps", 4, "Chunk steps over which crossfade/average ramp in.", positive),
    INTERPOLATION,
    Param("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", positive),
    Param("control_thread_priority", 50, "SCHED_FIFO priority of the setpoint thread; 0 disables.", non_negative),
    Param("gil_switch_interval", 0.0005, "sys.setswitchinterval (s), as in policy_node.", positive),
]

# Only the newest chunk matters; reliable, so a chunk lost on the link is resent (and judged by its age).
CHUNKS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)


class ChunkRunnerNode(Node):
    def __init__(self, **kwargs):
        self._stop = threading.Event()   # first: destroy_node may run on a half-built node
        self.control = None
        super().__init__("chunk_runner", **kwargs)
        self.p = p = declare(self, PARAMS)
        sys.setswitchinterval(p["gil_switch_interval"])
        self.log = ThrottledLog(self.get_logger())
        self.lock = threading.Lock()
        self.names = p["joint_names"]
        self.runner = RemoteChunkExecutor(self.names, p["max_chunk_age"], p["max_chunk_future"], p["blend"],
                                          p["blend_steps"], p["interpolation"])
        self.measured: np.ndarray | None = None
        self.arrival_ages: deque[float] = deque(maxlen=500)
        self.sent = 0
        self.period = 1.0 / p["control_rate_hz"]
        inputs = MutuallyExclusiveCallbackGroup()
        self.create_subscription(ActionChunk, p["chunk_topic"], self._on_chunk, CHUNKS, callback_group=inputs)
        self.create_subscription(JointState, p["joint_states_topic"], self._on_joint_state, qos_profile_sensor_data,
                                 callback_group=inputs)
        self.command_pub = self.create_publisher(JointTrajectory, p["command_topic"], 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(p["diagnostics_period"], self._publish_diagnostics,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self.tick_errors: deque[float] = deque(maxlen=1000)
        self.control = PeriodicThread(
            "chunk-runner", self.period, self._on_tick, running=lambda: not self._stop.is_set() and self.context.ok(),
            on_error=lambda exc: self.log("error", "tick", f"setpoint tick failed: {exc!r}"),
            tick_errors=self.tick_errors, priority=p["control_thread_priority"],
            on_no_priority=lambda exc: self.get_logger().warn(
                f"setpoint thread runs without real-time priority ({exc})"))
        self.control.start()

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_joint_state(self, msg: JointState) -> None:
        pos = dict(zip(msg.name, msg.position))
        if all(n in pos for n in self.names):
            with self.lock:
                self.measured = np.array([pos[n] for n in self.names])

    def _on_chunk(self, msg: ActionChunk) -> None:
        now = self.now()
        if msg.mode != ActionChunk.MODE_JOINT_POSITION:
            self.log("warn", "mode", "end-effector chunks are not executed here (joint mode only)")
            return
        stamp = stamp_to_sec(msg.header.stamp)
        with self.lock:
            self.arrival_ages.append(now - stamp)
            problem = self.runner.add(list(msg.joint_names), action_chunk_array(msg), stamp,
                                      duration_to_sec(msg.step_period), now, self.measured)
        if problem:
            self.log("warn", "refused", problem)

    def _on_tick(self) -> None:
        now = self.now()
        with self.lock:
            setpoint, _ = self.runner.setpoint(now)
        if setpoint is None:
            return   # nothing fresh to execute: silence, and the safety node's watchdog holds the arm
        self.command_pub.publish(joint_trajectory(self.names, setpoint, sec_to_stamp(now), self.period, self.period))
        self.sent += 1

    def _publish_diagnostics(self) -> None:
        now = self.now()
        with self.lock:
            counters, problem = dict(self.runner.counters), self.runner.last_problem
            report = self.runner.stamps.report(now)
            ages = np.array(self.arrival_ages) * 1e3
            max_executed = self.runner.max_executed_age
        values = {"setpoints": self.sent, "chunks_accepted": counters.get("accepted", 0),
                  "refused_stale": counters.get("stale", 0), "refused_future": counters.get("future", 0),
                  "refused_other": counters.get("joints", 0) + counters.get("invalid", 0),
                  "expired": counters.get("expired", 0), "clock": report.kind,
                  "chunk_age_on_arrival_p50_ms": f"{np.median(ages):.1f}" if ages.size else "n/a",
                  "max_executed_observation_age_ms": f"{max_executed * 1e3:.1f}",
                  "max_chunk_age_ms": f"{self.p['max_chunk_age'] * 1e3:.1f}", "problem": problem}
        level = "error" if report.kind.startswith("clock") else ("warn" if problem else "ok")
        message = report.message if report.kind.startswith("clock") else (problem or "executing")
        self.diag_pub.publish(diagnostic_array(sec_to_stamp(now), "twinbrain: chunk_runner", self.get_name(), level,
                                               message, values))

    def destroy_node(self):
        self._stop.set()
        if self.control is not None and self.control.is_alive():
            self.control.join(timeout=1.0)
        return super().destroy_node()


def main(args=None):
    from .spin import run_node
    run_node(ChunkRunnerNode, args)


if __name__ == "__main__":
    main()
