"""Everything between synchronized inputs and setpoints, without ROS: the object policy_node drives
from its threads and the in-process rollouts drive in sim time.

Two sides meet here. The inference side asks ``next_job(now)`` for the newest observation not yet
inferred (with the instruction of the moment; never one stamped at or before the last ``reset`` or
activation), runs the model outside (and outside any lock), and hands the chunk back with
``accept``: admission (clamp / slow down / reject, ``ChunkAdmission``), then the executor — unless the
instruction changed or a reset came meanwhile, which makes the chunk stale. The control side calls
``tick(now)`` at control rate for the setpoint; it stops streaming (and drops the plan) when the inputs
are stale or the model failed. The latency trace (camera stamp -> synchronized -> inference started
-> finished -> accepted -> first setpoint from it) feeds the node-overhead figure.

Not thread-safe on its own: the node calls every method under its lock (the model runs between).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .chunk_admission import ChunkAdmission
from .chunk_executor import PEAK_SPEED_OVER_SECANT, ChunkExecutor
from .joint_limits import CommandRejected
from .rtc import DelayEstimator, RtcGuide, guide_from_plan
from .synchronizer import ObservationSynchronizer


@dataclass
class InferenceJob:
    """One observation to run the model on, and when it entered the pipeline."""
    stamp: float
    version: int                    # the instruction version it was taken with
    images: list[np.ndarray]        # in camera order
    state: np.ndarray
    instruction: str
    synced: float                   # when the synchronizer completed it
    started: float                  # when the inference side took it
    guide: RtcGuide | None = None   # blend rtc: what the chunk must agree with (runtime/rtc.py)


@dataclass
class AcceptedChunk:
    chunk: np.ndarray               # as admitted (clamped / slowed down)
    instruction: str
    clamped: list[str] = field(default_factory=list)
    slow_down: float = 1.0


class PolicyRunner:
    def __init__(self, sync: ObservationSynchronizer, executor: ChunkExecutor, camera_names: list[str],
                 joint_names: list[str], step_period: float, admission: ChunkAdmission | None = None,
                 horizon: int = 16, delay: DelayEstimator | None = None, max_guidance: float = 5.0,
                 guidance_through_network: bool = False):
        """``admission`` None: chunks are not joint positions (end-effector mode) and go in as they are.
        ``horizon``: the model's chunk length; ``delay``, ``max_guidance`` and ``guidance_through_network``:
        real-time chunking (used when the executor blends ``rtc``; runtime/rtc.py)."""
        self.sync, self.executor, self.admission = sync, executor, admission
        self.horizon, self.max_guidance, self.guidance_through_network = horizon, max_guidance, guidance_through_network
        self.delay = delay or DelayEstimator(initial=step_period)
        self.camera_names, self.joint_names, self.step_period = list(camera_names), list(joint_names), step_period
        self.active = False
        self.model_error: str | None = None
        self.refusal = "inactive"                  # why no setpoint goes out now ("" while acting)
        self.last_obs_stamp: float | None = None   # observation stamp of the newest accepted chunk
        self.rejection = ""                        # why the last chunk handed to accept was rejected
        self.stats = {"latency": deque(maxlen=200), "overhead": deque(maxlen=1000), "chunks": 0, "clamped_chunks": 0,
                      "slowed_chunks": 0, "rejected_chunks": 0, "model_errors": 0}
        self._inferred = (None, -1)       # (observation stamp, instruction version) of the last job
        self.not_before = float("-inf")  # reset / activation: only observations stamped after it count
        self._synced_at: dict[float, float] = {}
        self._trace: dict[float, dict] = {}
        self._published_stamp = None      # observation stamp of the chunk the last setpoint came from

    @classmethod
    def from_params(cls, p: dict, limits, camera_names: list[str] | None = None, horizon: int = 16) -> "PolicyRunner":
        """Built from policy_node's parameters (``p``: the node's resolved values, or
        ``graph.node_params(config, "policy_node")``), the robot's joint limits and the model's chunk
        length, as the node builds it."""
        cameras, names, period = list(camera_names or p["camera_names"]), list(p["joint_names"]), p["chunk_step_period"]
        sync = ObservationSynchronizer(cameras, names, p["sync_slop"], p["max_observation_age"], p["max_joint_gap"],
                                       max_future=p["max_observation_future"])
        joint = p["output_mode"] == "joint"
        admission = ChunkAdmission(limits, p["out_of_range_chunks"], p["overspeed_chunks"],
                                   PEAK_SPEED_OVER_SECANT[p["interpolation"]]) if joint else None
        executor = ChunkExecutor(len(names), period, p["blend"], p["blend_steps"], interpolation=p["interpolation"])
        return cls(sync, executor, cameras, names, period,
                   admission, horizon, DelayEstimator(p["rtc_initial_delay"]), p["rtc_max_guidance"],
                   p["rtc_guidance"] == "network")

    # -- lifecycle and inputs ----------------------------------------------------------------------
    def activate(self, now: float) -> None:
        """Act on what is observed from now on: nothing planned before (or while inactive) is executed."""
        self.executor.reset()
        self.delay.reset()
        self.not_before, self.active = now, True

    def deactivate(self) -> None:
        self.active = False
        self.executor.reset()
        self.refusal = "inactive"

    def reset(self, now: float) -> None:
        """A new episode: the executing chunk and any inference on an older observation are dropped."""
        self.not_before = now
        self.executor.reset()

    def set_instruction(self, text: str, now: float) -> bool:
        """A new instruction re-plans: hold where the setpoint is until a chunk for it arrives. True if it
        changed."""
        before = self.sync.instruction_version
        self.sync.set_instruction(text)
        if self.sync.instruction_version == before:
            return False
        setpoint = self.executor.setpoint(now)
        self.executor.reset(setpoint, now) if setpoint is not None else self.executor.reset()
        return True

    def observation_completed(self, stamp: float, now: float) -> None:
        self._synced_at = {stamp: now}

    # -- inference side ----------------------------------------------------------------------------
    def next_job(self, now: float) -> InferenceJob | None:
        """The newest fresh observation not yet inferred for the current instruction, or None."""
        obs, _ = self.sync.latest(now)
        version = self.sync.instruction_version
        if not self.active or obs is None or (obs.stamp, version) == self._inferred or obs.stamp <= self.not_before:
            return None
        self._inferred = (obs.stamp, version)
        return InferenceJob(obs.stamp, version, [obs.images[c] for c in self.camera_names], obs.state.copy(),
                            obs.instruction, self._synced_at.get(obs.stamp, now), now, self._guide(obs.stamp))

    def _guide(self, stamp: float) -> RtcGuide | None:
        plan = self.executor.plan() if self.executor.blend == "rtc" else None
        if plan is None:
            return None
        return guide_from_plan(*plan, stamp, self.step_period, self.horizon, self.delay.estimate(), self.max_guidance,
                               self.guidance_through_network, self.executor.interpolation)

    def failed(self, error: str) -> None:
        """The model raised: no motion until a later inference succeeds."""
        self.stats["model_errors"] += 1
        self.model_error = error
        self.executor.reset()

    def accept(self, job: InferenceJob, chunk: np.ndarray, latency: float, now: float) -> AcceptedChunk | None:
        """Admit a chunk and hand it to the executor. None if admission rejected it (``rejection`` says
        why), the executor refused it (``refusal``), or it went stale while the model ran (instruction
        changed, reset)."""
        self.model_error, self.rejection = None, ""
        self.stats["latency"].append(latency)
        clamped, factor = [], 1.0
        if self.admission is not None:
            try:
                chunk, clamped, factor = self.admission.admit(self.joint_names, chunk, self.step_period)
            except CommandRejected as exc:
                self.stats["rejected_chunks"] += 1
                self.refusal = self.rejection = f"chunk rejected: {exc}"
                return None
            self.stats["clamped_chunks"] += bool(clamped)
            self.stats["slowed_chunks"] += factor > 1.0
        if job.version != self.sync.instruction_version or job.stamp <= self.not_before:
            return None
        try:
            self.executor.add_chunk(chunk, job.stamp, now)
        except ValueError as exc:
            self.refusal = f"chunk refused: {exc}"
            return None
        self.stats["chunks"] += 1
        self.delay.add(now - job.stamp)
        self.last_obs_stamp = job.stamp
        self._trace = {job.stamp: {"synced": job.synced, "started": job.started,
                                   "finished": job.started + latency, "accepted": now}}
        return AcceptedChunk(chunk, self.sync.instruction, clamped, factor)

    # -- control side ------------------------------------------------------------------------------
    def tick(self, now: float) -> np.ndarray | None:
        """The setpoint for ``now``, or None (``refusal`` says why): inactive, stale inputs, a model error
        (the plan is dropped then: the safety node's watchdog holds the arm), or no chunk yet."""
        if not self.active:
            return None
        obs, reason = self.sync.latest(now)
        if obs is None or self.model_error:
            self.refusal = self.model_error or reason
            if self.executor.active:
                self.executor.reset()
            return None
        setpoint = self.executor.setpoint(now)
        stamp = self.executor.chunk_stamp
        if stamp is not None and stamp != self._published_stamp and stamp in self._trace:
            t = self._trace[stamp]
            # camera stamp -> first setpoint using it, split so model compute can be excluded
            self.stats["overhead"].append({
                "receive_sync": t["synced"] - stamp, "queue": t["started"] - t["synced"],
                "handoff": t["accepted"] - t["finished"], "tick_wait": now - t["accepted"],
                "compute": t["finished"] - t["started"], "total": now - stamp})
        self._published_stamp = stamp
        self.refusal = "waiting for the first action chunk" if setpoint is None else ""
        return setpoint
