"""A stand-in robot for tests and benchmarks: publishes camera frames and joint states like a driver
(sensor-data QoS, capture stamps) from its own thread, so timing does not depend on any executor. With
an ``arm`` (bench/fake_arm.py) the joint states follow the controller topic; ``stamp_delay`` stamps
them that much in the past (late delivery), ``frozen_joints`` stops them (a stalled driver). For the
recorder: ``camera_jitter`` (s) moves each frame's stamp by up to that much, ``drop_frames`` (frame
numbers) leaves frames out, and ``leader`` also publishes the joint positions as a leader arm would."""

from __future__ import annotations

import array
import threading
import time

import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from ..nodes.ros_convert import duration_to_sec, sec_to_stamp, stamp_to_sec

DEFAULT_JOINTS = ("joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper")


class SyntheticSensors:
    def __init__(self, node: Node, cameras=("front", "wrist"), size=(48, 64), camera_hz=30.0, joint_hz=100.0,
                 joint_names=DEFAULT_JOINTS, seed: int = 0, arm=None, namespace: str = "", camera_jitter: float = 0.0,
                 drop_frames=(), leader: bool = False):
        ns = f"/{namespace.strip('/')}" if namespace.strip("/") else ""
        self.node, self.size, self.camera_hz, self.joint_hz = node, size, camera_hz, joint_hz
        self.joint_names = list(joint_names)
        self.joint_positions = np.zeros(len(joint_names))
        self.cam_pubs = {c: node.create_publisher(Image, f"{ns}/camera/{c}/image_raw", qos_profile_sensor_data)
                         for c in cameras}
        self.js_pub = node.create_publisher(JointState, f"{ns}/joint_states", qos_profile_sensor_data)
        self.leader_pub = node.create_publisher(JointState, f"{ns}/leader/joint_states", qos_profile_sensor_data) \
            if leader else None
        self.camera_jitter, self.drop_frames, self.frame_number = camera_jitter, set(drop_frames), 0
        self.frames_published = 0
        self._rng = np.random.default_rng(seed)
        frame = array.array("B", np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8).tobytes())
        # Built once from an array.array (bytes are checked element by element: ~9 ms per 640x480 frame);
        # only the stamp changes per frame.
        self.images = {c: Image(height=size[0], width=size[1], encoding="rgb8", step=size[1] * 3, data=frame)
                       for c in cameras}
        self.frozen_cameras = threading.Event()   # set: cameras stop (a frozen driver)
        self.frozen_joints = threading.Event()    # set: joint states stop (a stalled driver)
        self.stamp_delay = 0.0
        self.arm = arm
        if arm is not None:
            node.create_subscription(JointTrajectory, f"{ns}/arm_controller/joint_trajectory", self._on_trajectory, 10)
        self.running = threading.Event()
        self.thread = None

    def start(self) -> "SyntheticSensors":
        self.running.set()
        self.thread = threading.Thread(target=self._loop, name="synthetic-sensors", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.running.clear()
        if self.thread is not None:
            self.thread.join(timeout=2.0)

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        self.arm.command(msg.joint_names, stamp_to_sec(msg.header.stamp),
                         [duration_to_sec(p.time_from_start) for p in msg.points],
                         [list(p.positions) for p in msg.points], self.node.get_clock().now().nanoseconds * 1e-9)

    def _loop(self) -> None:
        next_cam = time.monotonic()
        while self.running.is_set():
            now = self.node.get_clock().now().nanoseconds * 1e-9
            stamp = sec_to_stamp(now)
            if self.arm is not None:
                self.joint_positions = self.arm.measure(now)
            if not self.frozen_joints.is_set():
                js = JointState(name=self.joint_names, position=[float(x) for x in self.joint_positions])
                js.header.stamp = sec_to_stamp(now - self.stamp_delay)
                self.js_pub.publish(js)
                if self.leader_pub is not None:
                    self.leader_pub.publish(js)
            if time.monotonic() >= next_cam and not self.frozen_cameras.is_set():
                next_cam += 1.0 / self.camera_hz
                self.frame_number += 1
                if self.frame_number not in self.drop_frames:
                    jitter = self._rng.uniform(-self.camera_jitter, self.camera_jitter) if self.camera_jitter else 0.0
                    for cam, pub in self.cam_pubs.items():
                        self.images[cam].header.stamp = sec_to_stamp(now + jitter) if jitter else stamp
                        pub.publish(self.images[cam])
                    self.frames_published += 1
            time.sleep(1.0 / self.joint_hz)
