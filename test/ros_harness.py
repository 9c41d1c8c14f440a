"""Real rclpy in-process: nodes under test + a test node that feeds sensors and records outputs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from twinbrain_ros.nodes.ros_convert import sec_to_stamp

CONFIG = Path(__file__).resolve().parent.parent / "config" / "arm.yaml"


class Recorder:
    def __init__(self):
        self.messages, self.times = [], []
        self.lock = threading.Lock()

    def __call__(self, msg):
        with self.lock:
            self.messages.append(msg)
            self.times.append(time.monotonic())

    def count(self):
        with self.lock:
            return len(self.messages)

    def since(self, t):
        with self.lock:
            return [m for m, s in zip(self.messages, self.times) if s >= t]


class RosGraph:
    """Own rclpy context + executor thread; ``feed`` publishes cameras and joint states like a robot."""

    def __init__(self, params_file=CONFIG):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, args=["--ros-args", "--params-file", str(params_file)])
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        # The test's own node spins alone on one thread, so recorded messages keep their wire order.
        self.io = Node("test_io", context=self.context)
        self.io_executor = SingleThreadedExecutor(context=self.context)
        self.io_executor.add_node(self.io)
        self.nodes = []
        self.spin_error = None
        self._spin = threading.Thread(target=self._spin_forever, args=(self.executor,), daemon=True)
        self._spin.start()
        self._spin_io = threading.Thread(target=self._spin_forever, args=(self.io_executor,), daemon=True)
        self._spin_io.start()
        self._feeding = threading.Event()
        self.frozen_cameras = threading.Event()
        self.joint_positions = np.zeros(7)

    def _spin_forever(self, executor):
        try:
            executor.spin()
        except Exception as exc:   # noqa: BLE001 - a callback raised: keep it for the test to report
            self.spin_error = exc

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def record(self, msg_type, topic, qos=1000):
        """Deep reader history: a slow test executor must not drop samples the checks difference."""
        rec = Recorder()
        self.io.create_subscription(msg_type, topic, rec, qos)
        return rec

    def publish_instruction(self, text, topic="/instruction"):
        if not hasattr(self, "_instr_pub"):
            qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self._instr_pub = self.io.create_publisher(String, topic, qos)
        self._instr_pub.publish(String(data=text))

    def start_feed(self, cameras=("front", "wrist"), size=(48, 64), camera_hz=30.0, joint_hz=100.0,
                   joint_names=("joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper")):
        cam_pubs = {c: self.io.create_publisher(Image, f"/camera/{c}/image_raw", qos_profile_sensor_data) for c in cameras}
        js_pub = self.io.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        self._feeding.set()

        def loop():
            next_cam = time.monotonic()
            while self._feeding.is_set():
                now_ns = self.io.get_clock().now().nanoseconds
                js = JointState(name=list(joint_names), position=[float(x) for x in self.joint_positions])
                js.header.stamp = sec_to_stamp(now_ns * 1e-9)
                js_pub.publish(js)
                if time.monotonic() >= next_cam and not self.frozen_cameras.is_set():
                    next_cam += 1.0 / camera_hz
                    stamp = sec_to_stamp(now_ns * 1e-9)
                    for pub in cam_pubs.values():
                        msg = Image(height=size[0], width=size[1], encoding="rgb8", step=size[1] * 3, data=frame.tobytes())
                        msg.header.stamp = stamp
                        pub.publish(msg)
                time.sleep(1.0 / joint_hz)

        self._feeder = threading.Thread(target=loop, daemon=True)
        self._feeder.start()

    def wait_for(self, predicate, timeout=20.0, poll=0.02):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.spin_error is not None and self.context.ok():
                raise AssertionError(f"a callback raised: {self.spin_error!r}") from self.spin_error
            if predicate():
                return True
            time.sleep(poll)
        return False

    def client(self, srv_type, name):
        """Create clients early: a request sent before the server's reply writer has matched the
        client's reader can be lost (a known DDS discovery race), so calls also retry."""
        if not hasattr(self, "_clients"):
            self._clients = {}
        if name not in self._clients:
            self._clients[name] = self.io.create_client(srv_type, name)
        return self._clients[name]

    def call(self, srv_type, name, timeout=10.0, attempts=5):
        client = self.client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
        for _ in range(attempts):
            future = client.call_async(srv_type.Request())
            if self.wait_for(future.done, timeout / attempts):
                return future.result()
            client.remove_pending_request(future)
        raise AssertionError(f"service {name} did not answer")

    def close(self):
        self._feeding.clear()
        if hasattr(self, "_feeder"):
            self._feeder.join(timeout=2)
        for node in self.nodes:
            node.destroy_node()
        self.executor.shutdown(timeout_sec=2)
        self.io_executor.shutdown(timeout_sec=2)
        self.io.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._spin.join(timeout=2)
        self._spin_io.join(timeout=2)
