"""`twinbrain-bench control`: control-loop timing of policy_node under continuous inference (JSON line).

* Tick period error of the control timer at each requested rate, p50/p99/max, while the tiny model
  runs inference continuously, in a thread of the node's process (policy_node's default: the model's
  Python competes with the callbacks for the GIL) and in its own process (``inference_process`` true).
* Camera stamp -> first setpoint that uses it, minus the model's compute, with 2 cameras at 640x480
  rgb8, split into: receive_sync (transport, conversion, synchronization), queue (waiting for the
  worker, i.e. behind the previous frame's inference), handoff (chunk into the executor) and
  tick_wait (until the next control tick, at most one period by design). node_overhead =
  receive_sync + handoff: what the node itself adds around the model.
* CPU time of the node's callback thread (receiving, converting, synchronizing) per synchronized
  observation, from the kernel's per-thread accounting: noisy hosts move wall-clock percentiles by 10x
  within an hour, this figure barely.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from std_msgs.msg import String

from ..graph import param_files
from ..nodes.policy_node import PolicyNode
from ..nodes.qos import LATCHED
from .stats import emit, percentiles_ms
from .synthetic import SyntheticSensors


def thread_cpu_seconds(tid: int) -> float:
    """User + system CPU seconds of one thread of this process (Linux /proc accounting)."""
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(rate_hz: float, seconds: float, width: int, height: int, tiny_base_dir: str,
             inference: str = "thread") -> dict:
    context = rclpy.Context()
    rclpy.init(context=context, args=["--ros-args", *[a for p in param_files() for a in ("--params-file", str(p))]])
    node = PolicyNode(context=context, parameter_overrides=[
        Parameter("control_rate_hz", value=float(rate_hz)), Parameter("tiny_base_dir", value=tiny_base_dir),
        Parameter("inference_process", value=inference == "process")])
    io = rclpy.create_node("bench_io", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    io_exec = SingleThreadedExecutor(context=context)
    io_exec.add_node(io)
    import threading
    callback_tid = []

    def spin_node():
        callback_tid.append(threading.get_native_id())
        executor.spin()

    threads = [threading.Thread(target=spin_node, daemon=True), threading.Thread(target=io_exec.spin, daemon=True)]
    for t in threads:
        t.start()
    sensors = SyntheticSensors(io, size=(height, width)).start()
    if os.environ.get("BENCH_NO_INSTRUCTION") is None:
        io.create_publisher(String, "/instruction", LATCHED).publish(String(data="pick up the red cube"))
    time.sleep(2.0)                     # warm-up: first inferences, allocator
    node.tick_errors.clear()
    node.stats["overhead"].clear()
    chunks0, frames0, cpu0 = node.stats["chunks"], node.inputs.frames, thread_cpu_seconds(callback_tid[0])
    time.sleep(seconds)
    observations = (node.inputs.frames - frames0) / len(node.sync.camera_names)
    record = {"rate_hz": rate_hz, "inference": inference, "ticks": len(node.tick_errors),
              "chunks": node.stats["chunks"] - chunks0,
              "callback_cpu_ms_per_observation": round(
                  (thread_cpu_seconds(callback_tid[0]) - cpu0) * 1e3 / max(observations, 1), 3)}
    record.update(percentiles_ms(np.abs(np.array(node.tick_errors)), "tick_error"))
    trace = list(node.stats["overhead"])
    if trace:
        parts = {k: np.array([t[k] for t in trace]) for k in trace[0]}
        node_overhead = parts["receive_sync"] + parts["handoff"]   # what the node adds around the model
        record.update(percentiles_ms(node_overhead, "node_overhead"))
        record.update(percentiles_ms(parts["total"] - parts["compute"], "stamp_to_command_excl_compute"))
        for key in ("receive_sync", "queue", "handoff", "tick_wait"):
            record.update({k: v for k, v in percentiles_ms(parts[key], key).items() if not k.endswith("max_ms")})
    lat = np.array(node.stats["latency"])
    record["inference_p50_ms"] = round(float(np.median(lat)) * 1e3, 2) if lat.size else None
    sensors.stop()
    executor.shutdown()
    io_exec.shutdown()
    node.destroy_node()
    io.destroy_node()
    rclpy.try_shutdown(context=context)
    return record


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="twinbrain-bench control", description=__doc__)
    p.add_argument("--rates", type=float, nargs="+", default=[100.0, 250.0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--inference", nargs="+", choices=("process", "thread"), default=["thread", "process"],
                   help="where the model runs: a thread of the node's process (policy_node's default), its own")
    args = p.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_once(r, args.seconds, args.width, args.height, str(Path(tmp) / "tiny-base"), where)
                for where in args.inference for r in args.rates]
    emit({"bench": "control", "cameras": 2, "image": f"{args.width}x{args.height} rgb8", "cpu_threads": os.cpu_count(),
          "runs": runs})
