"""What a chunk executor may run: policy_node's whole-chunk policy, before anything is executed (pure
numpy, no ROS). The per-tick limits are safety_node's (``runtime/safety.py``); this only makes sure a
plan is inside the position range and feasible at the velocity limit, so the safety node has nothing
to cut off mid-chunk."""

from __future__ import annotations

import numpy as np

from .chunk_executor import slow_down
from .joint_limits import CommandRejected, JointLimit, JointSpace


class ChunkAdmission:
    def __init__(self, limits: list[JointLimit] | JointSpace, out_of_range: str = "clamp",
                 overspeed: str = "slow_down", speed_margin: float = 1.0):
        """``out_of_range="clamp"`` holds steps outside a joint's range at the limit, ``"reject"`` refuses
        the chunk; ``overspeed="slow_down"`` time-scales a chunk that needs more than the velocity limit
        along the same path, ``"reject"`` refuses it. ``speed_margin``: how much faster than a step's
        secant the executor's interpolation can run between actions (PEAK_SPEED_OVER_SECANT), so steps
        are held to the velocity limit divided by it."""
        if speed_margin < 1.0:
            raise ValueError(f"speed_margin must be >= 1, got {speed_margin}")
        self.speed_margin = speed_margin
        if out_of_range not in ("clamp", "reject") or overspeed not in ("slow_down", "reject"):
            raise ValueError(f"out_of_range must be clamp|reject and overspeed slow_down|reject, "
                             f"got {out_of_range!r}, {overspeed!r}")
        self.space = limits if isinstance(limits, JointSpace) else JointSpace(limits)
        self.out_of_range, self.overspeed = out_of_range, overspeed

    def _columns(self, names, chunk) -> tuple[np.ndarray, list[int]]:
        """The chunk as float (H, D) and each column's joint index; the name checks of a single command."""
        chunk = np.asarray(chunk, np.float64)
        if chunk.ndim != 2:
            raise CommandRejected("chunk", f"chunk must be (H, D), got {chunk.shape}")
        if len(chunk):
            self.space.order(names, np.nan_to_num(chunk[0]), "chunk")
        return chunk, [self.space.index[n] for n in names]

    def clamp(self, names, chunk: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Clamp every row (columns in ``names`` order) into the position range, as the per-tick limiter
        would clamp each setpoint. Returns (clamped chunk, names of the joints clamped). NaN/inf pass
        through unchanged for ``validate`` to refuse."""
        chunk, columns = self._columns(names, chunk)
        return self._clamp_columns(names, chunk, columns)

    def _clamp_columns(self, names, chunk, columns) -> tuple[np.ndarray, list[str]]:
        clamped = np.clip(chunk, self.space.lower[columns], self.space.upper[columns])
        moved = np.any(clamped != chunk, axis=0) & np.all(np.isfinite(chunk), axis=0)
        return clamped, [n for n, m in zip(names, moved) if m]

    def validate(self, names, chunk: np.ndarray, step_period: float, start: np.ndarray | None = None) -> None:
        """Refuse a whole chunk (H, D) that leaves the position range or needs more than the velocity limit."""
        s = self.space
        chunk = np.asarray(chunk, np.float64)
        if chunk.ndim != 2:
            raise CommandRejected("chunk", f"chunk must be (H, D), got {chunk.shape}")
        rows = np.stack([s.order(names, row, "chunk") for row in chunk])
        outside = (rows < s.lower - 1e-9) | (rows > s.upper + 1e-9)
        if outside.any():
            j = int(np.argwhere(outside)[0][1])
            raise CommandRejected("chunk", f"chunk leaves the position range of {s.names[j]!r}")
        seq = rows if start is None else np.vstack([np.asarray(start, np.float64)[None], rows])
        if len(seq) > 1:
            speed = np.abs(np.diff(seq, axis=0)) / step_period * self.speed_margin
            fast = speed > s.vmax * (1 + 1e-6)
            if np.any(fast):
                j = int(np.argwhere(fast)[0][1])
                raise CommandRejected("chunk", f"chunk needs {speed[:, j].max():.3f} rad/s on {s.names[j]!r} "
                                               f"(limit {s.vmax[j]:.3f})")

    def admit(self, names, chunk: np.ndarray, step_period: float) -> tuple[np.ndarray, list[str], float]:
        """Clamp (before slowing down: clamping only shortens steps), slow down, then validate the whole
        chunk (CommandRejected, also for the "reject" modes). Returns (chunk, joints clamped, slow-down factor)."""
        chunk, columns = self._columns(names, chunk)
        clamped = []
        if self.out_of_range == "clamp":
            chunk, clamped = self._clamp_columns(names, chunk, columns)   # names already checked
        factor = 1.0
        if self.overspeed == "slow_down" and np.all(np.isfinite(chunk)):   # NaN/inf: refused just below
            chunk, factor = slow_down(chunk, step_period, self.space.vmax[columns] / self.speed_margin)
        self.validate(names, chunk, step_period)
        return chunk, clamped, factor
