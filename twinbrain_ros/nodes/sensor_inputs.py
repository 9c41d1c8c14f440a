"""Camera + joint-state subscriptions feeding an ObservationSynchronizer — the one input path of every
node that needs synchronized observations (policy_node, recorder_node)."""

from __future__ import annotations

from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState

from ..runtime.images import resize_rgb
from ..runtime.synchronizer import ObservationSynchronizer
from .ros_convert import image_msg_to_rgb, stamp_to_sec


class SensorInputs:
    """Subscribes each camera (Image, or CompressedImage for topics ending in /compressed) and joint
    states with sensor-data QoS, converts, and adds them to ``sync`` under ``lock``. ``frame_size``
    (height, width) resizes frames on arrival; ``on_observation`` runs, still under the lock, whenever a
    frame completes a synchronized observation. Bad messages are counted and logged, never raised."""

    def __init__(self, node, sync: ObservationSynchronizer, lock, camera_topics: list[str], joint_states_topic: str,
                 log, frame_size: tuple[int, int] | None = None, on_observation=None, callback_group=None):
        self.node, self.sync, self.lock, self.log = node, sync, lock, log
        self.frame_size, self.on_observation = frame_size, on_observation
        self.frames = self.bad_frames = 0
        self.subscriptions = []   # the owner destroys them (a lifecycle cleanup)
        for camera, topic in zip(sync.camera_names, camera_topics):
            msg_type = CompressedImage if topic.rstrip("/").endswith("compressed") else Image
            self.subscriptions.append(node.create_subscription(
                msg_type, topic, lambda m, c=camera: self._on_image(c, m), qos_profile_sensor_data,
                callback_group=callback_group))
        self.subscriptions.append(node.create_subscription(
            JointState, joint_states_topic, self._on_joint_state, qos_profile_sensor_data,
            callback_group=callback_group))

    def _on_image(self, camera: str, msg) -> None:
        arrival = self.node.get_clock().now().nanoseconds * 1e-9   # before decoding: the age the link gave it
        try:
            rgb = image_msg_to_rgb(msg)
        except ValueError as exc:
            self.bad_frames += 1
            self.log("warn", f"camera:{camera}", f"camera {camera}: {exc}")
            return
        if self.frame_size is not None:
            rgb = resize_rgb(rgb, self.frame_size)
        with self.lock:
            self.frames += 1
            obs = self.sync.add_frame(camera, stamp_to_sec(msg.header.stamp), rgb, arrival)
            if obs is not None and self.on_observation is not None:
                self.on_observation(obs)

    def _on_joint_state(self, msg: JointState) -> None:
        # Drivers that leave the stamp at zero get the receive time.
        stamp = stamp_to_sec(msg.header.stamp) or self.node.get_clock().now().nanoseconds * 1e-9
        try:
            with self.lock:
                self.sync.add_joint_state(stamp, msg.name, msg.position)
        except ValueError as exc:
            self.log("warn", "joint_states", f"joint_states: {exc}")
