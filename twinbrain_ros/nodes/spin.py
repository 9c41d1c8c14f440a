"""Entry-point helper: init rclpy, build the node (a parameter error exits with one clear message),
spin it, shut down cleanly on Ctrl-C / SIGTERM.

A SingleThreadedExecutor on purpose: rclpy's MultiThreadedExecutor, with subscriptions receiving
messages, stalled another Python thread of the process for up to 45 ms (p99 35 ms at 100 Hz, measured
here), against 0.4 ms with the single-threaded one. The heavy work (inference, the control loop) has
threads of its own, so callbacks only hand data over and one executor thread is plenty."""

from __future__ import annotations

import signal
import sys

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor


def run_node(node_class, args=None) -> None:
    rclpy.init(args=args)
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    try:
        node = node_class()
    except (ValueError, FileNotFoundError) as exc:
        print(f"[{node_class.__name__}] cannot start: {exc}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        sys.exit(2)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        if rclpy.ok():
            raise
        # Ctrl-C can land inside a message take while rclpy shuts down; nothing is lost by ending here.
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
