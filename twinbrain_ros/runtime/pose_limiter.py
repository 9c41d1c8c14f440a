"""End-effector targets with the joint limiter's guarantees (pure numpy, no ROS).

A pose target (MoveIt Servo style) is never passed through: the output pose moves towards it at
control rate. Position: a workspace box plus Cartesian step, velocity and acceleration limits, run
by the same per-tick limiter as the joints on the x, y, z axes — with each axis at limit/√3, so the
Euclidean speed, acceleration and step stay within the configured values — including its braking at
the box, watchdog hold and e-stop. Orientation: rotated towards the target by at most
``max_angular_velocity`` · dt per tick (shortest arc) and frozen whenever the position holds. The
output starts from a measured end-effector pose, never from the first command.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .joint_limits import CommandRejected, JointLimit
from .safety import SafetyLimiter

AXES = ["x", "y", "z"]


@dataclass
class WorkspaceBox:
    minimum: np.ndarray
    maximum: np.ndarray

    def __post_init__(self):
        self.minimum, self.maximum = np.asarray(self.minimum, np.float64), np.asarray(self.maximum, np.float64)
        if self.minimum.shape != (3,) or self.maximum.shape != (3,) or np.any(self.minimum >= self.maximum):
            raise ValueError(f"workspace_min {self.minimum.tolist()} must be below "
                             f"workspace_max {self.maximum.tolist()}")

    def limit_pose(self, position, quaternion) -> tuple[np.ndarray, np.ndarray, bool]:
        """(position clamped into the box, unit quaternion x y z w, whether it was clamped)."""
        p = np.asarray(position, np.float64)
        q = np.asarray(quaternion, np.float64)
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
            raise CommandRejected("nan", "pose contains NaN/inf")
        norm = np.linalg.norm(q)
        if abs(norm - 1.0) > 1e-2:
            raise CommandRejected("malformed", f"orientation quaternion has norm {norm:.3f}, expected 1")
        clamped = np.clip(p, self.minimum, self.maximum)
        return clamped, q / norm, bool(np.any(clamped != p))


def rotate_towards(current: np.ndarray, target: np.ndarray, max_angle: float) -> np.ndarray:
    """Unit quaternion (x y z w) at most ``max_angle`` rad from ``current`` on the shortest arc to ``target``."""
    dot = float(np.dot(current, target))
    if dot < 0:
        target, dot = -target, -dot      # q and -q are the same rotation: take the short way
    angle = 2.0 * np.arccos(min(1.0, dot))
    if angle <= max_angle:
        return target.copy()
    theta = np.arccos(min(1.0, dot))     # half-angle: slerp works on the 4-sphere
    f = max_angle / angle
    out = (np.sin((1 - f) * theta) * current + np.sin(f * theta) * target) / np.sin(theta)
    return out / np.linalg.norm(out)


class PoseLimiter:
    def __init__(self, box: WorkspaceBox, period: float, max_linear_velocity: float, max_linear_acceleration: float,
                 max_angular_velocity: float, timeout: float, max_linear_step: float | None = None,
                 velocity_scale: float = 1.0):
        if min(max_linear_velocity, max_linear_acceleration, max_angular_velocity) <= 0:
            raise ValueError("end-effector velocity, acceleration and angular velocity limits must be > 0")
        r3 = np.sqrt(3.0)
        self.box = box
        axes = [JointLimit(a, lo, hi, max_linear_velocity / r3, max_linear_acceleration / r3)
                for a, lo, hi in zip(AXES, box.minimum, box.maximum)]
        self.position = SafetyLimiter(axes, period, 0.0, max_linear_step / r3 if max_linear_step else None, timeout,
                                      velocity_scale)
        self.max_angle = max_angular_velocity * velocity_scale * period
        self.orientation: np.ndarray | None = None
        self.target_orientation: np.ndarray | None = None

    @property
    def counters(self):
        return self.position.counters

    @property
    def initialized(self) -> bool:
        return self.position.initialized

    def start(self, position, quaternion, now: float) -> None:
        """From a measured end-effector pose (clamped into the box), at rest, no target."""
        p, q, _ = self.box.limit_pose(position, quaternion)
        self.position.reset(p, now)
        self.orientation, self.target_orientation = q, None

    def set_target(self, position, quaternion, now: float) -> bool:
        """Accept a pose target; returns True if the box clamped it. Raises CommandRejected (counted)."""
        try:
            p, q, clamped = self.box.limit_pose(position, quaternion)
        except CommandRejected as exc:
            self.position.count_rejection(exc.kind)
            raise
        self.position.set_target(AXES, p, now)
        if clamped:
            self.position.counters["workspace"] += 1
        self.target_orientation = q
        return clamped

    def step(self, now: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(position, linear velocity, orientation) of this tick's output; None before ``start``."""
        result = self.position.step(now)
        if result is None:
            return None
        lim = self.position
        if not (lim.holding or lim.watchdog_active or lim.target is None or self.target_orientation is None):
            self.orientation = rotate_towards(self.orientation, self.target_orientation, self.max_angle)
        return result.positions, result.velocities, self.orientation.copy()
