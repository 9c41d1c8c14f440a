"""`twinbrain-bench closed-loop --task mixture` (or ``touch:any``, one verb with the colour left to the
words): does the policy do what it is told?

1. records scripted demonstrations of the task mixture (touch / pick / push x red / green / blue, push
   left or right, several phrasings; sim/tasks.py), all three cubes on the table in every scene;
2. fine-tunes a tiny TwinBrainVLA for a fixed number of steps (a step budget, so the result does not
   depend on how fast the host is);
   On the way, the action loss on validation frames with the named and with a swapped colour
   (``language_probes``): whether the words reach the actions at all, without the graph; the same on
   each episode's first frame alone (``first_frame_*``: the arm has not moved, so only the words tell
   the goal), and with a goal head the goal error on each of these;
3. deploys it through the full ROS graph on unseen seeds (bench/graph_episodes.py), each episode started
   the lab way (e-stop, re-stage, policy reset, release) and ended by ``/sim_arm/reset``, whose
   ``~/episode_result`` says what happened: success per task and per colour, and the wrong-object rate
   (the fingers touched, or the arm moved, a cube that was not named);
4. the instruction-swap control: the same scenes with another colour in the instruction (published
   right after the reset, as an operator would). Success on the originally named cube must fall
   towards chance while success on the newly named cube holds;
5. the same scenes without the ritual ("plain"): the graph's start, then sim resets while the policy runs
   on, only a release of the safety node's fault in between;
6. the same for the untrained model, and the scripted expert on the same seeds. One JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from ..data.lerobot_v3 import LeRobotV3Dataset
from ..data.record_sim import record
from ..sim.arm_sim import ArmSim
from ..sim.expert import run_episode
from ..sim.tasks import parse_instruction
from .graph_episodes import run_passes, summarize, swapped

VAL_EPISODES = 24   # two per task on average: the language probes need every task in the validation set


class InstructionProbe:
    """Samples spread evenly over ``samples`` (all validation episodes, all tasks), with the instruction
    rewritten by ``rewrite``. The action loss with the named colour against the loss with the colour
    swapped says, without the ROS graph, whether the words reach the actions: a policy that ignores
    them scores both the same."""

    def __init__(self, samples, rewrite, count: int = 64, indices=None):
        """``indices``: these samples instead of ``count`` spread evenly."""
        self.samples, self.rewrite = samples, rewrite
        self.indices = (np.unique(np.linspace(0, len(samples) - 1, min(count, len(samples))).astype(int))
                        if indices is None else np.asarray(indices))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        sample = self.samples[int(self.indices[i])]
        return dataclasses.replace(sample, instruction=self.rewrite(sample.instruction))


def language_probes(trainer) -> dict:
    """val_loss_named / val_loss_swapped on the same validation frames (see InstructionProbe), and
    first_frame_named / first_frame_swapped on each validation episode's first frame."""
    def swap(text: str) -> str:
        return swapped(parse_instruction(text)).instruction
    first = trainer.val_set.early_indices(1)   # the start, where only the words tell the goal
    return {"val_loss_named": InstructionProbe(trainer.val_set, str),
            "val_loss_swapped": InstructionProbe(trainer.val_set, swap),
            "first_frame_named": InstructionProbe(trainer.val_set, str, indices=first),
            "first_frame_swapped": InstructionProbe(trainer.val_set, swap, indices=first)}


def expert_on(seeds: list[int], task: str = "mixture") -> dict:
    sim = ArmSim()
    results = []
    for seed in seeds:
        ok = run_episode(sim, seed, task)
        results.append({"seed": seed, "success": ok, "task": vars(sim.task), "wrong_objects": sim.wrong_objects()})
    sim.close()
    return summarize(results)


def _recorded_recipe(out: Path, dataset: str) -> dict | None:
    """How the dataset in ``out`` was recorded, or None (none there, or one without its recipe, which is
    then recorded again: its task and knobs are unknown)."""
    path = out / "recording.json"
    if not (Path(dataset, "meta", "info.json").exists() and path.exists()):
        return None
    recipe = json.loads(path.read_text())
    return recipe if len(LeRobotV3Dataset(dataset).episodes) == recipe["episodes"] else None


def run(args, out: Path, train_for) -> dict:
    dataset = str(out / "dataset")
    t0 = time.monotonic()
    if args.eval_only:
        untrained, trained = str(out / "train" / "untrained"), str(out / "train" / "final")
        train_info = json.loads((out / "train" / "train_info.json").read_text())
        rec = {}
    else:
        recipe = dict(episodes=args.episodes, task=args.task, start_spread=args.start_spread, hold=args.hold,
                      perturb=args.perturb, chain=args.chain, cubes_per_scene=args.cubes_per_scene)
        if _recorded_recipe(out, dataset) == recipe:   # the same demonstrations: train on them again
            rec = {"episodes": args.episodes, "reused_dataset": True}
        elif Path(dataset, "meta", "info.json").exists():   # the writer would append to it; nothing is deleted
            raise SystemExit(f"{dataset} holds demonstrations recorded otherwise than {recipe} "
                             "(or before recording.json was written): choose another --out")
        else:
            rec = record(dataset, fps=10, first_seed=0, image_size=(224, 224), **recipe)
            (out / "recording.json").write_text(json.dumps(recipe))
        untrained, trained, train_info = train_for(dataset, out / "train", None, args.train_steps_cap,
                                                   args.image_size, args.lr_right, args.delta_actions,
                                                   val_episodes=VAL_EPISODES, probes=language_probes,
                                                   tokenizer=args.tokenizer, size=args.tiny_size,
                                                   goal_weight=args.goal_loss_weight,
                                                   early_share=args.early_frame_share)
    seeds = list(range(10_000, 10_000 + args.eval_episodes))               # never seen in training
    logs = out / "eval"
    logs.mkdir(exist_ok=True)
    runs = {"fine_tuned": dict(checkpoint=trained), "swap_control": dict(checkpoint=trained, swap=True),
            "plain_start": dict(checkpoint=trained, ritual=False), "untrained": dict(checkpoint=untrained)}
    episodes = run_passes(runs, args.eval_passes, args.task, seeds, args.episode_seconds, logs)
    return {"bench": "closed-loop", "task": args.task, "demonstrations": rec.get("episodes"),
            "reused_dataset": rec.get("reused_dataset", False),
            "image_size": args.image_size, **train_info, "eval_seeds": f"{seeds[0]}..{seeds[-1]}",
            **{name: summarize(rows, swap=name == "swap_control") for name, rows in episodes.items()},
            # the plain run's first episode began at the graph's start
            "graph_start_success": next((bool(r["success"]) for r in episodes.get("plain_start", [])
                                         if r["seed"] == seeds[0]), None),
            "scripted_expert": expert_on(seeds, args.task),
            "seconds": round(time.monotonic() - t0, 1)}
