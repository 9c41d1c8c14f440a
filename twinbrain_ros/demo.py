"""`make demo`: the embedded default. Starts sim + policy + safety (the same graph and YAML as
`ros2 launch twinbrain_ros arm.launch.py use_sim:=true`, through the pip-only runner), watches it for
``--seconds`` headless and writes to ``--out``. The policy is the checkpoint shipped in
``twinbrain_ros/checkpoints/sim_touch`` (trained by `twinbrain-bench closed-loop --task touch`; its
provenance.json says how, and what it scored) unless ``--checkpoint`` names another or
``--random-weights`` asks for the untrained tiny preset. ``--instruction "touch the red cube"``: the
task (the sim stages it and checks its success). Without it: the checkpoint's own task (its
provenance.json ``demo_instruction``), else the one the sim draws from ``sim_arm.seed``.

  demo.mp4          front camera with the instruction, the task's success and the per-frame inference
                    latency overlaid
  joints.png        commanded (safety output) vs. measured joint positions
  latency_hist.png  inference latency histogram (observation stamp -> chunk published)
  summary.json      camera / joint / command rates, inference p50/p99, safety interventions, success
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from .cli import running_graph

SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "sim_touch"


class GraphRecorder:
    """A plain rclpy node that records what a person would watch."""

    def __init__(self):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Bool, String
        from trajectory_msgs.msg import JointTrajectory

        from .msg import ActionChunk
        from .nodes.qos import LATCHED

        rclpy.init()
        self.node = rclpy.create_node("demo_recorder")
        self.lock = threading.Lock()
        self.frames, self.joints, self.commands, self.setpoints, self.chunks = [], [], [], [], []
        self.diagnostics, self.instruction = {}, ""
        self.succeeded_at: float | None = None
        self.started_at = 0.0
        self.recording = False
        n = self.node
        n.create_subscription(Image, "/camera/front/image_raw", self._on_image, qos_profile_sensor_data)
        n.create_subscription(JointState, "/joint_states", self._on_joints, qos_profile_sensor_data)
        n.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", self._on_command, 1000)
        n.create_subscription(JointTrajectory, "/twinbrain/joint_command", self._on_setpoint, 1000)
        n.create_subscription(ActionChunk, "/policy_node/chunk", self._on_chunk, 100)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 100)
        n.create_subscription(String, "/instruction", lambda m: setattr(self, "instruction", m.data), LATCHED)
        n.create_subscription(Bool, "/sim_arm/success", self._on_success, LATCHED)
        self._instruction_pub = n.create_publisher(String, "/instruction", LATCHED)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(n)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def now(self):
        return time.monotonic()

    def instruct(self, text: str) -> None:
        """Publish the task's words (latched), as `twinbrain-ros instruct` does."""
        from std_msgs.msg import String  # rclpy stays out of module import time, as in __init__
        self._instruction_pub.publish(String(data=text))

    def _on_success(self, m):
        if self.recording and m.data and self.succeeded_at is None:
            self.succeeded_at = self.now()

    def _on_image(self, m):
        if self.recording:
            rgb = np.frombuffer(m.data, np.uint8).reshape(m.height, m.width, 3).copy()
            with self.lock:
                self.frames.append((self.now(), rgb, self.instruction))

    def _on_joints(self, m):
        if self.recording:
            with self.lock:
                self.joints.append((self.now(), np.array(m.position)))

    def _on_command(self, m):
        with self.lock:
            self.commands.append((self.now(), np.array(m.points[0].positions)))

    def _on_setpoint(self, m):
        with self.lock:
            self.setpoints.append(self.now())

    def _on_chunk(self, m):
        stamp = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
        with self.lock:
            self.chunks.append((self.now(), time.time() - stamp))   # wall clock: stamps are ROS (system) time

    def _on_diag(self, m):
        for s in m.status:
            self.diagnostics[s.name] = {kv.key: kv.value for kv in s.values}

    def close(self):
        import rclpy
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()


