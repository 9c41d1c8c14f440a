"""joint_trajectory_controller semantics without ROS: what the simulated arm executes.

A trajectory message is (start stamp, points with time_from_start). Stamp 0 means "start now";
points whose time is already past when it arrives are dropped; a new trajectory replaces the active
one from its start time on, interpolating from the current setpoint to its first future point.
After the last point the final position is held.
"""

from __future__ import annotations

import numpy as np


class TrajectoryFollower:
    def __init__(self, joint_names: list[str], initial: np.ndarray):
        self.joint_names = list(joint_names)
        self.index = {n: i for i, n in enumerate(self.joint_names)}
        self._times = np.array([0.0])
        self._points = np.asarray(initial, np.float64).reshape(1, -1).copy()

    def setpoint(self, now: float) -> np.ndarray:
        if now <= self._times[0]:
            return self._points[0].copy()
        return np.array([np.interp(now, self._times, self._points[:, j]) for j in range(self._points.shape[1])])

    def replace(self, names, stamp: float, times_from_start, positions, now: float) -> int:
        """Apply a trajectory; returns the number of points kept. Unknown/missing joints raise ValueError."""
        names = list(names)
        if sorted(names) != sorted(self.joint_names):
            raise ValueError(f"trajectory joints {names} do not match the arm's {self.joint_names}")
        pos = np.asarray(positions, np.float64).reshape(len(times_from_start), len(names))
        if not np.all(np.isfinite(pos)):
            raise ValueError("trajectory contains NaN/inf")
        order = [names.index(n) for n in self.joint_names]
        pos = pos[:, order]
        start = now if stamp == 0.0 else stamp
        abs_times = start + np.asarray(times_from_start, np.float64)
        future = abs_times > now
        if not future.any():
            return 0   # JTC drops trajectories entirely in the past
        current = self.setpoint(now)
        self._times = np.concatenate([[now], abs_times[future]])
        self._points = np.vstack([current[None], pos[future]])
        return int(future.sum())
