"""recorder_node: teleop demonstrations -> LeRobot v3.0, episode by episode.

Observations come from the same synchronizer the policy uses (cameras matched within a slop, joint
state interpolated at the frame stamp); the action is the teleoperator's latest leader-arm command
(JointState or JointTrajectory). A sampling thread makes one row per 1/fps, on lerobot's time grid
(row k at k / fps), by the rule of ``data/episode_sampler.py``: a row whose observation did not change
since the previous row is flagged ``frame_repeated`` and counted, and a camera that stalls for longer
than ``max_observation_age`` ends the episode at its last real observation (saved, WARN on
/diagnostics) and recording goes on in a new episode — rows and video frames never drift apart.
The task is the current instruction. Services ``~/start``, ``~/stop`` (finalize) and ``~/discard``;
state on /diagnostics. A write error (full disk, unwritable folder) stops recording with ERROR and
leaves every finalized episode intact.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ..data.episode_sampler import EpisodeSampler
from ..data.lerobot_v3 import DatasetError, Schema
from ..data.lerobot_writer import LeRobotV3Writer
from ..runtime.images import resize_rgb
from ..runtime.synchronizer import ObservationSynchronizer
from .diagnostics import ThrottledLog, diagnostic_array
from .params import ROBOT, Param, declare, non_empty, one_of, positive
from .qos import LATCHED
from .ros_convert import sec_to_stamp
from .sensor_inputs import SensorInputs

PARAMS = [p for p in ROBOT if p.name == "joint_names"] + [
    Param("camera_names", ["front", "wrist"], "Cameras to record, in order.", non_empty),
    Param("camera_topics", ["camera/front/image_raw", "camera/wrist/image_raw"], "One topic per camera.", non_empty),
    Param("joint_states_topic", "joint_states", "Measured joint states (observation.state)."),
    Param("instruction_topic", "instruction", "The episode's task (latched String)."),
    Param("command_topic", "leader/joint_states", "The teleoperator's command (action)."),
    Param("command_type", "joint_state", "joint_state (leader arm) or joint_trajectory.",
          one_of("joint_state", "joint_trajectory")),
    Param("dataset_dir", "datasets/teleop", "LeRobot v3.0 dataset folder (created or appended to)."),
    Param("fps", 10, "Frames per second recorded.", positive),
    Param("image_width", 224, "Frames are stored at this size (resized if the camera differs).", positive),
    Param("image_height", 224, "Frames are stored at this size.", positive),
    Param("codec", "h264", "h264 (fast) or av1.", one_of("h264", "av1")),
    Param("robot_type", "twinbrain_arm", "robot_type in meta/info.json."),
    Param("sync_slop", 0.02, "Max stamp difference between cameras (s).", positive),
    Param("max_observation_age", 0.3, "A row may repeat an observation at most this old; a longer camera stall ends "
          "the episode there and recording goes on in a new one (s).", positive),
]


class RecorderNode(Node):
    def __init__(self, **kwargs):
        self._stop = threading.Event()   # first: destroy_node may run on a half-built node
        super().__init__("recorder_node", **kwargs)
        self.p = p = declare(self, PARAMS)
        self.log = ThrottledLog(self.get_logger())
        names = p["joint_names"]
        self.sync = ObservationSynchronizer(p["camera_names"], names, p["sync_slop"], p["max_observation_age"], 0.1)
        size = self.frame_size = (p["image_height"], p["image_width"])
        self.schema = Schema(p["fps"], {c: size for c in p["camera_names"]}, names, names)
        dataset_dir = Path(p["dataset_dir"]).expanduser().resolve()   # never relative to wherever launch ran
        self.get_logger().info(f"recording into {dataset_dir}")
        self.writer = LeRobotV3Writer(dataset_dir, self.schema, p["robot_type"], p["codec"])
        self.lock = threading.Lock()           # synchronizer + latest command (sensor callbacks)
        self.episode_lock = threading.Lock()   # writer, recording state, counters: video encoding and file I/O
        #                                        happen under this one only, so sensor callbacks never wait on them
        self.command: np.ndarray | None = None
        self.recording = False
        self.error = ""
        self.sampler = EpisodeSampler(p["max_observation_age"])
        self.episodes_this_run = self.stalls = 0
        self.warning = ""     # the last camera stall (an episode ended early and recording went on)

        self.inputs = SensorInputs(self, self.sync, self.lock, p["camera_topics"], p["joint_states_topic"], self.log,
                                   frame_size=None)   # resized when a row uses the frame: 10 of 30 per second
        self.create_subscription(String, p["instruction_topic"], lambda m: self.sync.set_instruction(m.data), LATCHED)
        if p["command_type"] == "joint_state":
            self.create_subscription(JointState, p["command_topic"],
                                     lambda m: self._on_command(m.name, m.position), qos_profile_sensor_data)
        else:
            self.create_subscription(JointTrajectory, p["command_topic"],
                                     lambda m: m.points and self._on_command(m.joint_names, m.points[0].positions), 10)
        self.create_service(Trigger, "~/start", self._on_start)
        self.create_service(Trigger, "~/stop", self._on_stop)
        self.create_service(Trigger, "~/discard", self._on_discard)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self.thread = threading.Thread(target=self._sample_loop, name="recorder", daemon=True)
        self.thread.start()

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- inputs -------------------------------------------------------------------------------------
    def _on_command(self, names, positions) -> None:
        pos = dict(zip(names, positions))
        if all(n in pos for n in self.schema.action_names):
            with self.lock:
                self.command = np.array([pos[n] for n in self.schema.action_names], np.float32)

    # -- services -------------------------------------------------------------------------------------
    def _on_start(self, request, response):
        with self.episode_lock:
            if self.recording:
                response.success, response.message = False, "already recording; stop or discard first"
                return response
            self.warning = ""
            response.success, response.message = self._begin()
        return response

    def _begin(self) -> tuple[bool, str]:
        """Starts an episode with the current instruction as its task (episode_lock held)."""
        with self.lock:
            task = self.sync.instruction
        if not task:
            return False, "no instruction received: it is the episode's task"
        try:
            self.writer.start_episode(task)
        except DatasetError as exc:
            return False, str(exc)
        self.recording, self.error = True, ""
        self.sampler = EpisodeSampler(self.p["max_observation_age"])
        return True, f"recording episode {self.writer.num_episodes}: {task!r}"

    def _on_stop(self, request, response):
        with self.episode_lock:
            if not self.recording:
                response.success, response.message = False, "not recording"
                return response
            response.success, response.message = self._finalize()
        return response

    def _finalize(self) -> tuple[bool, str]:
        """Ends the episode being recorded (episode_lock held): saved unless it has no rows."""
        self.recording = False
        self.sampler.finish()
        counts = self.sampler.counts
        if counts.rows == 0:
            self.writer.discard_episode()
            return False, "no rows recorded (no synchronized observation and leader command): nothing saved"
        try:
            index = self.writer.finalize_episode()
        except (DatasetError, OSError) as exc:
            self.error = f"finalize failed: {exc}"
            self.writer.discard_episode()
            return False, self.error
        self.episodes_this_run += 1
        return True, (f"episode {index} saved ({counts.rows} rows, {counts.repeated} with a repeated observation, "
                      f"{counts.dropped} dropped)")

    def _on_discard(self, request, response):
        with self.episode_lock:
            was = self.recording
            self.recording = False
            self.writer.discard_episode()
        response.success, response.message = True, "episode discarded" if was else "not recording"
        return response

    # -- sampling -------------------------------------------------------------------------------------
    def _sample_loop(self) -> None:
        period = 1.0 / self.p["fps"]
        deadline = time.monotonic() + period
        while not self._stop.is_set() and self.context.ok():
            time.sleep(max(0.0, deadline - time.monotonic()))
            deadline += period
            with self.episode_lock:
                if self.recording:
                    self._sample()

    def _sample(self) -> None:
        now = self.now()
        with self.lock:
            obs, reason = self.sync.latest(now)
            command = None if self.command is None else self.command.copy()
        try:
            for row in self.sampler.tick(now, obs, command, reason):
                images = {c: resize_rgb(img, self.frame_size) for c, img in row.observation.images.items()}
                self.writer.add_frame(images, row.observation.state, row.action, row.observation.stamp, row.repeated)
        except (DatasetError, OSError) as exc:    # e.g. disk full: stop, keep what is finalized
            self.error = f"recording stopped: {exc}"
            self.recording = False
            self.writer.discard_episode()
            self.get_logger().error(self.error)
            return
        if self.sampler.stalled_reason:       # end the episode at its last real observation, go on in a new one
            reason = self.sampler.stalled_reason
            _, saved = self._finalize()
            self.stalls += 1
            began, started = self._begin()
            self.warning = f"camera stall, {reason}: {saved}; {started if began else 'not recording: ' + started}"
            self.get_logger().warn(self.warning)

    def _publish_diagnostics(self) -> None:
        level = "error" if self.error else "warn" if self.warning else "ok"
        values = dict(self.sampler.counts.as_dict(), recording=self.recording, dataset=str(self.writer.root),
                      episodes_this_run=self.episodes_this_run, episodes_total=self.writer.num_episodes,
                      camera_stalls=self.stalls, camera_frames=self.inputs.frames,
                      bad_camera_frames=self.inputs.bad_frames, task=self.sync.instruction or "")
        message = self.error or self.warning or ("recording" if self.recording else "idle")
        self.diag_pub.publish(diagnostic_array(sec_to_stamp(self.now()), "twinbrain: recorder", self.get_name(),
                                               level, message, values))

    def destroy_node(self):
        self._stop.set()
        if getattr(self, "thread", None) is not None and self.thread.is_alive():
            self.thread.join(timeout=5.0)
        return super().destroy_node()


def main(args=None):
    from .spin import run_node
    run_node(RecorderNode, args)


if __name__ == "__main__":
    main()
