"""Per-tick safety limiter: the last word before anything reaches the controller (pure numpy, no ROS).

Per command: reject NaN/inf, unknown or missing joint names (reorder by name). Per tick, towards the
latest accepted target: clamp to the position limits minus a margin, clamp the step from the last
output, then limit velocity, acceleration (and optional jerk) against the previous outputs at the
fixed control period, with a braking bound so each joint can always stop inside its position range.

The invariant: every output respects position, velocity and acceleration limits relative to the
previous output. Nothing re-seeds the output from a measurement except ``start`` / ``release``, which
the node calls only with a validated measurement of an arm at rest (``runtime/feedback.py``) while the
output itself is at rest. Holds (decelerate within limits, then stay): the watchdog (no valid command
for ``timeout``), a latched e-stop, a latched fault (bad feedback, tracking error). E-stop and faults
stay latched until ``release``; a release with nothing latched changes nothing (counted).

Every tick also yields ``stopping_horizon()``: the output coasting one period, then its own stop at
maximum deceleration, sent to the controller with it, so a late next message or a dead safety node
still ends at rest in limits.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from .joint_limits import CommandRejected, JointLimit, JointSpace

__all__ = ["LIMIT_KINDS", "CommandRejected", "JointLimit", "LimitResult", "SafetyLimiter"]

# Order matters: bit i of twinbrain_ros/SafetyStatus.limit_flags is LIMIT_KINDS[i].
LIMIT_KINDS = ("position", "step", "velocity", "acceleration", "jerk", "braking")


@dataclass
class LimitResult:
    positions: np.ndarray                      # what goes to the controller (configured joint order)
    velocities: np.ndarray                     # the output's velocity over the last tick
    acted: dict[str, np.ndarray] = field(default_factory=dict)   # limit kind -> per-joint bool


class SafetyLimiter:
    def __init__(self, limits: list[JointLimit] | JointSpace, period: float, position_margin: float | list[float] = 0.0,
                 max_step: float | None = None, timeout: float = 0.5, velocity_scale: float = 1.0,
                 max_tracking_error: float | None = None, resume_tolerance: float = 0.0):
        """``position_margin``: one value for all joints or one per joint, in each joint's units (a margin
        in rad on the arm would eat a quarter of a 4 cm gripper's stroke). ``max_tracking_error``: a
        measured joint further than this from the output latches a fault (None: not checked).
        ``resume_tolerance``: a release whose rest measurement is this close to the held output (every
        joint) resumes from the held output instead of restarting from the measurement — the arm is where
        the controller holds it, up to feedback noise and a sample taken a tick before the stop; re-seeding
        from that sample would step the setpoint back and then accelerate, over the limit. The same holds
        for an arm standing anywhere between the held output and the end of the stopping horizon sent
        just before the hold began: a controller whose next messages came late follows that horizon and
        stops up to one period of motion beyond the hold, until the late messages bring it back."""
        if period <= 0:
            raise ValueError("control period must be > 0")
        self.space = s = limits if isinstance(limits, JointSpace) else JointSpace(limits, position_margin,
                                                                                  velocity_scale)
        self.names, self.index = s.names, s.index
        self.lower, self.upper, self.vmax, self.amax, self.jmax = s.lower, s.upper, s.vmax, s.amax, s.jmax
        self.period, self.max_step, self.timeout = period, max_step, timeout
        self.max_tracking_error = max_tracking_error or None
        self.resume_tolerance = resume_tolerance
        self.counters: Counter[str] = Counter()
        self.estopped = False
        self.faults: dict[str, str] = {}          # latched fault kind -> reason
        self.q = self.v = self.a = None
        self.measured: np.ndarray | None = None   # the latest validated joint state fed to observe()
        self.target: np.ndarray | None = None
        self.target_velocity: np.ndarray | None = None
        self.last_valid_time: float | None = None
        self.watchdog_active = False
        # where the stopping horizon sent by the last output before the current hold ends (None: moving)
        self._pre_hold_stop: np.ndarray | None = None
        self._outputs: deque[tuple[float, np.ndarray]] = deque(maxlen=max(2, round(1.0 / period)))   # 1 s

    # -- state ----------------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return self.q is not None

    @property
    def holding(self) -> bool:
        """E-stop or a fault latched: decelerating to / staying at a hold."""
        return self.estopped or bool(self.faults)

    @property
    def output_at_rest(self) -> bool:
        return self.v is None or not np.any(self.v)

    def reset(self, positions: np.ndarray, now: float) -> None:
        """Start from ``positions`` (a measurement of the arm at rest), at rest, with no target."""
        self.q = np.clip(np.asarray(positions, np.float64), self.lower, self.upper)
        self.v = np.zeros_like(self.q)
        self.a = np.zeros_like(self.q)
        self.last_valid_time = now
        self.target = None
        self._pre_hold_stop = None
        self._outputs.clear()
        self._outputs.append((now, self.q.copy()))

    def await_rest(self) -> None:
        """Back to before the start (only while nothing was ever commanded: the output is the start's hold,
        at rest): no output until ``reset`` from a new measurement of the arm at rest."""
        self.q = self.v = self.a = None
        self.target = self._pre_hold_stop = None
        self._outputs.clear()

    def commanded_at(self, stamp: float) -> np.ndarray:
        """The output that was in force at ``stamp`` (the latest one sent at or before it; the oldest kept
        if it is older than the last second, the current one if newer)."""
        for t, q in reversed(self._outputs):
            if t <= stamp:
                return q
        return self._outputs[0][1] if self._outputs else self.q

    def observe(self, measured: np.ndarray, now: float, stamp: float | None = None) -> None:
        """Feed a validated joint state taken at ``stamp`` (default: now). Far from the output in force at
        that stamp (a blocked or lagging arm, a collision) it latches a ``tracking_error`` fault: the
        output decelerates to a hold instead of jumping to the measurement. Comparing with the output of
        the sample's own time keeps the feedback's latency out of the error (the age check bounds it).
        Not checked while the e-stop is latched: the arm may be moved by hand or re-homed then, and the
        release restarts from where it is."""
        self.measured = np.array(measured, np.float64)
        if not self.initialized or self.max_tracking_error is None or self.estopped:
            return
        error = np.abs(self.measured - self.commanded_at(now if stamp is None else stamp))
        j = int(np.argmax(error))
        if error[j] > self.max_tracking_error:
            self.latch_fault("tracking_error", f"{self.names[j]!r} is {error[j]:.3f} from the command (max_tracking_"
                                               f"error {self.max_tracking_error}): blocked, lagging or pushed")

    def latch_fault(self, kind: str, reason: str) -> bool:
        """Latch a fault (counted once per latch); returns True if it was not latched already."""
        if kind in self.faults:
            return False
        self.faults[kind] = reason
        self.counters[kind] += 1
        self.counters["faults"] += 1
        return True

    def latch_estop(self) -> None:
        if not self.estopped:
            self.counters["estop"] += 1
        self.estopped = True

    def release(self, now: float, rest_position: np.ndarray | None = None, blocked_by: str | None = None
                ) -> tuple[bool, str]:
        """Release a latched e-stop and faults. Refused (counted) while ``blocked_by`` names a cause that is
        still present or while the output is still decelerating. ``rest_position``: a validated
        measurement of the arm at rest to restart from (it may have been moved while stopped); None, or
        one within ``resume_tolerance`` of the held output, resumes from the held output (counted
        ``resume``; a restart is counted ``restart``). Motion resumes only with a new command."""
        if not self.holding:
            self.counters["release_noop"] += 1
            return False, "nothing is latched: release changed nothing"
        refusal = blocked_by or (None if self.output_at_rest else "the output is still decelerating to the hold")
        if refusal:
            self.counters["release_refused"] += 1
            return False, f"release refused: {refusal}"
        cleared = (["e-stop"] if self.estopped else []) + sorted(self.faults)
        self.estopped, self.faults = False, {}
        if rest_position is not None and not self._holds_at(rest_position):
            self.reset(rest_position, now)
            self.counters["restart"] += 1
        else:
            self.counters["resume"] += 1
        self.target = None
        return True, f"released ({', '.join(cleared)}); motion resumes with the next command"

    def _holds_at(self, measured) -> bool:
        """The (clamped) measurement is within ``resume_tolerance`` of where the controller may hold the arm
        on every joint: the held output, or on the way to the end of the last pre-hold stopping horizon."""
        measured = np.clip(np.asarray(measured, np.float64), self.lower, self.upper)
        stop = self.q if self._pre_hold_stop is None else self._pre_hold_stop
        low, high = np.minimum(self.q, stop), np.maximum(self.q, stop)
        return bool(np.all((measured >= low - self.resume_tolerance) & (measured <= high + self.resume_tolerance)))

    def order(self, names, values) -> np.ndarray:
        """Values in configured order; rejects unknown, missing, duplicate names and NaN/inf."""
        return self.space.order(names, values)

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
        return LimitResult(q.copy(), v_out.copy(), acted)

    def count_rejection(self, kind: str) -> None:
        self.counters[kind] += 1
        self.counters["rejected"] += 1

    def set_target(self, names, positions, now: float) -> None:
        """Accept a position command as the target. Raises CommandRejected (counted) if it must not pass."""
        try:
            if not self.initialized:
                raise CommandRejected("not_ready", "no joint state of the arm at rest received yet")
            target = self.order(names, positions)
            if self.estopped:
                raise CommandRejected("estop_active", "e-stop latched; call release first")
            if self.faults:
                raise CommandRejected("fault_active", f"fault latched ({', '.join(sorted(self.faults))}); "
                                                      "call release once it has cleared")
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
        the e-stop or a fault is latched or no valid command came for ``timeout``. None before start."""
        if not self.initialized:
            return None
        result = self._step(now)
        self._outputs.append((now, result.positions))
        return result

    def _step(self, now: float) -> LimitResult:
        if self.holding or self.target is None or now - self.last_valid_time > self.timeout:
            if not self.holding and self.target is not None and not self.watchdog_active:
                self.counters["watchdog"] += 1
                self.watchdog_active = True
            if self._pre_hold_stop is None:   # the state before this tick is the last output sent moving
                self._pre_hold_stop = self.stopping_horizon()[0][-1]
            return self.hold()
        self._pre_hold_stop = None
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
        """Decelerate within limits towards standstill (watchdog, e-stop, faults)."""
        dt = self.period
        slower = self.v - np.clip(self.v, -self.amax * dt, self.amax * dt)
        return self._step_towards(self.q + slower * dt)

    def stopping_horizon(self, max_points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """From the current output (position q, velocity v): what the controller follows if no further
        message arrives — one more period at the output's velocity (as far as the braking bound allows:
        this is where the next tick's point would be, so a controller splicing the next message onto it
        sees no velocity dip), then a stop at maximum deceleration, one row per control period, ending at
        rest inside the position range. Positions and velocities, the first row being the output itself.
        (It brakes at a_max at once: a jerk limit is not applied to this fallback.)"""
        dt, q = self.period, self.q
        coast = np.clip(self.v, -self._brake(q - self.lower), self._brake(self.upper - q))
        dv = self.amax * dt
        steps = min(max_points - 2, max(1, int(np.ceil(np.max(np.abs(coast) / dv) - 1e-9)))) if np.any(coast) else 0
        # period k of the stop moves at the coasting speed less k decelerations (never below zero)
        speed = np.maximum(np.abs(coast) - np.arange(steps)[:, None] * dv, 0.0)
        velocities = np.sign(coast) * np.where(speed < 1e-12, 0.0, speed)
        positions = np.clip(q + np.cumsum(velocities, axis=0) * dt, self.lower, self.upper)
        rows_q = np.vstack([q, positions, positions[-1:]]) if steps else q[None].copy()
        rows_v = np.vstack([self.v, velocities, np.zeros_like(q)[None]]) if steps else self.v[None].copy()
        return rows_q, rows_v
