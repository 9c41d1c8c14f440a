"""`twinbrain-bench expert`: success rate of the scripted expert for every task (verb x colour x push
direction) over many seeds, and how often it touched or moved another cube (JSON line). The recorded
demonstrations are only worth learning from if the expert itself succeeds (target >= 95 %)."""

from __future__ import annotations

import argparse
import time

from ..sim.arm_sim import ArmSim
from ..sim.expert import run_episode
from ..sim.tasks import all_tasks
from .stats import emit


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="twinbrain-bench expert", description=__doc__)
    p.add_argument("--seeds", type=int, default=50)
    p.add_argument("--first-seed", type=int, default=1000, help="seeds first_seed .. first_seed+seeds-1")
    p.add_argument("--tasks", nargs="*", default=None, help="task specs (default: every verb:colour(:direction))")
    args = p.parse_args(argv)
    sim = ArmSim()
    record = {"bench": "expert", "seeds": args.seeds, "first_seed": args.first_seed, "tasks": {}}
    start = time.perf_counter()
    for task in args.tasks or all_tasks():
        results, wrong = [], 0
        for s in range(args.seeds):
            results.append(run_episode(sim, args.first_seed + s, task))
            wrong += bool(sim.wrong_objects())
        failed = [args.first_seed + s for s, ok in enumerate(results) if not ok]
        record["tasks"][task] = {"success_rate": round(sum(results) / len(results), 3), "failed_seeds": failed,
                                 "wrong_object_rate": round(wrong / len(results), 3)}
    rates = [t["success_rate"] for t in record["tasks"].values()]
    record["min_success_rate"] = min(rates)
    record["seconds"] = round(time.perf_counter() - start, 1)
    emit(record)
