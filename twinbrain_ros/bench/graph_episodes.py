"""Episodes through the full ROS graph (sim_arm -> policy_node -> safety_node, separate processes
started by the pip-only runner), for the closed-loop benchmarks: each seed's ``/sim_arm/episode_result``.

Two ways to start an episode:
  ritual  the lab way: e-stop, re-stage the scene (``/sim_arm/reset``), policy ``~/reset``, release;
  plain   no ritual: the first episode is the graph's own start; each later one is a sim reset while
          the policy runs on (its plan from the last scene still executing) and the safety node,
          which reads the re-homing teleport as a jump, released by an operator — never an e-stop
          or a policy reset.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from pathlib import Path

import yaml

from ..cli import running_graph
from ..graph import load_config, section_params
from ..sim.tasks import COLOURS, Task, parse_instruction


def response(client, timeout: float = 15.0):
    """Call a Trigger service: its response, or None if none came within ``timeout``."""
    future = client.call_async(client.srv_type.Request())
    end = time.monotonic() + timeout
    while not future.done() and time.monotonic() < end:
        time.sleep(0.02)
    return future.result() if future.done() else None


def call(client, timeout: float = 15.0) -> bool:
    """Call a Trigger service; True if it answered with success."""
    answer = response(client, timeout)
    return answer is not None and answer.success


def release(client, timeout: float = 10.0) -> bool:
    """The safety node grants a release only from fresh joint states of an arm at rest: right after the sim
    re-homes the arm it refuses (the teleport reads as a jump) until the arm has settled; retry as an
    operator would."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if call(client):
            return True
        time.sleep(0.1)
    return False


def swapped(task: Task) -> Task:
    """The swap control's instruction: the same words with the next colour."""
    return task.with_cube(COLOURS[(COLOURS.index(task.cube) + 1) % len(COLOURS)])


def evaluate(checkpoint: str, task: str, seeds: list[int], episode_seconds: float, workdir: Path,
             swap: bool = False, ritual: bool = True, overrides: dict[str, dict] | None = None,
             trace: dict | None = None) -> list[dict]:
    """Every seed's ``~/episode_result`` through the whole graph on ``checkpoint`` (sim task spec
    ``task``). ``swap``: right after each reset another colour is published in the same words, as an
    operator would (the sim retargets its success check, ``episode_task_success`` keeps the original).
    ``overrides``: parameters on top of the default configuration, per node (``{"policy_node": {"blend":
    "rtc"}}``). ``trace`` (a dict) receives what policy_node published: ``setpoints`` (stamp, positions)
    and ``chunks`` (time received, observation stamp, step period, actions), and the ``pauses`` between
    episodes (start of the e-stop or reset, release; wall clock)."""
    import rclpy
    from std_msgs.msg import Bool, String
    from std_srvs.srv import Trigger

    from ..nodes.qos import LATCHED

    config = load_config()
    # ritual: the sim's own first episode (seed - 1) only runs while the graph starts, every evaluated one is
    # reset; plain: the graph's start is the first evaluated episode
    section_params(config, "sim_arm").update(task=task, seed=seeds[0] - (1 if ritual else 0))
    for section, values in (overrides or {}).items():
        section_params(config, section).update(values)
    tag = f"{Path(checkpoint).name}{'-swap' if swap else ''}{'' if ritual else '-plain'}" + "".join(
        f"-{k}={v}" for values in (overrides or {}).values() for k, v in sorted(values.items()))
    cfg_path = workdir / f"eval-{tag}.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    log_path = workdir / f"eval-{tag}.log"
    results: list[dict] = []
    with running_graph(log_path, use_sim=True, checkpoint=checkpoint, config=cfg_path):
        rclpy.init()
        node = rclpy.create_node("graph_episodes")
        success = threading.Event()
        node.create_subscription(Bool, "/sim_arm/success", lambda m: success.set() if m.data else None, LATCHED)
        node.create_subscription(String, "/sim_arm/episode_result", lambda m: results.append(json.loads(m.data)),
                                 LATCHED)
        instruct = node.create_publisher(String, "/instruction", LATCHED)
        if trace is not None:
            listen_to_policy(node, trace)
        clients = {n: node.create_client(Trigger, f"/{n}") for n in ("safety_node/estop", "safety_node/release",
                                                                     "sim_arm/reset", "policy_node/reset")}
        threading.Thread(target=rclpy.spin, args=(node,), daemon=True).start()
        try:
            # policy_node's services appear once its model is loaded
            if not all(c.wait_for_service(timeout_sec=180) for c in clients.values()):
                raise RuntimeError(f"the graph did not come up; see {log_path}")
            for k, _ in enumerate(seeds):
                paused = time.time()
                if ritual:
                    call(clients["safety_node/estop"])
                    time.sleep(0.5)                           # the safety node brakes the arm to a standstill
                if ritual or k:
                    reset = response(clients["sim_arm/reset"])   # the sim draws the next seed
                    if reset is None or not reset.success:
                        raise RuntimeError(f"/sim_arm/reset did not start the next episode; see {log_path}")
                    success.clear()
                    if swap:   # "episode k: <instruction>" -> the same words, another colour
                        named = parse_instruction(reset.message.split(": ", 1)[1])
                        instruct.publish(String(data=swapped(named).instruction))
                        time.sleep(0.3)       # the sim retargets its success check, the policy takes the words
                    if ritual:
                        call(clients["policy_node/reset"])    # the policy drops its plan for the last scene
                    if not release(clients["safety_node/release"]):
                        raise RuntimeError(f"the safety node refused every release; see {log_path}")
                if trace is not None:
                    trace["pauses"].append((paused, time.time()))
                success.wait(episode_seconds)
            call(clients["safety_node/estop"])
            call(clients["sim_arm/reset"])                    # ends the last episode: its result
            end = time.monotonic() + 10
            while time.monotonic() < end and not any(r["seed"] == seeds[-1] for r in results):
                time.sleep(0.05)
        finally:
            node.destroy_node()
            rclpy.try_shutdown()
    return [r for r in results if r["seed"] in seeds]


