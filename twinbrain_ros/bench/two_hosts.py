"""`twinbrain-bench two-hosts`: the graph split across two hosts, under link faults. One JSON line.

Host "gpu" runs policy_node; host "robot" runs sim_arm, chunk_runner and safety_node (`twinbrain-ros up
--host gpu|robot`, config/two_hosts.yaml), each in its own network namespace, joined by the link of
bench/netns.py (delay ± jitter, loss, partition; bytes counted). A probe on each host records what it sees
(bench/two_hosts_probe.py). Per link condition, held for ``--seconds``:

* ``link_MBps``: bytes that crossed the link per second, each direction (cameras are JPEG);
* ``observation_age_at_policy_ms`` p50/p99: when inference started, how old its observation was
  (camera stamp -> the policy, across the link);
* ``chunks_per_s`` planned on the GPU host and accepted by the robot's chunk runner;
* safety interventions (SafetyStatus counters over the window) and ``violations`` of the limits in the
  controller outputs (bench/safety.violations; target 0);
* ``stale_setpoints``: setpoints sent while no chunk planned within ``max_chunk_age`` existed (target 0);
* ``task_success``: the sim's success detector. No trained checkpoint ships: with the tiny random weights
  (the default) it is expected to stay 0 — the plumbing is what is measured.

The partition condition also reports whether motion resumed after the link came back, and the largest
step between consecutive outputs around it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..graph import load_config, node_params
from .netns import LinkCondition, TwoHosts
from .stats import emit

CONDITIONS = {
    "clean": LinkCondition("clean"),
    "delay_20ms": LinkCondition("delay_20ms", delay=0.020, jitter=0.005),
    "delay_100ms": LinkCondition("delay_100ms", delay=0.100, jitter=0.020),
    "loss_5pct": LinkCondition("loss_5pct", loss=0.05),
    "partition_2s": LinkCondition("partition_2s", down=True),
}
PARTITION_S = 2.0
# SafetyStatus counters that count limiting, not interventions (left out of the per-kind deltas)
LIMIT_COUNTERS = {"limited", "position", "step", "velocity", "acceleration", "jerk", "braking"}


def read_events(path: Path) -> list[dict]:
    events = []
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        for line in f:
            with contextlib.suppress(json.JSONDecodeError):   # a line being written
                events.append(json.loads(line))
    return events


class SplitGraph:
    """The two hosts, their graphs and probes; ``events(host)`` reads what the probe recorded so far."""

    def __init__(self, hosts: TwoHosts, workdir: Path, checkpoint: str = ""):
        self.hosts, self.workdir = hosts, workdir
        self.env = hosts.host_env(ROS_DOMAIN_ID=str(random.randint(120, 200)), PYTHONUNBUFFERED="1")
        self.procs: list[subprocess.Popen] = []
        self.faults_at_start = False
        py = sys.executable
        for host in ("robot", "gpu"):   # probes first: they must see the first outputs
            self._start(host, [py, "-m", "twinbrain_ros.bench.two_hosts_probe", host, str(self.path(host))],
                        f"probe-{host}")
        self._start("robot", [py, "-m", "twinbrain_ros.cli", "up", "--host", "robot", "--use-sim"], "robot")
        self._start("gpu", [py, "-m", "twinbrain_ros.cli", "up", "--host", "gpu"]
                    + (["--checkpoint", checkpoint] if checkpoint else []), "gpu")

    def path(self, host: str) -> Path:
        return self.workdir / f"{host}.jsonl"

    def _start(self, host: str, argv: list[str], log: str) -> None:
        with open(self.workdir / f"{log}.log", "w") as out:
            # own process group: stop() ends every node the runner started, whatever happened to it
            self.procs.append(subprocess.Popen(self.hosts.command(host, argv), env=self.env, stdout=out,
                                               stderr=subprocess.STDOUT, start_new_session=True))

    def events(self, host: str) -> list[dict]:
        return read_events(self.path(host))

    def wait_for(self, predicate, timeout: float, poll: float = 0.5) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            dead = [p.args for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a process of the split graph exited: {dead}; logs in {self.workdir}")
            if predicate():
                return True
            time.sleep(poll)
        return False

    def moving(self) -> bool:
        """The robot side executes chunks: setpoints reach the probe and the safety node outputs."""
        kinds = {e["k"] for e in self.events("robot")[-400:]}
        return {"sp", "out"} <= kinds

    def executing(self) -> bool:
        return any(e["k"] == "sp" for e in self.events("robot")[-400:])

    def latched(self) -> bool:
        status = [e for e in self.events("robot") if e["k"] == "st"]
        return bool(status) and (status[-1]["fault"] or status[-1]["estop"])

    def release(self, timeout: float = 20.0) -> bool:
        """What an operator does after a fault: ``twinbrain-ros release`` on the robot host (granted only
        once the fault has cleared and the arm is at rest)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            done = subprocess.run(self.hosts.command("robot", [sys.executable, "-m", "twinbrain_ros.cli", "release"]),
                                  env=self.env, capture_output=True, text=True, timeout=30)
            if done.returncode == 0:
                return True
            time.sleep(1.0)
        return False

    def stop(self) -> None:
        for p in reversed(self.procs):    # graphs first (they stop their nodes), the probes last
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGINT)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)   # whatever of that group is left
            p.wait()


