"""Small helpers shared by the benchmarks."""

from __future__ import annotations

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
