"""rosbag2 recordings (sqlite3 or MCAP) -> a LeRobot v3.0 dataset, without a ROS install (``rosbags``).

``twinbrain-record bag BAG [BAG ...] --out DIR --camera front=/camera/front/image_raw ...``

The bag is replayed through what the live recorder uses: cameras and joint states go into the same
``ObservationSynchronizer``, and rows are made at a fixed fps by the same ``EpisodeSampler`` (its
rule for repeated rows and stalls; see there). Time is the messages' own header stamps, not the
bag's receive times: a bag recorded with ``use_sim_time`` has sim-time stamps and wall-clock receive
times. The action is the newest leader / command message (JointState or JointTrajectory's first
point); the task is ``--task`` or the newest message on ``--instruction-topic``.

Episodes: one per bag (``--split bag``), a new one at every message on a topic (``--split
topic:/episode``; what came before the first marker is not an episode), or a new one after a gap of
more than S seconds without camera frames (``--split gap:S``, the default with S = 1). A camera stall
(no new observation within ``--max-repeat-age``) ends an episode the same way. Camera frames are
decoded only when a row uses them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..runtime.images import compressed_to_rgb, image_to_rgb, resize_rgb
from ..runtime.synchronizer import ObservationSynchronizer
from .episode_sampler import EpisodeSampler
from .lerobot_v3 import DatasetError, Schema
from .lerobot_writer import LeRobotV3Writer

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
COMMAND_TYPES = ("sensor_msgs/msg/JointState", "trajectory_msgs/msg/JointTrajectory")


@dataclass
class BagSpec:
    cameras: dict                       # camera name -> topic
    joint_states: str
    command: str
    out: str
    fps: int = 10
    image_size: tuple = (224, 224)      # (height, width) stored
    joint_names: list | None = None     # default: the first JointState's names
    task: str | None = None
    instruction_topic: str | None = None
    split: str = "gap:1.0"              # bag | topic:<name> | gap:<seconds>
    sync_slop: float = 0.02
    max_repeat_age: float = 0.3
    codec: str = "h264"
    robot_type: str = "twinbrain_arm"


class _Frame:
    """A camera message kept undecoded until a row needs it."""

    def __init__(self, msg, size):
        self.msg, self.size, self._rgb = msg, size, None

    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            m = self.msg
            rgb = (image_to_rgb(m.encoding, m.height, m.width, m.step, bool(m.is_bigendian), m.data)
                   if hasattr(m, "encoding") else compressed_to_rgb(m.format, m.data))
            self._rgb = np.ascontiguousarray(resize_rgb(rgb, self.size))
        return self._rgb


def _stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


@dataclass
class _Import:
    spec: BagSpec
    writer: LeRobotV3Writer | None = None
    report: dict = field(default_factory=lambda: {"episodes": 0, "rows": 0, "repeated": 0, "dropped": 0,
                                                  "stalls": 0, "bad_joint_states": 0})

    def __post_init__(self):
        self.sync = self.sampler = self.command = None
        self.instruction = self.spec.task or ""
        self.recording = False
        self.next_tick = self.last_frame = None

    # -- episodes ---------------------------------------------------------------------------------
    def _open(self, joint_names: list[str]) -> None:
        spec = self.spec
        if self.writer is None:
            self.joint_names = joint_names
            schema = Schema(spec.fps, {c: tuple(spec.image_size) for c in spec.cameras}, joint_names, joint_names)
            self.writer = LeRobotV3Writer(spec.out, schema, spec.robot_type, spec.codec)
        self.sync = ObservationSynchronizer(list(spec.cameras), self.joint_names, spec.sync_slop, spec.max_repeat_age,
                                            0.1)
        self.sync.set_instruction(self.instruction)

    def new_recording(self) -> None:
        """Another bag: its clock starts afresh (stamps may even repeat the last bag's), so does the replay."""
        self.end()
        self.sync = self.command = self.next_tick = self.last_frame = None

    def set_instruction(self, text: str) -> None:
        self.instruction = text.strip() or self.instruction
        if self.sync is not None:
            self.sync.set_instruction(self.instruction)

    def start(self) -> None:
        if self.recording:
            self.end()
        self.sampler = EpisodeSampler(self.spec.max_repeat_age)
        self.recording, self.next_tick = True, None

    def end(self) -> None:
        if not self.recording:
            return
        self.recording = False
        self.sampler.finish()
        counts = self.sampler.counts
        for key in ("repeated", "dropped", "stalls"):
            self.report[key] += getattr(counts, key)
        if counts.rows == 0:
            if self.writer is not None:
                self.writer.discard_episode()
            return
        self.writer.finalize_episode()
        self.report["episodes"] += 1
        self.report["rows"] += counts.rows

    # -- replay -----------------------------------------------------------------------------------
    def sensor_time(self, t: float) -> None:
        """Advance the dataset clock to header time ``t``: every tick up to it makes its rows."""
        if not self.recording or self.sync is None:
            return
        if self.next_tick is None:
            self.next_tick = t
        while self.next_tick <= t:
            now = self.next_tick
            self.next_tick += 1.0 / self.spec.fps
            obs, reason = self.sync.latest(now)
            rows = self.sampler.tick(now, obs, self.command, reason)
            if rows and self.writer.frames_in_episode == 0:
                self.writer.start_episode(self.instruction)     # the task: the instruction at its first row
            for row in rows:
                images = {c: img.rgb() for c, img in row.observation.images.items()}
                self.writer.add_frame(images, row.observation.state, row.action, row.observation.stamp,
                                      row.repeated)
            if self.sampler.stalled_reason:      # the episode ends at its last real observation
                self.end()
                self.start()
                return

    def on_frame(self, camera: str, msg) -> None:
        t = _stamp(msg)
        kind, _, value = self.spec.split.partition(":")
        if kind == "gap" and self.last_frame is not None and t - self.last_frame > float(value):
            self.end()
            self.start()
        self.last_frame = t
        if self.sync is not None:
            self.sync.add_frame(camera, t, _Frame(msg, tuple(self.spec.image_size)))
        self.sensor_time(t)

    def on_joint_state(self, msg) -> None:
        if self.sync is None:
            self._open(list(self.spec.joint_names or msg.name))
        try:
            self.sync.add_joint_state(_stamp(msg), msg.name, msg.position)
        except ValueError:
            self.report["bad_joint_states"] += 1
        self.sensor_time(_stamp(msg))

    def on_command(self, msg) -> None:
        if self.sync is None:
            return
        if hasattr(msg, "points"):
            if not msg.points:
                return
            names, positions = msg.joint_names, msg.points[0].positions
        else:
            names, positions = msg.name, msg.position
        pos = dict(zip(names, positions))
        if all(n in pos for n in self.joint_names):
            self.command = np.array([pos[n] for n in self.joint_names], np.float32)


def _replay(job: _Import, paths: list[Path]) -> None:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    spec = job.spec
    split_topic = spec.split.partition(":")[2] if spec.split.startswith("topic:") else None
    with AnyReader(paths, default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        wanted = dict({t: "camera" for t in spec.cameras.values()}, **{spec.joint_states: "joints",
                                                                      spec.command: "command"})
        missing = sorted(t for t in wanted if t not in topics)
        if missing:
            raise DatasetError(f"{', '.join(map(str, paths))}: no topic {missing}; the bag has {sorted(topics)}")
        for topic, msgtype in topics.items():
            expected = {"camera": IMAGE_TYPES, "joints": ("sensor_msgs/msg/JointState",),
                        "command": COMMAND_TYPES}.get(wanted.get(topic))
            if expected and msgtype not in expected:
                raise DatasetError(f"topic {topic} is {msgtype}; expected one of {expected}")
        camera_of = {t: c for c, t in spec.cameras.items()}
        extra = {t for t in (spec.instruction_topic, split_topic) if t}
        connections = [c for c in reader.connections if c.topic in wanted or c.topic in extra]
        job.new_recording()
        if split_topic is None:
            job.start()
        for connection, _, raw in reader.messages(connections=connections):
            topic = connection.topic
            if topic == split_topic:
                job.start()
                continue
            msg = reader.deserialize(raw, connection.msgtype)
            if topic == spec.instruction_topic:
                job.set_instruction(str(msg.data))
            elif topic in camera_of:
                job.on_frame(camera_of[topic], msg)
            elif topic == spec.joint_states:
                job.on_joint_state(msg)
            else:
                job.on_command(msg)
    job.end()


def import_bags(bags: list[str], spec: BagSpec) -> dict:
    if not (spec.split == "bag" or spec.split.startswith(("topic:", "gap:"))):
        raise ValueError(f"split must be bag, topic:<name> or gap:<seconds>, got {spec.split!r}")
    if not (spec.task or spec.instruction_topic):
        raise ValueError("every episode needs a task: give --task or --instruction-topic")
    start = time.perf_counter()
    job = _Import(spec)
    paths = [Path(b) for b in bags]
    for group in ([[p] for p in paths] if spec.split == "bag" else [paths]):
        _replay(job, group)
    if job.writer is None:
        raise DatasetError(f"no joint states on {spec.joint_states} in {bags}: nothing imported")
    if job.report["episodes"] == 0:
        why = job.sync.last_reason if job.instruction else f"no message on {spec.instruction_topic}"
        raise DatasetError(f"{bags}: no episode could be made (last reason: {why})")
    return dict(job.report, dataset=spec.out, total_episodes=job.writer.num_episodes, fps=spec.fps,
                seconds=round(time.perf_counter() - start, 1))