@contextlib.contextmanager
def split_graph(workdir: Path, checkpoint: str = "", seed: int = 0, start_timeout: float = 180.0):
    """The running split graph, moving, inside two fresh namespaces; everything is removed on exit."""
    with TwoHosts(seed=seed) as hosts:
        graph = SplitGraph(hosts, workdir, checkpoint)
        try:
            if not graph.wait_for(graph.executing, start_timeout):
                raise RuntimeError(f"the robot executed no chunk in {start_timeout:.0f} s; logs in {workdir}")
            # a fault latched while the policy loaded (a busy host delays the joint states) holds the arm
            # until released, as on a real robot
            graph.faults_at_start = graph.latched() and graph.release()
            if not graph.wait_for(graph.moving, 60.0):
                raise RuntimeError(f"the safety node sent nothing to the controller; logs in {workdir}")
            yield graph
        finally:
            graph.stop()


def apply(graph: SplitGraph, condition: LinkCondition, seconds: float, settle: float) -> dict:
    """Hold ``condition`` for ``seconds`` (a partition: PARTITION_S), then a clean link for ``settle`` s."""
    hold = PARTITION_S if condition.down else seconds
    before, t0 = graph.hosts.bytes(), time.time()
    graph.hosts.set(condition)
    time.sleep(hold)
    t1, after = time.time(), graph.hosts.bytes()
    graph.hosts.set(CONDITIONS["clean"])
    time.sleep(settle)
    t2 = time.time()
    # a fault latched in the window (reported in its counters) is released before the next one, as an operator would
    released = graph.latched() and graph.release()
    return {"name": condition.name, "t0": t0, "t1": t1, "t2": t2, "released_fault": released,
            "bytes": {k: after[k] - before[k] for k in after}}


def analyse(window: dict, robot: list[dict], gpu: list[dict], max_chunk_age: float) -> dict:
    """Metrics of one condition window from both probes' events (see the module docstring)."""
    from .safety import violations  # the safety bench's limit checks (imports rclpy)

    t0, t1, t2 = window["t0"], window["t1"], window["t2"]
    span = t1 - t0
    inside = lambda events, kind, a=t0, b=t2: [e for e in events if e["k"] == kind and a <= e["t"] < b]  # noqa: E731
    planned = inside(gpu, "ch", t0, t1)
    frames = inside(gpu, "cam", t0, t1)
    ages = np.array([(e["t"] - e["lat"] - e["s"]) * 1e3 for e in planned])
    arrived = inside(robot, "ch", t0, t1)
    outputs = inside(robot, "out")
    setpoints = inside(robot, "sp")
    chunk_stamps = np.sort([e["s"] for e in robot if e["k"] == "ch"])
    # a setpoint at t needs a chunk planned from an observation in [t - max_chunk_age, t]
    lo = np.searchsorted(chunk_stamps, [e["s"] - max_chunk_age for e in setpoints], side="left")
    hi = np.searchsorted(chunk_stamps, [e["s"] + 1e-6 for e in setpoints], side="right")
    stale = int(np.sum(hi <= lo))
    status = [e for e in robot if e["k"] == "st"]
    at = lambda t: next((e for e in reversed(status) if e["t"] <= t), status[0] if status else None)  # noqa: E731
    first, last = at(t0), at(t2)
    counters = {}
    if first and last:
        counters = {"watchdog_trips": last["wd"] - first["wd"], "limited_ticks": last["lim"] - first["lim"],
                    "rejected_commands": last["rej"] - first["rej"], "fault_latches": last["faults"] - first["faults"],
                    # a fault latched before the window holds through it: its rejections count here
                    # (fault_active), its latch does not
                    "held_by_fault_at_start": bool(first["fault"] or first["estop"]),
                    "by_kind": {k: v - first["c"].get(k, 0) for k, v in sorted(last["c"].items())
                                if k not in LIMIT_COUNTERS and v - first["c"].get(k, 0)}}
    q = np.array([e["q"] for e in outputs]) if outputs else np.zeros((0, 7))
    success = [e["v"] for e in robot if e["k"] == "ok" and e["t"] < t2]
    out = {"link": CONDITIONS[window["name"]].as_dict(),
           "link_MBps": {k: round(v / span / 1e6, 3) for k, v in window["bytes"].items() if "->" in k},
           "dropped_packets": window["bytes"]["dropped_packets"],
           # what one front-camera frame weighs on the link as JPEG, against rgb8 (224 x 224 x 3 bytes)
           "front_camera": {"frames_per_s_at_gpu": round(len(frames) / span, 1),
                            "jpeg_bytes_p50": int(np.median([e["n"] for e in frames])) if frames else None,
                            "rgb8_bytes": 224 * 224 * 3},
           "observation_age_at_policy_ms": {"p50": _pct(ages, 50), "p99": _pct(ages, 99), "n": int(ages.size)},
           "chunks_per_s": {"planned": round(len(planned) / span, 2),
                            "arrived_at_robot": round(len(arrived) / span, 2)},
           "safety_interventions": counters, "violations": violations(q), "outputs": len(outputs),
           "setpoints": len(setpoints), "stale_setpoints": stale,
           "task_success": bool(success[-1]) if success else None,
           "fault_released_after": window["released_fault"]}
    if window["name"].startswith("partition"):
        during = [e for e in setpoints if t0 + max_chunk_age + 0.1 < e["t"] < t1]
        after = [e for e in setpoints if e["t"] >= t1]
        steps = np.abs(np.diff(q, axis=0)).max(axis=1) if len(q) > 1 else np.zeros(0)
        # the last 0.3 s before the link came back: no output, or outputs that no longer move
        last = np.array([e["q"] for e in outputs if t1 - 0.3 <= e["t"] < t1])
        out["partition"] = {"setpoints_while_cut_after_bound": len(during), "resumed": bool(after),
                            "outputs_after_link_back": sum(1 for e in outputs if e["t"] >= t1),
                            "resumed_after_s": round(after[0]["t"] - t1, 3) if after else None,
                            "max_output_step_rad": round(float(steps.max(initial=0.0)), 5),
                            "watchdog_active_while_cut": any(e["watchdog"] for e in status if t0 < e["t"] < t1 + 0.2),
                            "at_rest_before_link_back": bool(len(last) < 2 or np.ptp(last, axis=0).max() < 1e-9)}
    return out


