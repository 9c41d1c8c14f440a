"""Observation synchronizer: camera frames drive it, joint states are looked up by stamp, the
instruction is latched state.

Why not message_filters.ApproximateTimeSynchronizer (RUNTIME.md): it counts messages not seconds,
so 500 Hz joint states overflow its queue before a 30 Hz frame arrives, and a latched instruction is
consumed once. Here: N cameras are matched within ``slop`` seconds; the joint state at the anchor
frame's stamp is linearly interpolated from a time-indexed buffer; an observation older than
``max_age``, stamped more than ``max_future`` ahead of this host's clock, or whose joint states have a
gap larger than ``max_joint_gap`` is refused with a reason — naming clock skew between the hosts when
the frames' arrival ages show it (runtime/stamp_age.py). All stamps are seconds (float).
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .stamp_age import StampAgeMonitor


@dataclass
class SyncedObservation:
    stamp: float                      # anchor camera frame stamp (capture time)
    images: dict[str, np.ndarray]     # camera name -> RGB uint8
    state: np.ndarray                 # joint positions at ``stamp``, in configured joint order
    instruction: str | None
    camera_stamps: dict[str, float] = field(default_factory=dict)


class JointStateBuffer:
    """Time-indexed joint positions (configured order) with linear interpolation."""

    def __init__(self, joint_names: list[str], horizon: float = 2.0):
        self.joint_names = list(joint_names)
        self._index = {n: i for i, n in enumerate(self.joint_names)}
        self.horizon = horizon
        self._stamps: list[float] = []
        self._values: list[np.ndarray] = []

    def add(self, stamp: float, names, positions) -> None:
        """Insert a sample; raises ValueError for missing/NaN joints (the sample is dropped)."""
        pos = dict(zip(names, positions))
        missing = [n for n in self.joint_names if n not in pos]
        if missing:
            raise ValueError(f"joint_states lacks joints {missing}")
        values = np.array([pos[n] for n in self.joint_names], dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError("joint_states contains NaN/inf")
        if self._stamps and stamp <= self._stamps[-1]:
            if stamp == self._stamps[-1]:
                return
            i = bisect.bisect_left(self._stamps, stamp)     # out-of-order sample: insert in place
            self._stamps.insert(i, stamp)
            self._values.insert(i, values)
        else:
            self._stamps.append(stamp)
            self._values.append(values)
        cutoff = self._stamps[-1] - self.horizon
        drop = bisect.bisect_left(self._stamps, cutoff)
        if drop:
            del self._stamps[:drop], self._values[:drop]

    @property
    def latest_stamp(self) -> float | None:
        return self._stamps[-1] if self._stamps else None

    def lookup(self, stamp: float, max_gap: float) -> tuple[np.ndarray | None, str]:
        """Positions at ``stamp`` (interpolated) or (None, reason)."""
        if not self._stamps:
            return None, "no joint_states received"
        if stamp > self._stamps[-1]:
            lag = stamp - self._stamps[-1]
            if lag > max_gap:
                return None, f"joint_states stalled: newest is {lag:.3f} s older than the frame"
            return self._values[-1].copy(), ""
        if stamp < self._stamps[0]:
            return None, f"frame is {self._stamps[0] - stamp:.3f} s older than the joint-state buffer"
        i = bisect.bisect_left(self._stamps, stamp)
        if self._stamps[i] == stamp:
            return self._values[i].copy(), ""
        t0, t1 = self._stamps[i - 1], self._stamps[i]
        if t1 - t0 > max_gap:
            return None, f"joint-state gap of {t1 - t0:.3f} s around the frame stamp"
        w = (stamp - t0) / (t1 - t0)
        return (1 - w) * self._values[i - 1] + w * self._values[i], ""


class ObservationSynchronizer:
    def __init__(self, camera_names: list[str], joint_names: list[str], slop: float = 0.02,
                 max_age: float = 0.5, max_joint_gap: float = 0.05, frames_per_camera: int = 8,
                 max_future: float = 0.05):
        if not camera_names:
            raise ValueError("at least one camera is required")
        self.camera_names = list(camera_names)
        self.slop, self.max_age, self.max_joint_gap = slop, max_age, max_joint_gap
        self.joints = JointStateBuffer(joint_names)
        self.stamps = StampAgeMonitor(max_age, max_future, "camera frame")   # arrival ages, for the diagnosis
        self._frames = {c: deque(maxlen=frames_per_camera) for c in self.camera_names}
        self.instruction: str | None = None
        self.instruction_version = 0
        self._latest: SyncedObservation | None = None
        self.last_reason = "no camera frames yet"

    def set_instruction(self, text: str) -> None:
        text = (text or "").strip()
        if text != self.instruction:
            self.instruction_version += 1
        self.instruction = text or None

    def add_joint_state(self, stamp: float, names, positions) -> None:
        self.joints.add(stamp, names, positions)

    def add_frame(self, camera: str, stamp: float, image: np.ndarray,
                  arrival: float | None = None) -> SyncedObservation | None:
        """Add a frame (``arrival``: this host's time now, for the clock-skew diagnosis); returns a new
        synchronized observation when one is complete."""
        if camera not in self._frames:
            raise ValueError(f"unknown camera {camera!r}; configured: {self.camera_names}")
        if arrival is not None:
            self.stamps.check(stamp, arrival)
        self._frames[camera].append((stamp, image))
        anchor_cam = self.camera_names[0]
        if not self._frames[anchor_cam]:
            self.last_reason = f"waiting for camera {anchor_cam!r}"
            return None
        # Newest anchor frame with a partner within slop on every other camera.
        for anchor_stamp, anchor_img in reversed(self._frames[anchor_cam]):
            images, stamps = {anchor_cam: anchor_img}, {anchor_cam: anchor_stamp}
            for cam in self.camera_names[1:]:
                best = min(self._frames[cam], key=lambda f: abs(f[0] - anchor_stamp), default=None)
                if best is None or abs(best[0] - anchor_stamp) > self.slop:
                    break
                images[cam], stamps[cam] = best[1], best[0]
            else:
                if self._latest is not None and anchor_stamp <= self._latest.stamp:
                    return None
                state, reason = self.joints.lookup(anchor_stamp, self.max_joint_gap)
                if state is None:
                    self.last_reason = reason
                    return None
                self._latest = SyncedObservation(anchor_stamp, images, state, self.instruction, stamps)
                return self._latest
        self.last_reason = f"no camera set within slop {self.slop:.3f} s"
        return None

    def latest_frames(self, now: float) -> tuple[SyncedObservation | None, str]:
        """The newest synchronized camera set if fresh enough, whatever the instruction and joint
        states (for looking, not acting)."""
        obs = self._latest
        if obs is None:
            return None, self.last_reason
        problem = self.stamps.age_problem(obs.stamp, now)
        if problem is not None:
            # frames still arriving, all too old or from the future: say why (clock skew, a slow link)
            cause = self.stamps.explain(now)
            if now < obs.stamp:
                return None, cause or problem
            return None, (f"observation too old: {now - obs.stamp:.3f} s > max_age {self.max_age:.3f} s"
                          + (f"; {cause}" if cause else ""))
        return obs, ""

    def latest(self, now: float) -> tuple[SyncedObservation | None, str]:
        """The newest synchronized observation if fresh enough to act on, else (None, reason)."""
        obs, reason = self.latest_frames(now)
        if obs is None:
            return None, reason
        newest_joint = self.joints.latest_stamp
        if newest_joint is None or now - newest_joint > self.max_age:
            return None, "joint_states stalled"
        if not self.instruction:
            return None, "no instruction"
        obs.instruction = self.instruction
        return obs, ""
