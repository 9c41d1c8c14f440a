"""`twinbrain-bench closed-loop --task mixture`: does the policy do what it is told?

1. records scripted demonstrations of the task mixture (touch / pick / push x red / green / blue, push
   left or right, several phrasings; sim/tasks.py), all three cubes on the table in every scene;
2. fine-tunes a tiny TwinBrainVLA for a fixed number of steps (a step budget, so the result does not
   depend on how fast the host is);
3. deploys it through the full ROS graph on unseen seeds, each episode started the lab way (e-stop,
   re-stage, policy reset, release) and ended by ``/sim_arm/reset``, whose ``~/episode_result`` says
   what happened: success per task and per colour, and the wrong-object rate (the fingers touched, or
   the arm moved, a cube that was not named);
4. the instruction-swap control: the same scenes with another colour in the instruction (published
   right after the reset, as an operator would). Success on the originally named cube must fall
   towards chance while success on the newly named cube holds;
5. the same for the untrained model, and the scripted expert on the same seeds. One JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from ..cli import running_graph
from ..data.lerobot_v3 import LeRobotV3Dataset
from ..data.record_sim import record
from ..graph import load_config, section_params
from ..sim.arm_sim import ArmSim
from ..sim.expert import run_episode
from ..sim.tasks import COLOURS, Task, parse_instruction
from .closed_loop import _call, _release

VAL_EPISODES = 24   # two per task on average: the language probes need every task in the validation set


def swapped(task: Task) -> Task:
    """The control's instruction: the same words with the next colour."""
    return task.with_cube(COLOURS[(COLOURS.index(task.cube) + 1) % len(COLOURS)])


class InstructionProbe:
    """Samples spread evenly over ``samples`` (all validation episodes, all tasks), with the instruction
    rewritten by ``rewrite``. The action loss with the named colour against the loss with the colour
    swapped says, without the ROS graph, whether the words reach the actions: a policy that ignores
    them scores both the same."""

    def __init__(self, samples, rewrite, count: int = 64):
        self.samples, self.rewrite = samples, rewrite
        self.indices = np.unique(np.linspace(0, len(samples) - 1, min(count, len(samples))).astype(int))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        sample = self.samples[int(self.indices[i])]
        return dataclasses.replace(sample, instruction=self.rewrite(sample.instruction))


def language_probes(trainer) -> dict:
    """val_loss_named / val_loss_swapped on the same validation frames (see InstructionProbe)."""
    def swap(text: str) -> str:
        return swapped(parse_instruction(text)).instruction
    return {"val_loss_named": InstructionProbe(trainer.val_set, str),
            "val_loss_swapped": InstructionProbe(trainer.val_set, swap)}


def evaluate(checkpoint: str, seeds: list[int], episode_seconds: float, workdir: Path, swap: bool) -> list[dict]:
    """Every seed's ``~/episode_result`` through the whole graph on ``checkpoint``."""
    import rclpy
    from std_msgs.msg import Bool, String
    from std_srvs.srv import Trigger

    from ..nodes.qos import LATCHED

    config = load_config()
    section_params(config, "sim_arm").update(task="mixture", seed=seeds[0] - 1)
    tag = f"{Path(checkpoint).name}{'-swap' if swap else ''}"
    cfg_path = workdir / f"eval-{tag}.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    log_path = workdir / f"eval-{tag}.log"
    results: list[dict] = []
    with running_graph(log_path, use_sim=True, checkpoint=checkpoint, config=cfg_path):
        rclpy.init()
        node = rclpy.create_node("language_loop_eval")
        success = threading.Event()
        node.create_subscription(Bool, "/sim_arm/success", lambda m: success.set() if m.data else None, LATCHED)
        node.create_subscription(String, "/sim_arm/episode_result", lambda m: results.append(json.loads(m.data)),
                                 LATCHED)
        instruct = node.create_publisher(String, "/instruction", LATCHED)
        clients = {n: node.create_client(Trigger, f"/{n}") for n in ("safety_node/estop", "safety_node/release",
                                                                     "sim_arm/reset", "policy_node/reset")}
        threading.Thread(target=rclpy.spin, args=(node,), daemon=True).start()
        try:
            if not all(c.wait_for_service(timeout_sec=180) for c in clients.values()):
                raise RuntimeError(f"the graph did not come up; see {log_path}")
            for _ in seeds:
                _call(clients["safety_node/estop"])
                time.sleep(0.5)
                reset = clients["sim_arm/reset"].call_async(Trigger.Request())
                while not reset.done():
                    time.sleep(0.02)
                success.clear()
                if swap:       # "episode k: <instruction>" -> the same words, another colour
                    task = parse_instruction(reset.result().message.split(": ", 1)[1])
                    instruct.publish(String(data=swapped(task).instruction))
                    time.sleep(0.3)       # the sim retargets its success check, the policy takes the words
                _call(clients["policy_node/reset"])
                if not _release(clients["safety_node/release"]):
                    raise RuntimeError(f"the safety node refused every release; see {log_path}")
                success.wait(episode_seconds)
            _call(clients["safety_node/estop"])
            _call(clients["sim_arm/reset"])            # ends the last episode: its result
            end = time.monotonic() + 10
            while time.monotonic() < end and not any(r["seed"] == seeds[-1] for r in results):
                time.sleep(0.05)
        finally:
            node.destroy_node()
            rclpy.try_shutdown()
    return [r for r in results if r["seed"] in seeds]


