"""`twinbrain-bench recorder`: the ROS recorder as deployed (its own process, the default config) on
two 640x480 rgb8 cameras at 30 fps and a 100 Hz leader arm, recording a 10 Hz dataset for --seconds.

Prints one JSON line: camera frames published and received by the recorder while it records (the
difference: lost in transport), rows, rows with a repeated
observation, held-back rows dropped, camera stalls, video frames per camera vs rows for each episode
(from the files, as lerobot counts them), whether ``twinbrain-record check`` passes, and the
recorder's CPU (process CPU seconds / wall seconds, in cores; and CPU ms per camera frame published
while recording, which host noise barely moves). Targets: 0 dropped, rows = video frames.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from diagnostic_msgs.msg import DiagnosticArray
from std_srvs.srv import Trigger

from ..data.lerobot_check import problems
from ..data.lerobot_v3 import LeRobotV3Dataset
from ..graph import dds_environment, param_files
from .ros_graph import RosGraph
from .stats import emit


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")      # utime + stime


def run(seconds: float, size=(480, 640), camera_hz: float = 30.0, out: str | None = None,
        dds_profile: bool = True) -> dict:
    dataset = Path(out or tempfile.mkdtemp(prefix="twinbrain-recorder-")) / "dataset"
    if dds_profile:      # what the graph's nodes get (this process publishes the cameras)
        os.environ.update(dds_environment(os.environ))
    graph = RosGraph()
    diagnostics = graph.record(DiagnosticArray, "/diagnostics")
    dataset.parent.mkdir(parents=True, exist_ok=True)
    mine = dataset.parent / "recorder.yaml"     # last params file: the dataset folder of this run
    mine.write_text(yaml.safe_dump({"/**/recorder_node": {"ros__parameters": {"dataset_dir": str(dataset)}}}))
    files = [a for path in [*param_files(), mine] for a in ("--params-file", str(path))]
    proc = subprocess.Popen([sys.executable, "-m", "twinbrain_ros.nodes.recorder_node", "--ros-args",
                             "-r", "__node:=recorder_node", *files],
                            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        graph.publish_instruction("touch the green cube")
        graph.start_feed(size=size, camera_hz=camera_hz, leader=True)
        for name in ("start", "stop"):
            graph.client(Trigger, f"/recorder_node/{name}")
        end = time.monotonic() + 60
        while True:            # the recorder answers once it has discovered the instruction
            started = graph.call(Trigger, "/recorder_node/start")
            if started.success or time.monotonic() > end:
                break
            time.sleep(0.5)
        if not started.success:
            raise RuntimeError(f"recorder did not start: {started.message}")
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        # frames published vs received from here on: the recorder's next diagnostics, and the feed's count then
        graph.wait_for(lambda: _recorder_values(diagnostics, after=t0) is not None, 5.0)
        received_at_start = int((_recorder_values(diagnostics, after=t0) or {}).get("camera_frames", 0))
        published_at_start = graph.feed.frames_published * 2
        time.sleep(seconds)
        stopped = graph.call(Trigger, "/recorder_node/stop", timeout=30)
        wall, cpu = time.monotonic() - t0, _cpu_seconds(proc.pid) - cpu0
        graph.stop_feed()      # then the totals: every frame published vs every frame the recorder received
        published_total, stopped_at = graph.feed.frames_published * 2, time.monotonic()
        graph.wait_for(lambda: _recorder_values(diagnostics, after=stopped_at + 0.2) is not None, 5.0)
        values = _recorder_values(diagnostics, after=stopped_at + 0.2) or {}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        graph.close()
    if not stopped.success or not (dataset / "meta" / "info.json").exists():
        raise RuntimeError(f"recorder stop: {stopped.message}; its diagnostics: {values}")
    ds = LeRobotV3Dataset(dataset)
    episodes = [{"rows": ep["length"], **{k.rsplit(".", 1)[1]: len(ds.frame_times(ep, k)) for k in ds.video_keys}}
                for ep in ds.episodes]
    received = int(values.get("camera_frames", 0)) - received_at_start
    published = published_total - published_at_start
    return {"bench": "recorder", "seconds": round(wall, 1),
            "dds_profile": os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE", "Fast DDS defaults"),
            "cameras": 2, "camera_size": list(size),
            "camera_hz": camera_hz, "fps": ds.fps, "stop": stopped.message,
            "camera_frames_published": published, "camera_frames_received": received,
            "camera_frames_lost": published - received,
            "rows": int(values.get("rows", 0)), "repeated_rows": int(values.get("repeated", 0)),
            "dropped_rows": int(values.get("dropped", 0)), "camera_stalls": int(values.get("camera_stalls", 0)),
            "episodes": episodes, "rows_equal_video_frames": all(len(set(e.values())) == 1 for e in episodes),
            "check_problems": problems(dataset), "recorder_cpu_cores": round(cpu / wall, 3),
            "recorder_cpu_ms_per_camera_frame": round(1e3 * cpu / max(1, wall * camera_hz * 2), 3)}


def _recorder_values(recorder, after: float) -> dict | None:
    """The recorder's newest /diagnostics values published after ``after`` (monotonic)."""
    for msg, t in zip(reversed(recorder.messages), reversed(recorder.times)):
        if t < after:
            return None
        for status in msg.status:
            if status.name == "twinbrain: recorder":
                return {kv.key: kv.value for kv in status.values}
    return None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="twinbrain-bench recorder", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--camera-hz", type=float, default=30.0)
    p.add_argument("--out", default=None, help="where the dataset goes (default: a temporary folder)")
    p.add_argument("--dds-defaults", action="store_true",
                   help="Fast DDS's own defaults instead of config/fastdds.xml (to see what the profile changes)")
    args = p.parse_args(argv)
    emit(run(args.seconds, camera_hz=args.camera_hz, out=args.out, dds_profile=not args.dds_defaults))


if __name__ == "__main__":
    main()
