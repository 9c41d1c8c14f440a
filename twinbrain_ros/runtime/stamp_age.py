"""Is a stamped message fresh enough to act on, and if not, why? (pure Python, no ROS)

A message stamped on another host is judged by this host's clock: ``age = arrival - stamp``. Two hosts
whose clocks disagree make every message look too old (this host's clock ahead) or stamped in the future
(the sender's clock ahead) — and a node that only says "observation too old" then refuses everything
without saying that the clocks are the cause. One sample cannot tell a clock offset from a slow link;
a window of them can:

* stamped in the future (beyond ``max_future``): only clock skew does that — a message cannot arrive
  before it was taken.
* every sample of the last ``window`` seconds too old, all by about the same amount: a steady offset —
  clock skew (this host ahead of the sender), or a link with that much constant delay.
* some too old, others fine: late delivery (delay spikes, retransmissions after loss, a partition).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

OK, FUTURE, OFFSET, LATE = "ok", "clock_skew_future", "clock_skew_or_delay", "late"
FIX = "synchronise both hosts' clocks (chrony or PTP; README, Two hosts)"


@dataclass(frozen=True)
class StampReport:
    kind: str            # OK, FUTURE, OFFSET or LATE
    message: str         # one line naming the cause ("" when OK)
    samples: int         # samples in the window
    refused: int         # of which refused
    age_min: float       # arrival - stamp over the window (s); negative: stamped in the future
    age_max: float


class StampAgeMonitor:
    """Judges each stamp on arrival (``check``) and explains the recent ones (``report``). ``what`` names
    the stream in messages ("camera frame", "action chunk")."""

    def __init__(self, max_age: float, max_future: float, what: str = "message", window: float = 2.0,
                 min_samples: int = 3):
        if max_age <= 0 or max_future <= 0 or window <= 0 or min_samples < 1:
            raise ValueError("max_age, max_future and window must be > 0, min_samples >= 1")
        self.max_age, self.max_future, self.what = max_age, max_future, what
        self.window, self.min_samples = window, min_samples
        self._recent: deque[tuple[float, float, bool]] = deque(maxlen=4096)   # (arrival, age, refused)

    def age_problem(self, stamp: float, now: float) -> str | None:
        """Why a message of ``stamp`` is unfit at ``now`` (None: fit); records nothing."""
        age = now - stamp
        if -age > self.max_future:
            return (f"{self.what} stamped {-age:.3f} s in the future (tolerance {self.max_future:.3f} s): "
                    f"clock skew, the sender's clock is ahead of this host's; {FIX}")
        if age > self.max_age:
            return f"{self.what} {age:.3f} s old (max {self.max_age:.3f} s)"
        return None

    def check(self, stamp: float, now: float) -> str | None:
        """``age_problem`` of a message arriving now, recorded for ``report``; a stale one's reason names
        the likely cause from the recent window."""
        problem = self.age_problem(stamp, now)
        self._recent.append((now, now - stamp, problem is not None))
        if problem is None or now - stamp < 0:
            return problem
        return self.explain(now) or problem

    def explain(self, now: float) -> str:
        """The recent window's cause of refusals ("" when it has none, or too few samples to tell)."""
        report = self.report(now)
        return report.message if report.kind != OK and report.samples >= self.min_samples else ""

    def report(self, now: float) -> StampReport:
        while self._recent and now - self._recent[0][0] > self.window:
            self._recent.popleft()
        if not self._recent:
            return StampReport(OK, "", 0, 0, float("nan"), float("nan"))
        ages = np.array([a for _, a, _ in self._recent])
        refused = sum(r for _, _, r in self._recent)
        lo, hi, n = float(ages.min()), float(ages.max()), len(ages)
        make = lambda kind, msg: StampReport(kind, msg, n, refused, lo, hi)  # noqa: E731
        if -lo > self.max_future:
            return make(FUTURE, f"{self.what}s stamped up to {-lo:.3f} s in the future (tolerance "
                                f"{self.max_future:.3f} s): clock skew, the sender's clock is ahead of this "
                                f"host's; {FIX}")
        if not refused:
            return make(OK, "")
        if refused == n and n >= self.min_samples and hi - lo < 0.5 * self.max_age:
            return make(OFFSET, f"every {self.what} of the last {self.window:.0f} s ({n}) arrived {lo:.3f}-{hi:.3f} s "
                                f"old (max {self.max_age:.3f} s), all by about the same amount: a steady offset — "
                                f"clock skew (this host's clock ahead of the sender's) or a link that slow; "
                                f"check the clocks first: {FIX}")
        return make(LATE, f"{refused} of the last {n} {self.what}s arrived too old ({lo:.3f}-{hi:.3f} s, max "
                          f"{self.max_age:.3f} s): late delivery (link delay, loss and retransmission, a partition)")
