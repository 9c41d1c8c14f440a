"""The observer of the two-host run, one per host (``python -m twinbrain_ros.bench.two_hosts_probe ROLE FILE``
inside that host's namespace): it subscribes to what that host sees and appends one JSON line per message
to FILE (flushed every 0.2 s), times by this machine's clock (both namespaces share it). Fields are short:
the analysis (bench/two_hosts.py) reads tens of thousands of lines.

robot: the safety node's outputs to the controller (``out``), the chunk runner's setpoints (``sp``), the
       chunks as they arrive from the link (``ch``), SafetyStatus counters (``st``), the sim's success
       (``ok``) and the chunk runner's diagnostics (``dg``).
gpu:   the chunks as the policy publishes them (``ch``, with inference latency), camera frames as they
       arrive from the link (``cam``) and the policy's diagnostics (``dg``).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from ..msg import ActionChunk, SafetyStatus
from ..nodes.qos import LATCHED
from ..nodes.ros_convert import duration_to_sec, stamp_to_sec


class Probe:
    def __init__(self, role: str, path: str):
        self.node = rclpy.create_node(f"two_hosts_probe_{role}")
        self.file = open(path, "a")
        self.buffer: list[str] = []
        self.lock = threading.Lock()
        sub = self.node.create_subscription
        sub(ActionChunk, "/policy_node/chunk", self._chunk, 100)
        sub(DiagnosticArray, "/diagnostics", self._diag, 100)
        if role == "robot":
            sub(JointTrajectory, "/arm_controller/joint_trajectory", self._out, 1000)
            sub(JointTrajectory, "/twinbrain/joint_command", self._setpoint, 1000)
            sub(SafetyStatus, "/safety_node/status", self._status, LATCHED)
            sub(Bool, "/sim_arm/success", lambda m: self._put("ok", v=bool(m.data)), LATCHED)
        else:
            sub(CompressedImage, "/camera/front/image_raw/compressed",
                lambda m: self._put("cam", s=stamp_to_sec(m.header.stamp), n=len(m.data)), qos_profile_sensor_data)
        self.role = role

    def _put(self, kind: str, **fields) -> None:
        line = json.dumps({"k": kind, "t": round(time.time(), 6), **fields})
        with self.lock:
            self.buffer.append(line)

    def flush(self) -> None:
        with self.lock:
            lines, self.buffer = self.buffer, []
        if lines:
            self.file.write("\n".join(lines) + "\n")
            self.file.flush()

    def _chunk(self, m: ActionChunk) -> None:
        self._put("ch", s=stamp_to_sec(m.header.stamp), lat=duration_to_sec(m.inference_latency))

    def _out(self, m: JointTrajectory) -> None:
        if m.points:
            # full precision: the acceleration check differences twice over 10 ms (rounding to 1e-9 rad
            # alone reads as 2e-5 rad/s² over the limit of a joint braking at it)
            self._put("out", q=list(m.points[0].positions))

    def _setpoint(self, m: JointTrajectory) -> None:
        if m.points:
            self._put("sp", s=stamp_to_sec(m.header.stamp), q=[round(x, 6) for x in m.points[0].positions])

    def _status(self, m: SafetyStatus) -> None:
        self._put("st", watchdog=bool(m.watchdog_active), fault=bool(m.fault_active), estop=bool(m.estop_active),
                  c=dict(zip(m.counter_names, (int(v) for v in m.counter_values))),
                  wd=int(m.watchdog_trips), lim=int(m.limited_commands), rej=int(m.rejected_commands),
                  faults=int(m.fault_latches))

    def _diag(self, m: DiagnosticArray) -> None:
        for st in m.status:
            if st.name in ("twinbrain: chunk_runner", "twinbrain: policy"):
                self._put("dg", name=st.name, msg=st.message, v={kv.key: kv.value for kv in st.values})


def main(argv=None) -> None:
    role, path = (argv or sys.argv[1:])[:2]
    rclpy.init()
    probe = Probe(role, path)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    executor = SingleThreadedExecutor()
    executor.add_node(probe.node)
    last = time.monotonic()
    try:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
            if time.monotonic() - last > 0.2:
                probe.flush()
                last = time.monotonic()
    finally:
        probe.flush()
        probe.file.close()
        executor.shutdown()
        probe.node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