def listen_to_policy(node, trace: dict) -> None:
    """Record policy_node's setpoints and accepted chunks into ``trace`` (see ``evaluate``)."""
    import numpy as np
    from trajectory_msgs.msg import JointTrajectory

    from ..msg import ActionChunk
    from ..nodes.ros_convert import action_chunk_array, duration_to_sec, stamp_to_sec

    trace.update(setpoints=[], chunks=[], pauses=[])

    def on_setpoint(m):
        trace["setpoints"].append((stamp_to_sec(m.header.stamp), np.array(m.points[0].positions)))

    def on_chunk(m):
        trace["chunks"].append((time.time(), stamp_to_sec(m.header.stamp), duration_to_sec(m.step_period),
                                action_chunk_array(m)))

    node.create_subscription(JointTrajectory, "/twinbrain/joint_command", on_setpoint, 1000)
    node.create_subscription(ActionChunk, "/policy_node/chunk", on_chunk, 100)


def summarize(results: list[dict], swap: bool = False) -> dict:
    """Success per task, per colour and per task and colour; the wrong-object rate; the failed seeds."""
    def rate(rows, key="success"):
        return round(sum(bool(r[key]) for r in rows) / len(rows), 3) if rows else None

    by_task, by_colour = defaultdict(list), defaultdict(list)
    for r in results:
        by_task[r["task"]["name"]].append(r)
        by_colour[r["task"]["cube"]].append(r)
    out = {"episodes": len(results), "success_rate": rate(results),
           "successes": sum(bool(r["success"]) for r in results),
           "per_task": {k: rate(v) for k, v in sorted(by_task.items())},
           "per_colour": {k: rate(v) for k, v in sorted(by_colour.items())},
           "per_task_colour": {f"{t}:{c}": rate([r for r in v if r["task"]["cube"] == c])
                               for t, v in sorted(by_task.items()) for c in COLOURS
                               if any(r["task"]["cube"] == c for r in v)},
           "wrong_object_rate": round(sum(bool(r["wrong_objects"]) for r in results) / len(results), 3)
           if results else None,
           "failed_seeds": [r["seed"] for r in results if not r["success"]]}
    if swap:
        out["success_on_originally_named"] = rate(results, "episode_task_success")
        out["success_on_newly_named"] = out["success_rate"]
    return out


def run_passes(passes: dict[str, dict], only: str, task: str, seeds: list[int], episode_seconds: float,
               workdir: Path) -> dict[str, list[dict]]:
    """``evaluate`` once per named pass (its keyword arguments: checkpoint, swap, ritual), those named in
    ``only`` (comma-separated; empty: all); the episode results of each also go to
    ``workdir/episode_results-<pass>.json``."""
    chosen = [p.strip() for p in only.split(",") if p.strip()] or list(passes)
    unknown = sorted(set(chosen) - set(passes))
    if unknown:
        raise ValueError(f"unknown evaluation pass(es) {unknown}; known: {sorted(passes)}")
    episodes = {}
    for name in chosen:
        episodes[name] = evaluate(task=task, seeds=seeds, episode_seconds=episode_seconds, workdir=workdir,
                                  **passes[name])
        (workdir / f"episode_results-{name}.json").write_text(json.dumps(episodes[name], indent=1))
    return episodes
