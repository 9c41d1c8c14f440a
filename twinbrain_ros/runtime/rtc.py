"""Real-time chunking (RTC; Black et al. 2025, "Real-Time Execution of Action Chunking Flow Policies"),
the runtime half: which actions of the next chunk are already decided, and how strongly the sampler is
pulled towards them (pure numpy, no ROS, no torch).

While a chunk is sampled the arm keeps executing the current one. The actions the new chunk holds for
the next ``frozen`` steps (the inference delay) will never be executed — the current plan will — so the
new chunk should agree with them exactly; after that, agreement matters less and less until the current
plan runs out. ``RtcGuide`` carries that target and its soft mask to the flow sampler
(``FlowMatchingActionExpert.sample``, guided inpainting with a capped weight); the executor then splices
the result in with its ordinary short crossfade, which now blends two plans that already agree.

The delay is estimated online from what accepted chunks actually took (observation stamp -> accepted):
a high quantile of the recent ones, so a slow tail is covered, after dropping the first measurements
after an activation (model warm-up, allocator and thread-pool start), which would otherwise keep the
estimate high for a whole window — the inflated delay LeRobot's RTC users see after a cold start.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .chunk_executor import interpolate


@dataclass
class RtcGuide:
    """What the next chunk should reproduce: ``target`` (H, D) in robot units on the new chunk's time
    grid (rows with ``weights`` 0 are don't-cares), ``weights`` (H,) in [0, 1], ``max_guidance`` (the
    paper's beta) caps the guidance weight early in the integration where it would diverge;
    ``through_network``: the error is pulled back through the network's Jacobian (the paper's exact form)
    rather than taken as is (model/action_expert.py says what each does)."""
    target: np.ndarray
    weights: np.ndarray
    frozen: int
    max_guidance: float = 5.0
    through_network: bool = False


def soft_mask(horizon: int, frozen: int, overlap: int) -> np.ndarray:
    """Weights (horizon,): 1 for the ``frozen`` first steps, then decaying exponentially towards 0 at
    step ``overlap`` (where the current plan ends), 0 after it (the paper's eq. 5)."""
    overlap = int(np.clip(overlap, 0, horizon))
    frozen = int(np.clip(frozen, 0, overlap))
    w = np.zeros(horizon)
    w[:frozen] = 1.0
    k = np.arange(frozen, overlap)
    c = (overlap - k) / (overlap - frozen + 1)
    w[frozen:overlap] = c * np.expm1(c) / np.expm1(1.0)
    return w


class DelayEstimator:
    """Inference delay (s) for the next chunk from recent measured ones (observation -> accepted)."""

    def __init__(self, initial: float, window: int = 16, quantile: float = 0.9, warmup: int = 2):
        if initial < 0 or window < 1 or not 0 < quantile <= 1 or warmup < 0:
            raise ValueError("initial >= 0, window >= 1, 0 < quantile <= 1 and warmup >= 0 are required")
        self.initial, self.quantile, self.warmup = initial, quantile, warmup
        self.samples: deque[float] = deque(maxlen=window)
        self._seen = 0

    def reset(self) -> None:
        """Activation: the next measurements are warm-up ones again."""
        self.samples.clear()
        self._seen = 0

    def add(self, delay: float) -> None:
        self._seen += 1
        if self._seen > self.warmup and np.isfinite(delay) and delay >= 0:
            self.samples.append(float(delay))

    def estimate(self) -> float:
        if not self.samples:
            return self.initial
        return float(np.quantile(np.asarray(self.samples), self.quantile))


def guide_from_plan(plan_times: np.ndarray, plan_values: np.ndarray, obs_stamp: float, step_period: float,
                    horizon: int, delay: float, max_guidance: float = 5.0,
                    through_network: bool = False, interpolation: str = "linear") -> RtcGuide | None:
    """The guide for a chunk observed at ``obs_stamp`` given the executing plan (its time grid and rows):
    the plan sampled at the new chunk's step times, frozen for the steps that run before ``delay`` has
    passed, soft-masked up to the plan's end. None when the plan has nothing left to agree with."""
    times = obs_stamp + step_period * np.arange(horizon)
    overlap = int(np.searchsorted(times, plan_times[-1], side="right"))
    if overlap == 0:
        return None
    target = interpolate(plan_times, plan_values, times, interpolation)   # as the executor samples it
    frozen = min(int(np.ceil(delay / step_period - 1e-9)), overlap)
    return RtcGuide(target, soft_mask(horizon, frozen, overlap), frozen, max_guidance, through_network)