def summarize(results: list[dict], swap: bool = False) -> dict:
    def rate(rows, key="success"):
        return round(sum(bool(r[key]) for r in rows) / len(rows), 3) if rows else None

    by_task, by_colour = defaultdict(list), defaultdict(list)
    for r in results:
        by_task[r["task"]["name"]].append(r)
        by_colour[r["task"]["cube"]].append(r)
    out = {"episodes": len(results), "success_rate": rate(results),
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


def expert_on(seeds: list[int]) -> dict:
    sim = ArmSim()
    results = []
    for seed in seeds:
        ok = run_episode(sim, seed, "mixture")
        results.append({"seed": seed, "success": ok, "task": vars(sim.task), "wrong_objects": sim.wrong_objects()})
    sim.close()
    return summarize(results)


def run(args, out: Path, train_for) -> dict:
    dataset = str(out / "dataset")
    t0 = time.monotonic()
    if args.eval_only:
        untrained, trained = str(out / "train" / "untrained"), str(out / "train" / "final")
        train_info = json.loads((out / "train" / "train_info.json").read_text())
        rec = {}
    else:
        recorded = Path(dataset, "meta", "info.json").exists() and len(LeRobotV3Dataset(dataset).episodes)
        if recorded == args.episodes:   # the same demonstrations (seeds 0.. in order): train on them again
            rec = {"episodes": recorded, "reused_dataset": True}
        else:
            rec = record(dataset, args.episodes, fps=10, task="mixture", first_seed=0, image_size=(224, 224))
        untrained, trained, train_info = train_for(dataset, out / "train", None, args.train_steps_cap,
                                                   args.image_size, args.lr_right, args.delta_actions,
                                                   val_episodes=VAL_EPISODES, probes=language_probes)
    seeds = list(range(10_000, 10_000 + args.eval_episodes))               # never seen in training
    logs = out / "eval"
    logs.mkdir(exist_ok=True)
    fine_tuned = evaluate(trained, seeds, args.episode_seconds, logs, swap=False)
    swap = evaluate(trained, seeds, args.episode_seconds, logs, swap=True)
    baseline = evaluate(untrained, seeds, args.episode_seconds, logs, swap=False)
    (logs / "episode_results.json").write_text(json.dumps({"fine_tuned": fine_tuned, "swap": swap,
                                                          "untrained": baseline}, indent=1))
    return {"bench": "closed-loop", "task": "mixture", "demonstrations": rec.get("episodes"),
            "reused_dataset": rec.get("reused_dataset", False),
            "image_size": args.image_size, **train_info, "eval_seeds": f"{seeds[0]}..{seeds[-1]}",
            "fine_tuned": summarize(fine_tuned), "swap_control": summarize(swap, swap=True),
            "untrained": summarize(baseline), "scripted_expert": expert_on(seeds),
            "seconds": round(time.monotonic() - t0, 1)}