def write_video(path: Path, frames, chunks, succeeded_at: float | None, fps: float = 30.0) -> None:
    import av
    import cv2

    container = av.open(str(path), mode="w")
    h, w = frames[0][1].shape[:2]
    scale = max(1, 480 // h)
    stream = container.add_stream("libx264", rate=int(round(fps)))
    stream.width, stream.height, stream.pix_fmt = w * scale, h * scale, "yuv420p"
    chunk_times = np.array([c[0] for c in chunks]) if chunks else np.zeros(0)
    t0 = frames[0][0]
    for t, rgb, instruction in frames:
        img = cv2.resize(rgb, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
        k = int(np.searchsorted(chunk_times, t, side="right")) - 1
        latency = f"{chunks[k][1] * 1e3:.0f} ms" if k >= 0 else "-"
        done = succeeded_at is not None and t >= succeeded_at
        task = f"task: SUCCESS at {succeeded_at - t0:.1f} s" if done else "task: not done"
        lines = [instruction or "(no instruction)", f"t={t - t0:5.1f}s  inference {latency}", task]
        for i, text in enumerate(lines):
            cv2.putText(img, text, (8, 22 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(img, text, (8, 22 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def write_plots(out: Path, joints, commands, chunks, names) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = joints[0][0]
    jt, jq = np.array([j[0] - t0 for j in joints]), np.stack([j[1] for j in joints])
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 1.6 * len(names)), sharex=True)
    if commands:
        ct, cq = np.array([c[0] - t0 for c in commands]), np.stack([c[1] for c in commands])
    for i, ax in enumerate(axes):
        ax.plot(jt, jq[:, i], label="measured", lw=1.2)
        if commands:
            ax.plot(ct, cq[:, i], "--", label="commanded (safety output)", lw=1.0)
        ax.set_ylabel(names[i], fontsize=8)
    axes[0].legend(loc="upper right", fontsize=7)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle("sim arm: commanded vs. measured joint positions")
    fig.tight_layout()
    fig.savefig(out / "joints.png", dpi=90)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(np.array([c[1] for c in chunks]) * 1e3, bins=30)
    ax.set_xlabel("observation stamp -> action chunk published (ms)")
    ax.set_ylabel("chunks")
    ax.set_title("inference latency (tiny model, CPU)" if chunks else "no chunks")
    fig.tight_layout()
    fig.savefig(out / "latency_hist.png", dpi=90)
    plt.close(fig)


def checkpoint_instruction(checkpoint: str) -> str:
    """The task a checkpoint was trained for, if its provenance.json says (``demo_instruction``)."""
    path = Path(checkpoint) / "provenance.json" if checkpoint else None
    return json.loads(path.read_text()).get("demo_instruction", "") if path and path.is_file() else ""


def demo_config(instruction: str, out: Path) -> Path:
    """The default configuration with the sim staging the task ``instruction`` names (the demo publishes the
    words themselves); SystemExit if the sim has no such task."""
    from .graph import load_config, section_params
    from .sim.tasks import PHRASINGS, parse_instruction

    task = parse_instruction(instruction)
    if task is None:
        examples = "; ".join(f.format(c="red", d="left") for f in (PHRASINGS["touch"][0], PHRASINGS["pick"][0],
                                                                   PHRASINGS["push"][0]))
        raise SystemExit(f"--instruction {instruction!r} names no sim task; e.g. {examples} "
                         "(any of red / green / blue; twinbrain_ros/sim/tasks.py lists every phrasing)")
    config = load_config()
    spec = f"{task.name}:{task.cube}" + (f":{task.direction}" if task.direction else "")
    section_params(config, "sim_arm").update(task=spec, publish_instruction=False)
    path = out / "demo_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="twinbrain-demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/demo")
    p.add_argument("--checkpoint", default="", help=f"default: the shipped {SHIPPED_CHECKPOINT.name} checkpoint")
    p.add_argument("--random-weights", action="store_true", help="the untrained tiny preset instead")
    p.add_argument("--instruction", default="", help='e.g. "touch the red cube" (sim/tasks.py: touch / pick / '
                   'push x red / green / blue)')
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--startup-timeout", type=float, default=180.0)
    args = p.parse_args(argv)
    if args.random_weights and args.checkpoint:
        p.error("--random-weights and --checkpoint exclude each other")
    checkpoint = "" if args.random_weights else (args.checkpoint or str(SHIPPED_CHECKPOINT))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    instruction = args.instruction or checkpoint_instruction(checkpoint)
    config = demo_config(instruction, out) if instruction else None
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(150, 230)))   # never mix with another graph

    with running_graph(out / "graph.log", use_sim=True, checkpoint=checkpoint, config=config) as graph:
        rec = GraphRecorder()
        if instruction:
            rec.instruct(instruction)
        try:
            print(f"starting sim + policy + safety (log: {out / 'graph.log'}) ...", flush=True)
            deadline = time.monotonic() + args.startup_timeout
            while not rec.commands and time.monotonic() < deadline and graph.poll() is None:
                time.sleep(0.2)
            if not rec.commands:
                raise SystemExit(f"the graph produced no command within {args.startup_timeout:.0f} s; "
                                 f"see {out / 'graph.log'}")
            print(f"commands flowing; recording {args.seconds:.0f} s ...", flush=True)
            with rec.lock:
                rec.commands.clear(), rec.setpoints.clear(), rec.chunks.clear()
            rec.started_at, rec.recording = rec.now(), True
            time.sleep(args.seconds)
            rec.recording = False
            diagnostics = dict(rec.diagnostics)
        finally:
            rec.close()

    from .sim.arm_sim import ARM_JOINTS

    seconds = args.seconds
    latencies = np.array([c[1] for c in rec.chunks]) * 1e3
    safety = diagnostics.get("twinbrain: safety", {})
    summary = {
        "seconds": seconds, "instruction": rec.instruction,
        "camera_hz": round(len(rec.frames) / seconds, 1), "joint_state_hz": round(len(rec.joints) / seconds, 1),
        "policy_setpoint_hz": round(len(rec.setpoints) / seconds, 1),
        "controller_command_hz": round(len(rec.commands) / seconds, 1),
        "chunks": len(rec.chunks),
        "inference_p50_ms": round(float(np.percentile(latencies, 50)), 1) if latencies.size else None,
        "inference_p99_ms": round(float(np.percentile(latencies, 99)), 1) if latencies.size else None,
        "safety_interventions": {k.split(".", 1)[1]: int(v) for k,
                                 v in safety.items() if k.startswith("interventions.")},
        "policy_rejected_chunks": diagnostics.get("twinbrain: policy", {}).get("rejected_chunks"),
        "task_success": rec.succeeded_at is not None,
        "task_success_after_s": None if rec.succeeded_at is None else round(rec.succeeded_at - rec.started_at, 1),
        "model": checkpoint or "tiny random weights (untrained: expect aimless, safe motion)",
    }
    if rec.frames:
        write_video(out / "demo.mp4", rec.frames, rec.chunks, rec.succeeded_at)
    if rec.joints:
        write_plots(out, rec.joints, rec.commands, rec.chunks, ARM_JOINTS)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    print(f"wrote {out}/demo.mp4, joints.png, latency_hist.png, summary.json")


if __name__ == "__main__":
    main()
