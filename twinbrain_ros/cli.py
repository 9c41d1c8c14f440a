"""`twinbrain-ros`: the pip-only way to run the graph (launch/launch_ros are not on PyPI).

    twinbrain-ros up [--config my_robot.yaml] [--checkpoint DIR] [--device cuda] [--namespace ns] [--use-sim]
                     [--duration SECONDS] [--host gpu|robot]
    twinbrain-ros [--namespace robot1] instruct "pick up the red cube"
    twinbrain-ros [--namespace robot1] estop | release
    twinbrain-ros record start | stop | discard     (with `up --record`)

`up` starts exactly the processes arm.launch.py starts (twinbrain_ros.graph), with the same YAML.
`up --host gpu` / `up --host robot` start one host's share of the graph split across two machines
(README, "Two hosts").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import graph


def _ros_args(spec: graph.NodeSpec, args, overrides_dir: Path) -> list[str]:
    out = ["--ros-args", "-r", f"__node:={spec.name}"]
    # the package defaults, the two-host layer when split, then the robot file on top
    for path in graph.param_files(args.config, split=bool(getattr(args, "host", ""))):
        out += ["--params-file", str(path)]
    if args.namespace:
        out += ["-r", f"__ns:=/{args.namespace.strip('/')}"]
    overrides = graph.overrides(spec, args.checkpoint, args.device, args.use_sim, getattr(args, "record", False))
    if overrides:
        # A second parameter file under the node's own name: a plain `-p name:=value` is a /** wildcard,
        # which loses against the node's section of the YAML (that is what launch_ros does too).
        path = overrides_dir / f"{spec.name}.yaml"
        path.write_text(json.dumps({spec.name: {"ros__parameters": overrides}}))   # JSON is valid YAML
        out += ["--params-file", str(path)]
    return out


def _pump(name: str, stream) -> None:
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"[{name}] {line.decode(errors='replace')}")
        sys.stdout.flush()


def up(args) -> int:
    procs = []
    overrides_dir = Path(tempfile.mkdtemp(prefix="twinbrain-params-"))
    env = dict(os.environ, **graph.dds_environment(os.environ))
    for spec in graph.nodes(args.use_sim, args.record, args.host):
        cmd = [sys.executable, "-m", spec.module] + _ros_args(spec, args, overrides_dir)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        threading.Thread(target=_pump, args=(spec.name, proc.stdout), daemon=True).start()
        procs.append((spec.name, proc))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    deadline = time.monotonic() + args.duration if args.duration else None
    code = 0
    try:
        while not stop.is_set():
            if deadline and time.monotonic() > deadline:
                break
            dead = [(n, p.returncode) for n, p in procs if p.poll() is not None]
            if dead:
                print(f"[twinbrain-ros] node(s) exited: {dead}; stopping the graph", flush=True)
                code = 1
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    for _, proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    # One deadline for all nodes (not one per node), so this returns before a caller gives up on it.
    end = time.monotonic() + 10.0
    for name, proc in procs:
        try:
            proc.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"[twinbrain-ros] {name} did not stop on SIGINT; killing it", flush=True)
            proc.kill()
    return code


@contextlib.contextmanager
def running_graph(log_path: Path, use_sim: bool = True, checkpoint: str = "", config: str | None = None,
                  record: bool = False):
    """The graph (`twinbrain-ros up`) as a child process for tools (demo, benchmarks); stopped on exit."""
    cmd = [sys.executable, "-m", "twinbrain_ros.cli", "up"] + (["--use-sim"] if use_sim else [])
    cmd += ["--record"] if record else []
    cmd += ["--checkpoint", checkpoint] if checkpoint else []
    cmd += ["--config", str(config)] if config else []
    with open(log_path, "w") as log:
        # Own process group: whatever happens to the runner, no node outlives the context. (Orphaned
        # nodes of one evaluation once kept publishing into the next one on the same ROS domain.)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            _empty_process_group(proc.pid)


def _empty_process_group(pgid: int, timeout: float = 10.0) -> None:
    """SIGKILL whatever is left in the group (nodes that hung) and wait until it is really gone: a
    killed process still counts until it has exited and been reaped."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _one_shot(action: str, text: str = "", service: str = "", namespace: str = "") -> int:
    import rclpy
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    from .nodes.qos import LATCHED

    rclpy.init()
    node = rclpy.create_node("twinbrain_cli")
    try:
        if action == "instruct":
            pub = node.create_publisher(String, f"{namespace}/instruction", LATCHED)
            pub.publish(String(data=text))
            end = time.monotonic() + 2.0   # transient_local: stay a moment so the policy node gets it
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.1)
            print(f"instruction sent: {text!r}")
            return 0
        if action == "estop":
            # The topic as well as the service: reliable + transient_local, so the trip reaches the safety
            # node even if the service is slow to answer (the node latches on either, idempotently).
            from std_msgs.msg import Bool
            node.create_publisher(Bool, f"{namespace}/safety_node/estop", LATCHED).publish(Bool(data=True))
        service = namespace + (service or f"/safety_node/{action}")
        client = node.create_client(Trigger, service)
        if not client.wait_for_service(timeout_sec=5.0):
            print(f"{service} is not available", file=sys.stderr)
            return 1
        future = client.call_async(Trigger.Request())
        rclpy.spin_until_future_complete(node, future, timeout_sec=5.0)
        result = future.result()
        print(result.message if result else "no answer")
        return 0 if result and result.success else 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def _ask(question: str, cameras: list[str], max_new_tokens: int, timeout: float, namespace: str = "") -> int:
    """Call policy_node's ~/ask and print the Left brain's answer."""
    import rclpy

    from .srv import Ask

    rclpy.init()
    node = rclpy.create_node("twinbrain_cli")
    try:
        client = node.create_client(Ask, f"{namespace}/policy_node/ask")
        if not client.wait_for_service(timeout_sec=5.0):
            print(f"{namespace}/policy_node/ask is not available", file=sys.stderr)
            return 1
        future = client.call_async(Ask.Request(question=question, cameras=cameras, max_new_tokens=max_new_tokens))
        rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
        result = future.result()
        if result is None or not result.success:
            print(f"no answer: {result.message if result else 'timed out'}", file=sys.stderr)
            return 1
        print(result.answer)
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="twinbrain-ros", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespace", "-n", default="", dest="ns",
                        help="the robot's namespace (as `up --namespace` / launch namespace:=) for instruct, "
                             "estop, release, record, ask")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start the node graph (same nodes and YAML as arm.launch.py)")
    p_up.add_argument("--config", default=str(graph.default_config()),
                      help="robot parameter file, layered over the package defaults (config/defaults.yaml)")
    p_up.add_argument("--checkpoint", default="")
    p_up.add_argument("--device", default="")
    p_up.add_argument("--namespace", default="")
    p_up.add_argument("--use-sim", action="store_true")
    p_up.add_argument("--record", action="store_true", help="also start the teleop recorder")
    p_up.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    p_up.add_argument("--host", default="", choices=["", *graph.HOSTS],
                      help="start one host's share of the graph split across two machines (gpu: policy_node; "
                           "robot: chunk_runner, safety_node, and sim_arm with --use-sim)")
    p_in = sub.add_parser("instruct", help="publish an instruction (latched)")
    p_in.add_argument("text")
    sub.add_parser("estop", help="latch the e-stop")
    sub.add_parser("release", help="release the e-stop")
    p_rec = sub.add_parser("record", help="recorder episodes: start | stop | discard")
    p_rec.add_argument("action", choices=["start", "stop", "discard"])
    p_ask = sub.add_parser("ask", help="ask the frozen Left brain about what the cameras see")
    p_ask.add_argument("question")
    p_ask.add_argument("--camera", action="append", default=[], help="camera name (repeat; default: all)")
    p_ask.add_argument("--max-new-tokens", type=int, default=0)
    p_ask.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    ns = f"/{args.ns.strip('/')}" if args.ns.strip("/") else ""
    if args.command == "ask":
        sys.exit(_ask(args.question, args.camera, args.max_new_tokens, args.timeout, ns))
    if args.command == "up":
        sys.exit(up(args))
    if args.command == "record":
        sys.exit(_one_shot(args.action, service=f"/recorder_node/{args.action}", namespace=ns))
    sys.exit(_one_shot(args.command, getattr(args, "text", ""), namespace=ns))


if __name__ == "__main__":
    main()
