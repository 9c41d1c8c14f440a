"""`twinbrain-bench ruckig`: the safety node's per-tick limiter against ruckig's online trajectory
generation (`pip install ruckig`; not a dependency) on the same command streams, with the limiter's
property-test oracle: outputs inside the position range, steps within the velocity limit, changes of
step within the acceleration limit; and how closely each follows the command. Streams: random step
commands (including far outside the range) held for random durations, and a smooth sine. Also: ticks
to settle on a feasible step, CPU per tick. One JSON line."""

from __future__ import annotations

import argparse
import time

import numpy as np

from .safety import LIMITS, violations
from .stats import emit


def streams(rng, ticks: int) -> dict[str, np.ndarray]:
    lo, hi = LIMITS.lower, LIMITS.upper
    steps, k = np.empty((ticks, len(lo))), 0
    while k < ticks:
        hold = int(rng.integers(1, 60))
        steps[k:k + hold] = rng.uniform(lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo))
        k += hold
    t, w = np.arange(ticks)[:, None] * LIMITS.period, 2 * np.pi * 0.7
    amplitude = np.minimum.reduce([0.45 * (hi - lo), 0.8 * LIMITS.vmax / w, 0.8 * LIMITS.amax / w**2])   # feasible
    sine = (lo + hi) / 2 + amplitude * np.sin(w * t)
    return {"random_steps": steps, "sine": sine}


def run_limiter(commands: np.ndarray) -> tuple[np.ndarray, float]:
    lim = type(LIMITS)(LIMITS.space, LIMITS.period)
    lim.reset(np.clip(np.zeros(len(LIMITS.names)), lim.lower, lim.upper), 0.0)
    out, start = [lim.q.copy()], time.perf_counter()
    for k, cmd in enumerate(commands):
        out.append(lim.limit(lim.names, cmd, (k + 1) * lim.period).positions)
    return np.array(out), (time.perf_counter() - start) / len(commands)


def run_ruckig(commands: np.ndarray, position_limits: bool) -> tuple[np.ndarray, float]:
    from ruckig import InputParameter, OutputParameter, Result, Ruckig

    n, lim = len(LIMITS.names), LIMITS
    otg, inp, outp = Ruckig(n, lim.period), InputParameter(n), OutputParameter(n)
    inp.max_velocity, inp.max_acceleration = lim.vmax.tolist(), lim.amax.tolist()
    inp.max_jerk = [1e6] * n      # ruckig needs a jerk limit; "none" for the comparison
    if position_limits:
        inp.min_position, inp.max_position = lim.lower.tolist(), lim.upper.tolist()
    q = np.clip(np.zeros(n), lim.lower, lim.upper)
    inp.current_position, inp.current_velocity, inp.current_acceleration = q.tolist(), [0.0] * n, [0.0] * n
    out, start, previous, errors = [q], time.perf_counter(), None, 0
    for cmd in commands:
        target = np.clip(cmd, lim.lower, lim.upper)   # the clamp ruckig does not do
        # the stream's own velocity as the target velocity, as the limiter estimates it (fair on the sine)
        v = np.zeros(n) if previous is None else np.clip((target - previous) / lim.period, -lim.vmax, lim.vmax)
        previous = target
        inp.target_position, inp.target_velocity, inp.target_acceleration = target.tolist(), v.tolist(), [0.0] * n
        try:
            result = otg.update(inp, outp)
        except Exception:   # noqa: BLE001 - ruckig.RuckigError: no trajectory found for this input
            result = None
        if result not in (Result.Working, Result.Finished):
            errors += 1
            out.append(out[-1])       # what a node could do then: repeat the last output (the oracle counts it)
            continue
        out.append(np.array(outp.new_position))
        outp.pass_to_input(inp)
    run_ruckig.errors = errors
    return np.array(out), (time.perf_counter() - start) / len(commands)


def settle_ticks(outputs: np.ndarray, target: np.ndarray, tol: float = 1e-4) -> int:
    far = np.any(np.abs(outputs - target) > tol, axis=1)
    return int(np.max(np.nonzero(far)[0]) + 1) if far.any() else 0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="twinbrain-bench ruckig", description=__doc__)
    p.add_argument("--ticks", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        import ruckig
    except ImportError:
        raise SystemExit("twinbrain-bench ruckig needs `pip install ruckig` (not a dependency)") from None
    record = {"bench": "ruckig", "ruckig_version": getattr(ruckig, "__version__", "?"), "ticks": args.ticks}
    step = np.tile(np.clip(np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 0.03]), LIMITS.lower, LIMITS.upper),
                   (400, 1))
    runners = {"limiter": run_limiter, "ruckig": lambda c: run_ruckig(c, False),
               "ruckig_position_limits": lambda c: run_ruckig(c, True)}
    for name, stream in streams(np.random.default_rng(args.seed), args.ticks).items():
        for runner, run in runners.items():
            try:
                out, per_tick = run(stream)
            except Exception as exc:   # noqa: BLE001 - e.g. a feature this ruckig build does not have
                record[f"{name}.{runner}"] = f"{type(exc).__name__}: {exc}"
                continue
            lag = np.abs(out[101:] - np.clip(stream[100:], LIMITS.lower, LIMITS.upper)).max()   # after settling in
            record[f"{name}.{runner}"] = {"violations": violations(out), "us_per_tick": round(per_tick * 1e6, 1),
                                          "max_tracking_error": round(float(lag), 4),
                                          "errors": getattr(run_ruckig, "errors", 0) if runner != "limiter" else 0}
    for runner, run in runners.items():
        try:
            record[f"step_settle_ticks.{runner}"] = settle_ticks(run(step)[0][1:], step[0])
        except Exception as exc:   # noqa: BLE001
            record[f"step_settle_ticks.{runner}"] = f"{type(exc).__name__}: {exc}"
    emit(record)


if __name__ == "__main__":
    main()
