"""`twinbrain-bench expert`: success rate of the scripted expert per task over many seeds (JSON line).
The recorded demonstrations are only worth learning from if the expert itself succeeds (target >= 90 %)."""

from __future__ import annotations

import argparse
import time

from ..sim.arm_sim import TASKS, ArmSim
from ..sim.expert import run_episode
from .stats import emit


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="twinbrain-bench expert", description=__doc__)
    p.add_argument("--seeds", type=int, default=50)
    p.add_argument("--first-seed", type=int, default=1000, help="seeds first_seed .. first_seed+seeds-1")
    args = p.parse_args(argv)
    sim = ArmSim()
    record = {"bench": "expert", "seeds": args.seeds, "first_seed": args.first_seed, "tasks": {}}
    start = time.perf_counter()
    for task in TASKS:
        results = [run_episode(sim, args.first_seed + s, task) for s in range(args.seeds)]
        failed = [args.first_seed + s for s, ok in enumerate(results) if not ok]
        record["tasks"][task] = {"success_rate": round(sum(results) / len(results), 3), "failed_seeds": failed}
    record["seconds"] = round(time.perf_counter() - start, 1)
    emit(record)
