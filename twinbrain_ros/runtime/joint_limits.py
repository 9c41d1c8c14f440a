"""A robot's joint limits as arrays, and the name checks every command and joint state goes through
(pure numpy, no ROS). Shared by the per-tick limiter, the whole-chunk admission and feedback checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class JointLimit:
    name: str
    lower: float
    upper: float
    max_velocity: float
    max_acceleration: float
    max_jerk: float | None = None

    def __post_init__(self):
        if not (np.isfinite(self.lower) and np.isfinite(self.upper) and self.lower < self.upper):
            raise ValueError(f"joint {self.name!r}: need finite lower < upper, got {self.lower}, {self.upper}")
        if self.max_velocity <= 0 or self.max_acceleration <= 0 or (self.max_jerk is not None and self.max_jerk <= 0):
            raise ValueError(f"joint {self.name!r}: velocity/acceleration/jerk limits must be > 0")


class CommandRejected(ValueError):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class JointSpace:
    """Limits in configured joint order: ``lower``/``upper`` with the margin applied, ``vmax``/``amax``/
    ``jmax`` scaled by ``velocity_scale`` (a first trial on a real arm runs at a fraction of its limits)."""

    def __init__(self, limits: list[JointLimit], position_margin: float | list[float] = 0.0,
                 velocity_scale: float = 1.0):
        self.names = [lim.name for lim in limits]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate joint names in limits: {self.names}")
        if not 0.0 < velocity_scale <= 1.0:
            raise ValueError(f"velocity_scale must be in (0, 1], got {velocity_scale}")
        self.index = {n: i for i, n in enumerate(self.names)}
        arr = lambda attr: np.array([getattr(lim, attr) for lim in limits], np.float64)  # noqa: E731
        margin = np.asarray(position_margin, np.float64)
        if margin.ndim > 1 or (margin.ndim == 1 and len(margin) != len(limits)) or np.any(margin < 0):
            raise ValueError(f"position_margin must be >= 0, one value or one per joint ({len(limits)}), "
                             f"got {position_margin}")
        self.lower, self.upper = arr("lower") + margin, arr("upper") - margin
        if np.any(self.lower >= self.upper):
            raise ValueError("position_margin leaves no room inside the joint limits")
        self.velocity_scale = velocity_scale
        self.vmax, self.amax = arr("max_velocity") * velocity_scale, arr("max_acceleration") * velocity_scale
        self.jmax = np.array([lim.max_jerk * velocity_scale if lim.max_jerk else np.inf for lim in limits], np.float64)

    def __len__(self) -> int:
        return len(self.names)

    def order(self, names, values, what: str = "command", ignore: frozenset[str] = frozenset()) -> np.ndarray:
        """Values in configured order; rejects unknown, missing, duplicate names and NaN/inf. Names in
        ``ignore`` are dropped first (a joint_state_broadcaster also publishes joints nobody controls)."""
        names = list(names)
        values = np.asarray(values, np.float64).reshape(-1)
        if len(names) != values.shape[0]:
            raise CommandRejected("malformed", f"{what}: {len(names)} joint names but {values.shape[0]} values")
        if ignore:
            keep = [i for i, n in enumerate(names) if n not in ignore]
            names, values = [names[i] for i in keep], values[keep]
        unknown = sorted(set(names) - set(self.index))
        if unknown:
            raise CommandRejected("unknown_joint", f"{what}: unknown joint names {unknown}")
        missing = [n for n in self.names if n not in names]
        if missing:
            raise CommandRejected("missing_joint", f"{what} lacks joints {missing}")
        if len(set(names)) != len(names):
            raise CommandRejected("malformed", f"duplicate joint names in {what}")
        if not np.all(np.isfinite(values)):
            raise CommandRejected("nan", f"{what} contains NaN/inf")
        out = np.empty(len(self.names))
        out[[self.index[n] for n in names]] = values
        return out
