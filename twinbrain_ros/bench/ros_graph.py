"""Real rclpy in-process: nodes under test + an io node that feeds sensors and records outputs (tests and
benchmarks)."""

from __future__ import annotations

import threading
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String

from ..graph import default_config, param_files
from ..nodes.qos import LATCHED
from .synthetic import SyntheticSensors

CONFIG = default_config()


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
    """Own rclpy context; each node added spins on an executor thread of its own, as if it were its own
    process (one node's slow callbacks never delay another's); ``feed`` publishes sensors like a robot."""

    def __init__(self, robot_file=CONFIG):
        self.context = rclpy.Context()
        args = ["--ros-args"]
        for path in param_files(robot_file):
            args += ["--params-file", str(path)]
        rclpy.init(context=self.context, args=args)
        self.executors, self._spins = [], []
        # The test's own node spins alone on one thread, so recorded messages keep their wire order.
        self.io = Node("test_io", context=self.context)
        self.io_executor = SingleThreadedExecutor(context=self.context)
        self.io_executor.add_node(self.io)
        self.nodes = []
        self.spin_error = None
        self._spin_io = threading.Thread(target=self._spin_forever, args=(self.io_executor,), daemon=True)
        self._spin_io.start()
        self.feed = None

    def _spin_forever(self, executor):
        try:
            executor.spin()
        except Exception as exc:   # noqa: BLE001 - a callback raised: keep it for the test to report
            self.spin_error = exc

    def add(self, node):
        self.nodes.append(node)
        executor = SingleThreadedExecutor(context=self.context)
        executor.add_node(node)
        spin = threading.Thread(target=self._spin_forever, args=(executor,), daemon=True)
        spin.start()
        self.executors.append(executor)
        self._spins.append(spin)
        return node

    def remove(self, node):
        """Stop a node's executor, then destroy the node (a node killed and restarted in a test)."""
        i = self.nodes.index(node)
        executor, spin = self.executors.pop(i), self._spins.pop(i)
        self.nodes.pop(i)
        executor.shutdown(timeout_sec=2)
        spin.join(timeout=2)
        node.destroy_node()

    def record(self, msg_type, topic, qos=1000):
        """Deep reader history: a slow test executor must not drop samples the checks difference."""
        rec = Recorder()
        self.io.create_subscription(msg_type, topic, rec, qos)
        return rec

    def publish_instruction(self, text, topic="/instruction"):
        if not hasattr(self, "_instr_pub"):
            self._instr_pub = self.io.create_publisher(String, topic, LATCHED)
        self._instr_pub.publish(String(data=text))

    def start_feed(self, **kwargs):
        self.feed = SyntheticSensors(self.io, **kwargs).start()
        self.frozen_cameras = self.feed.frozen_cameras

    def stop_feed(self):
        self.feed.stop()

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

    def call(self, srv_type, name, request=None, timeout=10.0, attempts=5):
        client = self.client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
        for _ in range(attempts):
            future = client.call_async(request if request is not None else srv_type.Request())
            if self.wait_for(future.done, timeout / attempts):
                return future.result()
            client.remove_pending_request(future)
        raise AssertionError(f"service {name} did not answer")

    def close(self):
        if self.feed is not None:
            self.feed.stop()
        for node in self.nodes:
            node.destroy_node()
        for executor in self.executors:
            executor.shutdown(timeout_sec=2)
        self.io_executor.shutdown(timeout_sec=2)
        self.io.destroy_node()
        rclpy.try_shutdown(context=self.context)
        for spin in self._spins:
            spin.join(timeout=2)
        self._spin_io.join(timeout=2)
