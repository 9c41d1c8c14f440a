"""Small helpers shared by the benchmarks."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def percentiles_ms(seconds: list[float] | np.ndarray, prefix: str) -> dict:
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    return {f"{prefix}_p50_ms": round(float(np.percentile(ms, 50)), 3),
            f"{prefix}_p99_ms": round(float(np.percentile(ms, 99)), 3),
            f"{prefix}_max_ms": round(float(ms.max()), 3)}


def emit(record: dict) -> None:
    print(json.dumps(record), file=sys.stdout, flush=True)


def checkpoint_bench_parser(name: str, doc: str) -> argparse.ArgumentParser:
    """Options of the in-process diagnostics of a checkpoint on the closed loop's task and unseen seeds."""
    p = argparse.ArgumentParser(prog=f"twinbrain-bench {name}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--task", default="touch")
    p.add_argument("--first-seed", type=int, default=10_000, help="the closed loop's unseen seeds")
    return p
