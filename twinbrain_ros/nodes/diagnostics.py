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


# rclpy keys its logging state by call site and raises "Logger severity cannot be changed between calls"
# when one site logs at another level: each level needs a call site of its own (one line each).
_EMIT = {
    "debug": lambda logger, message: logger.debug(message),
    "info": lambda logger, message: logger.info(message),
    "warn": lambda logger, message: logger.warning(message),
    "warning": lambda logger, message: logger.warning(message),
    "error": lambda logger, message: logger.error(message),
    "fatal": lambda logger, message: logger.fatal(message),
}


class ThrottledLog:
    """Rate-limited logging that is safe from any thread and at any mix of levels. (rclpy's own
    ``throttle_duration_sec`` keeps per-call-site state that raised "Requested logging filters cannot be
    changed between calls" from callbacks running on several executor threads, which killed the executor;
    one call site for every level raised the same for a level change, which killed policy_node's
    inference worker when an inference failed after a warning.)"""

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
        _EMIT[level](self.logger, message)
