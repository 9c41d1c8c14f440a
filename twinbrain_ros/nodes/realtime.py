"""A control loop the way ros2_control runs one: its own thread, sleeping to absolute deadlines, with
SCHED_FIFO priority where the user may have it. Not an executor timer: its jitter then does not depend
on how busy the executor's callbacks are."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable


def renice(niceness: int, on_refused: Callable[[OSError], None]) -> None:
    """Set the calling thread's nice value (per thread on Linux; threads started later inherit it). Raising
    priority needs root or CAP_SYS_NICE: without it ``on_refused`` is told and the default stays."""
    if niceness:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, niceness)
        except OSError as exc:   # PermissionError included
            on_refused(exc)


class PeriodicThread(threading.Thread):
    """Calls ``tick()`` every ``period`` seconds until ``running()`` is false. Each wake-up's lateness is
    appended to ``tick_errors`` (s); an exception in a tick goes to ``on_error`` and the loop goes on;
    when it falls more than a period behind it skips ticks rather than bursting to catch up."""

    def __init__(self, name: str, period: float, tick: Callable[[], None], running: Callable[[], bool],
                 on_error: Callable[[Exception], None], tick_errors, priority: int = 0,
                 on_no_priority: Callable[[Exception], None] | None = None):
        super().__init__(name=name, daemon=True)
        self.period, self.tick, self.running, self.on_error = period, tick, running, on_error
        self.tick_errors, self.priority, self.on_no_priority = tick_errors, priority, on_no_priority

    def _raise_priority(self) -> None:
        if not self.priority:
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.priority))   # 0 = this thread on Linux
        except (PermissionError, AttributeError, OSError) as exc:
            if self.on_no_priority is not None:
                self.on_no_priority(exc)

    def run(self) -> None:
        self._raise_priority()
        deadline = time.monotonic() + self.period
        while self.running():
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            woke = time.monotonic()
            self.tick_errors.append(woke - deadline)
            try:
                self.tick()
            except Exception as exc:   # noqa: BLE001 - the loop must survive anything
                if not self.running():
                    break          # shutting down: whatever the tick used is gone
                self.on_error(exc)
            deadline += self.period
            if woke - deadline > self.period:
                deadline = woke + self.period
