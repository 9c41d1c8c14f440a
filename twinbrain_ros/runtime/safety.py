"""Safety limiter: the last word before anything reaches the controller (pure numpy, no ROS).

Per command, in this order: reject NaN/inf, unknown or missing joint names (reorder by name);
clamp to position limits minus a margin; clamp the step from the last output; then limit velocity,
acceleration (and optional jerk) against the previous outputs at the fixed control period, with a
braking bound so each joint can always stop inside its position range. Watchdog: no valid command
for ``timeout`` seconds -> decelerate within limits to a hold. E-stop: latched until ``release()``;
while latched the arm decelerates to a hold and every command is refused. The jerk limit (optional)
bounds how fast acceleration builds up; the velocity and position caps take precedence over it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .chunk_executor import slow_down

# Order matters: bit i of twinbrain_ros/SafetyStatus.limit_flags is LIMIT_KINDS[i].
LIMIT_KINDS = ("position", "step", "velocity", "acceleration", "jerk", "braking")


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


@dataclass
class LimitResult:
    positions: np.ndarray                      # what goes to the controller (configured joint order)
    acted: dict[str, np.ndarray] = field(default_factory=dict)   # limit kind -> per-joint bool


class CommandRejected(ValueError):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class SafetyLimiter:
    def __init__(self, limits: list[JointLimit], period: float, position_margin: float | list[float] = 0.0,
                 max_step: float | None = None, timeout: float = 0.5):
        """``position_margin``: one value for all joints or one per joint, in each joint's units (a margin
        in rad on the arm would eat a quarter of a 4 cm gripper's stroke)."""
        if period <= 0:
            raise ValueError("control period must be > 0")
        self.names = [lim.name for lim in limits]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate joint names in limits: {self.names}")
        self.index = {n: i for i, n in enumerate(self.names)}
        arr = lambda attr: np.array([getattr(lim, attr) for lim in limits], np.float64)  # noqa: E731
        margin = np.asarray(position_margin, np.float64)
        if margin.ndim > 1 or (margin.ndim == 1 and len(margin) != len(limits)) or np.any(margin < 0):
            raise ValueError(f"position_margin must be >= 0, one value or one per joint ({len(limits)}), "
                             f"got {position_margin}")
        self.lower, self.upper = arr("lower") + margin, arr("upper") - margin
        if np.any(self.lower >= self.upper):
            raise ValueError("position_margin leaves no room inside the joint limits")
        self.vmax, self.amax = arr("max_velocity"), arr("max_acceleration")
        self.jmax = np.array([lim.max_jerk if lim.max_jerk else np.inf for lim in limits], np.float64)
        self.period, self.max_step, self.timeout = period, max_step, timeout
        self.counters: Counter[str] = Counter()
        self.estopped = False
        self.q = self.v = self.a = None
        self.measured: np.ndarray | None = None   # the latest joint state fed to observe()
        self.target: np.ndarray | None = None
        self.target_velocity: np.ndarray | None = None
        self.last_valid_time: float | None = None
        self.watchdog_active = False

    # -- state ----------------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return self.q is not None

    def reset(self, positions: np.ndarray, now: float) -> None:
        """Start from the measured joint positions, at rest."""
        self.q = np.clip(np.asarray(positions, np.float64), self.lower, self.upper)
        self.v = np.zeros_like(self.q)
        self.a = np.zeros_like(self.q)
        self.last_valid_time = now
        self.target = None

    def observe(self, measured: np.ndarray, now: float, max_tracking_error: float | None) -> bool:
        """Feed a measured joint state. Initialises the limiter, and re-seeds it (at rest, target dropped)
        when the arm is further than ``max_tracking_error`` from the last output: commanding on from a
        state the arm is not in would make the controller jump. Returns True when it re-seeded."""
        self.measured = np.array(measured, np.float64)
        if not self.initialized:
            self.reset(measured, now)
            return False
        if max_tracking_error and np.max(np.abs(np.asarray(measured) - self.q)) > max_tracking_error:
            self.reset(measured, now)
            self.counters["tracking_reset"] += 1
            return True
        return False

    def latch_estop(self) -> None:
        if not self.estopped:
            self.counters["estop"] += 1
        self.estopped = True

    def release_estop(self, now: float | None = None) -> None:
        """Explicit release; motion resumes only with a new command (the old target is forgotten). With
        ``now`` and a measured state, the limiter restarts from where the arm is, at rest: while stopped it
        may have been moved (re-homed, hand-guided, a simulator reset), and the first output after the
        release must not pull it back to where it stopped."""
        self.estopped = False
        self.target = None
        if now is not None and self.measured is not None:
            self.reset(self.measured, now)

    # -- checks -----------------------------------------------------------------------------------
    def order(self, names, values) -> np.ndarray:
        """Values in configured order; rejects unknown, missing, duplicate names and NaN/inf."""
        names = list(names)
        values = np.asarray(values, np.float64).reshape(-1)
        if len(names) != values.shape[0]:
            raise CommandRejected("malformed", f"{len(names)} joint names but {values.shape[0]} values")
        unknown = sorted(set(names) - set(self.index))
        if unknown:
            raise CommandRejected("unknown_joint", f"unknown joint names {unknown}")
        missing = [n for n in self.names if n not in names]
        if missing:
            raise CommandRejected("missing_joint", f"command lacks joints {missing}")
        if len(set(names)) != len(names):
            raise CommandRejected("malformed", "duplicate joint names in command")
        if not np.all(np.isfinite(values)):
            raise CommandRejected("nan", "command contains NaN/inf")
        out = np.empty(len(self.names))
        out[[self.index[n] for n in names]] = values
        return out

    def clamp_chunk(self, names, chunk: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Clamp every row of a chunk (H, D; columns in ``names`` order) into the position range, as the
        per-command limiter would clamp each setpoint. Returns (clamped chunk, names of the joints clamped).
        NaN/inf pass through unchanged for ``validate_chunk`` to refuse."""
        return self._clamp_columns(names, *self._chunk_columns(names, chunk))

    def _clamp_columns(self, names, chunk: np.ndarray, columns: list[int]) -> tuple[np.ndarray, list[str]]:
        clamped = np.clip(chunk, self.lower[columns], self.upper[columns])
        moved = np.any(clamped != chunk, axis=0) & np.all(np.isfinite(chunk), axis=0)
        return clamped, [n for n, m in zip(names, moved) if m]

    def _chunk_columns(self, names, chunk) -> tuple[np.ndarray, list[int]]:
        """The chunk as float (H, D) and each column's joint index; the name checks of a single command."""
        chunk = np.asarray(chunk, np.float64)
        if chunk.ndim != 2:
            raise CommandRejected("chunk", f"chunk must be (H, D), got {chunk.shape}")
        if len(chunk):
            self.order(names, np.nan_to_num(chunk[0]))
        return chunk, [self.index[n] for n in names]

    def validate_chunk(self, names, chunk: np.ndarray, step_period: float, start: np.ndarray | None = None) -> None:
        """Refuse a whole chunk (H, D) that leaves the position range or needs more than the velocity limit."""
        chunk = np.asarray(chunk, np.float64)
        if chunk.ndim != 2:
            raise CommandRejected("chunk", f"chunk must be (H, D), got {chunk.shape}")
        rows = np.stack([self.order(names, row) for row in chunk])
        outside = (rows < self.lower - 1e-9) | (rows > self.upper + 1e-9)
        if outside.any():
            j = int(np.argwhere(outside)[0][1])
            raise CommandRejected("chunk", f"chunk leaves the position range of {self.names[j]!r}")
        seq = rows if start is None else np.vstack([np.asarray(start, np.float64)[None], rows])
        if len(seq) > 1:
            speed = np.abs(np.diff(seq, axis=0)) / step_period
            if np.any(speed > self.vmax * (1 + 1e-6)):
                j = int(np.argwhere(speed > self.vmax * (1 + 1e-6))[0][1])
                raise CommandRejected("chunk", f"chunk needs {speed[:, j].max():.3f} rad/s on {self.names[j]!r} "
                                               f"(limit {self.vmax[j]:.3f})")

    def admit_chunk(self, names, chunk: np.ndarray, step_period: float, out_of_range: str = "clamp",
                    overspeed: str = "slow_down") -> tuple[np.ndarray, list[str], float]:
        """What a chunk executor may run: ``out_of_range="clamp"`` holds steps outside a joint's range at
        the limit (before slowing down: clamping only shortens steps), ``overspeed="slow_down"`` time-scales
        a chunk that needs more than the velocity limit; then the whole chunk is validated (CommandRejected,
        also for the modes "reject"). Returns (chunk, joints clamped, slow-down factor)."""
        chunk, columns = self._chunk_columns(names, chunk)
        clamped = []
        if out_of_range == "clamp":
            chunk, clamped = self._clamp_columns(names, chunk, columns)   # names already checked
        factor = 1.0
        if overspeed == "slow_down" and np.all(np.isfinite(chunk)):   # NaN/inf: refused just below
            chunk, factor = slow_down(chunk, step_period, self.vmax[columns])
        self.validate_chunk(names, chunk, step_period)
        return chunk, clamped, factor

    # -- limiting ---------------------------------------------------------------------------------
    def _brake(self, distance: np.ndarray, latency: np.ndarray | float | None = None) -> np.ndarray:
        """Largest speed b with b·L + b²/(2·a_max) <= distance (L = dt by default): after this tick a stop
        at maximum deceleration still fits. Recursively feasible: if it held last tick, v - a_max·dt holds now."""
        lat = self.period if latency is None else latency
        return self.amax * (np.sqrt(lat * lat + 2.0 * np.maximum(distance, 0.0) / self.amax) - lat)

    def _step_towards(self, target: np.ndarray, target_velocity: np.ndarray | None = None) -> LimitResult:
        dt = self.period
        acted = {k: np.zeros(len(self.names), bool) for k in LIMIT_KINDS}
        clamped = np.clip(target, self.lower, self.upper)
        acted["position"] = clamped != target
        if self.max_step is not None:
            stepped = np.clip(clamped, self.q - self.max_step, self.q + self.max_step)
            acted["step"] = stepped != clamped
            clamped = stepped
        v_t = np.zeros_like(self.q) if target_velocity is None else np.clip(target_velocity, -self.vmax, self.vmax)
        v_t = np.where(acted["position"] | acted["step"], 0.0, v_t)
        # Move with the target and close what is left of the gap no faster than a stop at a_max allows:
        # a smooth stream is tracked exactly, a step command is reached without overshoot.
        gap = clamped - self.q - v_t * dt
        # Under a jerk limit deceleration needs a_max/j_max to build up: approach that much more slowly.
        latency = dt + np.where(np.isfinite(self.jmax), self.amax / self.jmax, 0.0)
        v_des = v_t + np.sign(gap) * np.minimum(np.abs(gap) / dt, self._brake(np.abs(gap), latency))
        v = np.clip(v_des, -self.vmax, self.vmax)
        acted["velocity"] = v != v_des
        a_des = (v - self.v) / dt
        if np.isfinite(self.jmax).any():
            a_j = np.clip(a_des, self.a - self.jmax * dt, self.a + self.jmax * dt)
            acted["jerk"] = a_j != a_des
            a_des = a_j
        a = np.clip(a_des, -self.amax, self.amax)
        acted["acceleration"] = a != a_des
        v = self.v + a * dt
        braked = np.clip(v, -self._brake(self.q - self.lower), self._brake(self.upper - self.q))
        acted["braking"] = braked != v
        v = np.clip(braked, -self.vmax, self.vmax)
        v = np.where(np.abs(v) < 1e-12, 0.0, v)   # no endless creep of rounding residue at a hold
        q = np.clip(self.q + v * dt, self.lower, self.upper)
        v_out = (q - self.q) / dt
        self.a, self.v, self.q = (v_out - self.v) / dt, v_out, q
        return LimitResult(q.copy(), acted)

    def count_rejection(self, kind: str) -> None:
        self.counters[kind] += 1
        self.counters["rejected"] += 1

    def set_target(self, names, positions, now: float) -> None:
        """Accept a position command as the target. Raises CommandRejected (counted) if it must not pass."""
        try:
            if not self.initialized:
                raise CommandRejected("not_ready", "no joint state received yet")
            target = self.order(names, positions)
            if self.estopped:
                raise CommandRejected("estop_active", "e-stop latched; call release first")
        except CommandRejected as exc:
            self.count_rejection(exc.kind)
            raise
        fresh = self.target is not None and 0 < now - self.last_valid_time <= 1.5 * self.period
        # The command stream's own velocity, so a smoothly streamed trajectory is tracked without lag.
        self.target_velocity = (target - self.target) / (now - self.last_valid_time) if fresh else np.zeros_like(target)
        self.target = target
        self.last_valid_time = now
        self.watchdog_active = False

    def step(self, now: float) -> LimitResult | None:
        """One control tick: move towards the target within every limit, or decelerate to a hold when
        the e-stop is latched or no valid command came for ``timeout``. None before initialisation."""
        if not self.initialized:
            return None
        if self.estopped:
            return self.hold()
        if self.target is None or now - self.last_valid_time > self.timeout:
            if self.target is not None and not self.watchdog_active:
                self.counters["watchdog"] += 1
                self.watchdog_active = True
            return self.hold()
        moving = now - self.last_valid_time <= 0.5 * self.period   # a stale target is a standing one
        result = self._step_towards(self.target, self.target_velocity if moving else None)
        acted = [kind for kind, flags in result.acted.items() if flags.any()]
        for kind in acted:
            self.counters[kind] += 1
        if acted:
            self.counters["limited"] += 1
        return result

    def limit(self, names, positions, now: float) -> LimitResult:
        """set_target + step: limit one command at one tick."""
        self.set_target(names, positions, now)
        return self.step(now)

    def hold(self) -> LimitResult:
        """Decelerate within limits towards standstill (watchdog and e-stop)."""
        dt = self.period
        slower = self.v - np.clip(self.v, -self.amax * dt, self.amax * dt)
        return self._step_towards(self.q + slower * dt)


@dataclass
class WorkspaceBox:
    """End-effector position box for pose commands (MoveIt Servo style targets)."""

    minimum: np.ndarray
    maximum: np.ndarray

    def limit_pose(self, position, quaternion) -> tuple[np.ndarray, np.ndarray, bool]:
        p = np.asarray(position, np.float64)
        q = np.asarray(quaternion, np.float64)
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
            raise CommandRejected("nan", "pose contains NaN/inf")
        norm = np.linalg.norm(q)
        if abs(norm - 1.0) > 1e-2:
            raise CommandRejected("malformed", f"orientation quaternion has norm {norm:.3f}, expected 1")
        clamped = np.clip(p, self.minimum, self.maximum)
        return clamped, q / norm, bool(np.any(clamped != p))
