"""Entry-point helper: init rclpy, build the node (a parameter error exits with one clear message),
spin it on a multi-threaded executor, shut down cleanly on Ctrl-C / SIGTERM."""

from __future__ import annotations

import signal
import sys

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor


def run_node(node_class, args=None, threads: int = 4) -> None:
    rclpy.init(args=args)
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    try:
        node = node_class()
    except (ValueError, FileNotFoundError) as exc:
        print(f"[{node_class.__name__}] cannot start: {exc}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        sys.exit(2)
    executor = MultiThreadedExecutor(num_threads=threads)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
