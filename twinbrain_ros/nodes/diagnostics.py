"""/diagnostics helpers (diagnostic_msgs/DiagnosticArray), shared by every node."""

from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR,
          "stale": DiagnosticStatus.STALE}


def diagnostic_array(stamp, name: str, hardware_id: str, level: str, message: str, values: dict) -> DiagnosticArray:
    status = DiagnosticStatus(level=LEVELS[level], name=name, message=message, hardware_id=hardware_id)
    status.values = [KeyValue(key=str(k), value=str(v)) for k, v in values.items()]
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = [status]
    return msg


class ThrottledLog:
    """Rate-limited logging that is safe from any thread. (rclpy's own ``throttle_duration_sec`` keeps
    per-call-site state that raised "Requested logging filters cannot be changed between calls" from
    callbacks running on several executor threads, which killed the executor.)"""

    def __init__(self, logger, period: float = 2.0):
        self.logger, self.period = logger, period
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, level: str, key: str, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e9) < self.period:
                return
            self._last[key] = now
        getattr(self.logger, level)(message)
