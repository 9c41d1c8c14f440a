"""Sampling synchronized streams into dataset rows at a fixed rate: the one rule shared by the live
recorder (recorder_node) and the bag importer (bag_import).

Every tick of the dataset's clock (1 / fps) makes exactly one row, so row k is at k / fps and its
video frames are at the same time. What a row holds:

- a **new** observation when the synchronizer has one newer than the previous row's;
- else a **repeated** one: the previous row's observation with this tick's action, flagged
  ``frame_repeated`` and counted. A repeat is only allowed while that observation is at most
  ``max_repeat_age`` old, and repeated rows are held back until the next new observation arrives, so
  they only ever sit between two real observations;
- when no new observation comes within ``max_repeat_age`` the stream has **stalled**: the held-back
  rows are dropped (counted), the episode ends at its last real observation, and the owner decides
  what happens next (the recorder finalizes it and reports the stall).

Before the first row the sampler waits for the first observation and action (not counted as a loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Row:
    observation: object          # a SyncedObservation: .stamp, .images, .state
    action: np.ndarray
    repeated: bool


@dataclass
class SamplerCounts:
    rows: int = 0              # rows handed to the writer
    new: int = 0
    repeated: int = 0          # rows carrying the previous observation (flagged in the dataset)
    dropped: int = 0           # held-back repeats dropped at a stall or at the end of the episode
    waiting: int = 0           # ticks before the first observation + action
    stalls: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class EpisodeSampler:
    max_repeat_age: float
    counts: SamplerCounts = field(default_factory=SamplerCounts)
    stalled_reason: str = ""

    def __post_init__(self):
        if not self.max_repeat_age > 0:
            raise ValueError(f"max_repeat_age must be > 0, got {self.max_repeat_age}")
        self._last = None           # the observation of the newest real row
        self._held: list[Row] = []

    @property
    def started(self) -> bool:
        return self._last is not None

    def tick(self, now: float, observation, action, reason: str = "") -> list[Row]:
        """The rows this tick releases (usually one; several when held-back repeats are released;
        none while waiting or held). ``observation`` is the synchronizer's newest (None if it has
        none fresh enough; ``reason`` then says why). After a stall it returns nothing."""
        if self.stalled_reason:
            return []
        fresh = observation is not None and (self._last is None or observation.stamp > self._last.stamp)
        if self._last is None:
            if not fresh or action is None:
                self.counts.waiting += 1
                return []
        if fresh:
            rows = self._held + [Row(observation, np.array(action, np.float32), False)]
            self._held = []
            self._last = observation
            self.counts.new += 1
            self.counts.repeated += len(rows) - 1
            self.counts.rows += len(rows)
            return rows
        age = now - self._last.stamp
        if age > self.max_repeat_age:
            self.counts.stalls += 1
            self.counts.dropped += len(self._held)
            self._held = []
            self.stalled_reason = (f"no new observation for {age:.3f} s (> max_repeat_age {self.max_repeat_age:.3f} s)"
                                   + (f": {reason}" if reason else ""))
            return []
        self._held.append(Row(self._last, np.array(action, np.float32), True))
        return []

    def finish(self) -> None:
        """The episode ends: held-back repeats after its last real observation are dropped."""
        self.counts.dropped += len(self._held)
        self._held = []
