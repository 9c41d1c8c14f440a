"""Is the joint-state feedback fit to command from? (pure numpy, no ROS)

A limiter commanding from bad feedback is the classic way a safety layer makes an arm jump: one
glitched encoder sample, a state delivered late, a driver that stopped publishing. Each sample is
checked in turn — finite, every controlled joint present and no unknown one (``ignore`` lists joints
a joint_state_broadcaster also publishes that nobody controls), stamp neither in the future nor older
than ``max_age`` on arrival, stamps increasing, and each joint's implied velocity since the previous
accepted sample at most ``velocity_factor`` × its velocity limit (+ ``noise`` per sample). A sample that
fails is refused with a CommandRejected whose kind names the fault; the previous accepted sample stays
the reference. ``stalled`` reports no accepted sample for ``timeout``.

``rest_position``: the latest sample, only when it is fresh and the last ``rest_samples`` accepted
samples agree within ``rest_tolerance`` — the only measurement the limiter may (re)start from.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .joint_limits import CommandRejected, JointSpace


@dataclass(frozen=True)
class FeedbackLimits:
    timeout: float                  # stall: no accepted joint state for this long (s)
    max_age: float                  # a state older than this on arrival is refused (s)
    max_future: float = 0.05        # a state stamped further than this in the future is refused (s)
    velocity_factor: float = 3.0    # plausible speed between samples, in multiples of max_velocity
    noise: float = 1e-3             # per-sample jitter always allowed (rad / m)
    rest_samples: int = 5
    rest_tolerance: float = 2e-3    # spread of the rest samples (rad / m)

    def __post_init__(self):
        if min(self.timeout, self.max_age, self.max_future, self.velocity_factor, self.rest_tolerance) <= 0 \
                or self.noise < 0 or self.rest_samples < 2:
            raise ValueError(f"feedback limits must be > 0 (noise >= 0, rest_samples >= 2): {self}")


class FeedbackMonitor:
    def __init__(self, space: JointSpace, limits: FeedbackLimits, ignore=()):
        self.space, self.limits, self.ignore = space, limits, frozenset(ignore)
        self._last: tuple[float, np.ndarray] | None = None   # (stamp, positions) of the last accepted sample
        self._last_arrival: float | None = None
        self._recent: deque[np.ndarray] = deque(maxlen=limits.rest_samples)

    def update(self, names, positions, stamp: float, now: float) -> np.ndarray:
        """Check one joint state (``stamp`` 0: unstamped, the arrival time stands in). Returns positions in
        configured order; raises CommandRejected with kind ``joint_state_<fault>``."""
        try:
            return self._update(names, positions, stamp, now)
        except CommandRejected as exc:
            self._recent.clear()   # rest needs consistent samples after the fault, not around it
            kind = exc.kind if exc.kind.startswith("joint_state_") else f"joint_state_{exc.kind}"
            raise CommandRejected(kind, str(exc)) from None

    def _update(self, names, positions, stamp, now):
        lim = self.limits
        q = self.space.order(names, positions, "joint_state", self.ignore)
        if stamp:
            if stamp - now > lim.max_future:
                raise CommandRejected("future", f"joint_state stamped {stamp - now:.3f} s in the future (tolerance "
                                                f"{lim.max_future} s): the driver's clock is ahead of this host's")
            if now - stamp > lim.max_age:
                raise CommandRejected("stale", f"joint_state {now - stamp:.3f} s old on arrival (max "
                                               f"{lim.max_age} s): late delivery, or this host's clock is ahead")
        else:
            stamp = now
        if self._last is not None:
            t0, q0 = self._last
            dt = stamp - t0
            if dt <= 0:
                if np.array_equal(q, q0):
                    return q    # the same sample again (a second publisher, a re-send)
                raise CommandRejected("stamp", f"joint_state stamp {dt * 1e3:.1f} ms after the previous one "
                                               "with different positions")
            moved = np.abs(q - q0)
            allowed = lim.velocity_factor * self.space.vmax * dt + lim.noise
            if np.any(moved > allowed):
                j = int(np.argmax(moved - allowed))
                raise CommandRejected("jump", f"{self.space.names[j]!r} moved {moved[j]:.3f} in {dt * 1e3:.1f} ms "
                                              f"({moved[j] / dt:.2f}/s; plausible: {lim.velocity_factor} x "
                                              f"{self.space.vmax[j]:.2f}): an encoder glitch or a jump")
        self._last, self._last_arrival = (stamp, q), now
        self._recent.append(q)
        return q

    @property
    def started(self) -> bool:
        return self._last_arrival is not None

    def stalled(self, now: float) -> str | None:
        """Why the feedback counts as stalled (no accepted sample for ``timeout``), or None."""
        if self._last_arrival is None or now - self._last_arrival <= self.limits.timeout:
            return None
        return (f"no valid joint_state for {now - self._last_arrival:.3f} s "
                f"(joint_state_timeout {self.limits.timeout} s)")

    def rest_position(self, now: float) -> np.ndarray | None:
        """The latest position if the feedback is fresh and the arm at rest, else None."""
        if self.stalled(now) or len(self._recent) < self.limits.rest_samples:
            return None
        recent = np.array(self._recent)
        if np.max(np.ptp(recent, axis=0)) > self.limits.rest_tolerance:
            return None
        return recent[-1].copy()

    def not_at_rest_reason(self, now: float) -> str | None:
        """Why there is no rest position (for a refused release), or None."""
        if self.rest_position(now) is not None:
            return None
        if not self.started:
            return "no valid joint_state received yet"
        return self.stalled(now) or "the arm is not at rest (or too few consistent joint states since the last fault)"


class Heartbeat:
    """An e-stop device that must keep saying "ok": silence for ``timeout`` or a "not ok" trips it."""

    def __init__(self, timeout: float):
        if timeout <= 0:
            raise ValueError("heartbeat timeout must be > 0")
        self.timeout = timeout
        self._last_ok: float | None = None
        self._not_ok = False

    def beat(self, ok: bool, now: float) -> None:
        self._not_ok = not ok
        if ok:
            self._last_ok = now

    def fault(self, now: float, started: float) -> str | None:
        """Why the heartbeat trips (None: healthy). Before the first beat, silence counts from ``started``."""
        if self._not_ok:
            return "the e-stop heartbeat says not ok"
        last = started if self._last_ok is None else self._last_ok
        if now - last > self.timeout:
            return f"no e-stop heartbeat for {now - last:.2f} s (estop_heartbeat_timeout {self.timeout} s)"
        return None