def _pct(values: np.ndarray, q: float):
    return round(float(np.percentile(values, q)), 1) if values.size else None


def clock_diagnosis(gpu: list[dict]) -> str:
    """The policy's last refusal reason (what /diagnostics says), for the report."""
    refusals = [e["v"].get("refusal", "") for e in gpu if e["k"] == "dg" and e["name"] == "twinbrain: policy"]
    return next((r for r in reversed(refusals) if r), "")


def run(conditions: list[str], seconds: float, settle: float, checkpoint: str = "",
        workdir: Path | None = None) -> dict:
    workdir = Path(workdir or tempfile.mkdtemp(prefix="twinbrain-two-hosts-"))
    max_chunk_age = node_params(load_config(split=True), "chunk_runner")["max_chunk_age"]
    windows = []
    with split_graph(workdir, checkpoint) as graph:
        time.sleep(settle)
        for name in conditions:
            windows.append(apply(graph, CONDITIONS[name], seconds, settle))
        robot, gpu = graph.events("robot"), graph.events("gpu")
    results = {w["name"]: analyse(w, robot, gpu, max_chunk_age) for w in windows}
    return {"bench": "two-hosts", "link": "TUN pair + user-space relay (bench/netns.py; this kernel has no netem)",
            "discovery": "plain (multicast over the link), FASTDDS_BUILTIN_TRANSPORTS=UDPv4",
            "cameras": "2 x 224x224 JPEG q80 at 30 Hz", "max_chunk_age_s": max_chunk_age,
            "weights": checkpoint or "tiny random preset (no trained checkpoint ships)",
            "total_violations": sum(sum(r["violations"].values()) for r in results.values()),
            "total_stale_setpoints": sum(r["stale_setpoints"] for r in results.values()),
            "fault_released_at_start": graph.faults_at_start, "conditions": results, "workdir": str(workdir)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="twinbrain-bench two-hosts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated subset, in order")
    p.add_argument("--seconds", type=float, default=10.0, help="how long each condition is held (partition: 2 s)")
    p.add_argument("--settle", type=float, default=4.0, help="clean link between conditions (s)")
    p.add_argument("--checkpoint", default="", help="a trained checkpoint (default: tiny random weights)")
    args = p.parse_args(argv)
    emit(run(args.conditions.split(","), args.seconds, args.settle, args.checkpoint))


if __name__ == "__main__":
    main()
