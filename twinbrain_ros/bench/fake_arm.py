"""A position-controlled arm behind a joint_trajectory_controller, for the safety tests and benchmark:
it follows the controller topic's trajectories (JTC semantics, ``sim/trajectory.py``) perfectly, with
a first-order lag, with a joint held by an obstacle, or with a one-shot encoder glitch in what it reports."""

from __future__ import annotations

import threading

import numpy as np

from ..sim.trajectory import TrajectoryFollower


class FakeArm:
    def __init__(self, joint_names, initial=None, lag: float = 0.0):
        self.names = list(joint_names)
        self.q = np.zeros(len(self.names)) if initial is None else np.asarray(initial, np.float64).copy()
        self.follower = TrajectoryFollower(self.names, self.q)
        self.lag = lag                                  # s; 0 = the arm is where the controller says
        self.blocked: dict[int, float] = {}             # joint index -> where an obstacle holds it
        self._glitch: tuple[int, float] | None = None
        self._t: float | None = None
        self.lock = threading.Lock()

    def command(self, names, stamp: float, times_from_start, positions, now: float) -> None:
        with self.lock:
            self.follower.replace(names, stamp, times_from_start, positions, now)

    def setpoint(self, now: float) -> np.ndarray:
        with self.lock:
            return self.follower.setpoint(now)

    def glitch(self, joint: int, offset: float) -> None:
        """The next reported sample has ``offset`` added on ``joint`` (a bad encoder read)."""
        self._glitch = (joint, offset)

    def measure(self, now: float) -> np.ndarray:
        target = self.setpoint(now)
        dt = 0.0 if self._t is None else max(0.0, now - self._t)
        self._t = now
        self.q = target if not self.lag else self.q + (target - self.q) * (1.0 - np.exp(-dt / self.lag))
        for j, stuck in self.blocked.items():
            self.q[j] = stuck
        out = self.q.copy()
        if self._glitch is not None:
            j, offset = self._glitch
            out[j] += offset
            self._glitch = None
        return out
