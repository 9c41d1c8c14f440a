"""Executing, on the robot, action chunks planned on another host (pure numpy, no ROS).

The policy runs where the GPU is; its chunks cross a link that can delay them, lose them (then a reliable
transport delivers them late) or stop for seconds. The robot side holds one invariant: **a setpoint sent
at time t comes from a chunk whose observation was taken at most ``max_age`` before t**, by the robot's
own clock — the cameras' stamps are the robot's, so no clock of another host is trusted. Hence:

* a chunk already older than ``max_age`` on arrival is refused (counted ``stale``; the reason says
  whether it was one late chunk or every chunk — clock skew: runtime/stamp_age.py), and so is one stamped
  in the future beyond ``max_future`` (``future``: only clock skew does that);
* when the newest chunk's observation gets older than ``max_age`` (nothing fresher arrived: a partition,
  a slow link, a dead policy) streaming stops (``expired``) and the safety node's command watchdog brings
  the arm to rest within its limits;
* when streaming starts again, the new chunk is blended in from the arm's measured position (a hold at
  the latest joint state), so motion resumes without a jump.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .chunk_executor import ChunkExecutor
from .stamp_age import StampAgeMonitor


class RemoteChunkExecutor:
    def __init__(self, joint_names: list[str], max_age: float, max_future: float, blend: str = "crossfade",
                 blend_steps: int = 4, interpolation: str = "linear"):
        self.joint_names = list(joint_names)
        self.max_age, self.blend, self.blend_steps = max_age, blend, blend_steps
        self.interpolation = interpolation
        self.stamps = StampAgeMonitor(max_age, max_future, "action chunk")
        self.executor: ChunkExecutor | None = None   # built on the first chunk, with its step period
        self.counters: Counter = Counter()
        self.last_problem = "no action chunk yet"
        self.max_executed_age = 0.0   # oldest observation any sent setpoint came from (s)

    def add(self, names, actions, stamp: float, step_period: float, now: float,
            measured: np.ndarray | None = None) -> str | None:
        """Take a chunk (H x D, columns named ``names``) planned from an observation stamped ``stamp``;
        ``measured``: the latest joint positions (configured order), where a resumed stream starts from.
        Returns why it was refused, or None."""
        problem = self.stamps.check(stamp, now)
        if problem is not None:
            return self._refuse("future" if stamp > now else "stale", problem)
        actions = np.asarray(actions, np.float64)
        index = {n: i for i, n in enumerate(names)}
        if sorted(index) != sorted(self.joint_names) or actions.ndim != 2 or actions.shape[1] != len(names):
            return self._refuse("joints", f"chunk for joints {list(names)} {actions.shape}; "
                                          f"configured: {self.joint_names}")
        actions = actions[:, [index[n] for n in self.joint_names]]
        if self.executor is None or abs(self.executor.step_period - step_period) > 1e-9:
            self.executor = ChunkExecutor(len(self.joint_names), step_period, self.blend, self.blend_steps,
                                          interpolation=self.interpolation)
        if not self.executor.active and measured is not None:
            self.executor.reset(hold=measured, now=now)   # blend in from where the arm is: no jump on resume
        try:
            self.executor.add_chunk(actions, stamp, now)
        except ValueError as exc:   # NaN/inf, or not newer than the executing chunk (reordered by the link)
            return self._refuse("invalid", str(exc))
        self.counters["accepted"] += 1
        self.last_problem = ""
        return None

    def setpoint(self, now: float) -> tuple[np.ndarray | None, str]:
        """This tick's setpoint, or (None, why nothing is sent)."""
        ex = self.executor
        if ex is None or not ex.active or ex.chunk_stamp is None:
            return None, self.last_problem or "waiting for an action chunk"
        age = now - ex.chunk_stamp
        if age > self.max_age:
            ex.reset()
            self.counters["expired"] += 1
            self.last_problem = (f"the executing chunk's observation is {age:.3f} s old (max_chunk_age "
                                 f"{self.max_age:.3f} s) and nothing fresher arrived: streaming stopped, the "
                                 "safety node's watchdog holds the arm")
            return None, self.last_problem
        self.max_executed_age = max(self.max_executed_age, age)
        return ex.setpoint(now), ""

    def _refuse(self, kind: str, reason: str) -> str:
        self.counters[kind] += 1
        self.last_problem = f"chunk refused ({kind}): {reason}"
        return self.last_problem
