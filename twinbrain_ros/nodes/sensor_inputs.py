"""Camera + joint-state subscriptions feeding an ObservationSynchronizer — the one input path of every
node that needs synchronized observations (policy_node, recorder_node).

Raw images are subscribed raw: the callback gets the serialized CDR bytes and the pixels are a numpy
view on them (runtime/images.py ``image_cdr_fields``), instead of rclpy building a Python message and
copying 0.9 MB into it for every 640x480 frame (`twinbrain-bench control` reports the callback
thread's CPU time per observation)."""

from __future__ import annotations

from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState

from ..runtime.images import image_cdr_fields, image_to_rgb, resize_rgb
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
            compressed = topic.rstrip("/").endswith("compressed")
            callback = (lambda m, c=camera: self._on_image(c, m)) if compressed else \
                (lambda b, c=camera: self._on_raw_image(c, b))
            self.subscriptions.append(node.create_subscription(
                CompressedImage if compressed else Image, topic, callback, qos_profile_sensor_data,
                callback_group=callback_group, raw=not compressed))
        self.subscriptions.append(node.create_subscription(
            JointState, joint_states_topic, self._on_joint_state, qos_profile_sensor_data,
            callback_group=callback_group))

    def _on_raw_image(self, camera: str, buf: bytes) -> None:
        arrival = self.node.get_clock().now().nanoseconds * 1e-9   # before decoding: the age the link gave it
        try:
            stamp, fields = image_cdr_fields(buf)
            rgb = image_to_rgb(**fields)
        except ValueError as exc:
            self._bad_frame(camera, exc)
            return
        self._add_frame(camera, stamp, rgb, arrival)

    def _on_image(self, camera: str, msg) -> None:
        arrival = self.node.get_clock().now().nanoseconds * 1e-9
        try:
            rgb = image_msg_to_rgb(msg)
        except ValueError as exc:
            self._bad_frame(camera, exc)
            return
        self._add_frame(camera, stamp_to_sec(msg.header.stamp), rgb, arrival)

    def _bad_frame(self, camera: str, exc: Exception) -> None:
        self.bad_frames += 1
        self.log("warn", f"camera:{camera}", f"camera {camera}: {exc}")

    def _add_frame(self, camera: str, stamp: float, rgb, arrival: float) -> None:
        if self.frame_size is not None:
            rgb = resize_rgb(rgb, self.frame_size)
        with self.lock:
            self.frames += 1
            obs = self.sync.add_frame(camera, stamp, rgb, arrival)
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
