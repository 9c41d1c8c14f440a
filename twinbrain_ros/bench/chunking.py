"""`twinbrain-bench chunking --checkpoint DIR`: how chunks are spliced, under inference latency.

For every blend (replace / crossfade / average / rtc) and injected latency, the simulated arm runs in
process and in sim time, driven by policy_node's own PolicyRunner and safety_node's limiter
(bench/rollout.py ``rollout_like_graph``): a chunk takes effect ``latency`` s after its observation
(the first one ``--cold-start`` s later still, as a model's warm-up does), so the figures are about
the splicing, not about this host's speed. Same seeds and noise draws for every blend. As in
policy_node, the warm-up happens once and the rtc delay estimate carries from episode to episode.

``--graph``: the same through the ROS graph (bench/graph_episodes.py: sim_arm, policy_node and
safety_node as processes, the lab ritual before each episode), one graph per blend and latency, each
inference made to take at least the latency (policy_node's ``emulated_inference_time``; this host's own
inference time comes on top of 0). The splice figures come from what policy_node published: its
setpoints, and the admitted chunks (after clamping and slow-down).

Per blend and latency: success rate; at the ticks where a new chunk takes over, the largest step in
commanded joint velocity (rad/s) and jerk (rad/s³) and the gap between the plan being executed and the
new chunk at that instant (rad: what the blend has to hide); the TCP path length (m) to success; for
rtc the mean number of frozen steps it asked for. One JSON line; ``targets`` checks the goals of #18:
rtc at 0.3 s within 5 points of its 0 s success, and smaller boundary velocity steps than crossfade at
every latency.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..graph import load_config, node_params
from ..model import TwinBrainPolicy
from ..nodes.params import INTERPOLATION, resolve
from ..nodes.policy_params import PARAMS as POLICY_PARAMS
from ..runtime.chunk_executor import BLEND_POLICIES, INTERPOLATIONS, interpolate
from ..runtime.rtc import DelayEstimator
from ..sim.arm_sim import ArmSim
from .rollout import rollout_like_graph
from .stats import checkpoint_bench_parser, emit


def _changes(setpoints, dt: float, times) -> tuple[np.ndarray, np.ndarray]:
    """dv[i]: the largest change of velocity (over joints) at setpoint i+1; jerk[i] over ticks i..i+3."""
    q = np.asarray(setpoints, np.float64)
    t = np.arange(len(q)) * dt if times is None else np.asarray(times, np.float64)
    v = np.diff(q, axis=0) / np.diff(t)[:, None]   # v[i]: from setpoint i to i+1
    dv = np.abs(np.diff(v, axis=0))
    tv = (t[1:] + t[:-1]) / 2
    a = np.diff(v, axis=0) / np.diff(tv)[:, None]
    ta = (tv[1:] + tv[:-1]) / 2
    return dv.max(axis=1, initial=0.0), np.abs(np.diff(a, axis=0) / np.diff(ta)[:, None]).max(axis=1, initial=0.0)


def boundary_steps(setpoints: np.ndarray, boundaries: list[int], dt: float = 0.0,
                   times: np.ndarray | None = None) -> tuple[list[float], list[float]]:
    """Per chunk boundary (index of the first setpoint from the new chunk): the largest change of velocity
    over the boundary tick and the next (rad/s), and the largest jerk over the three ticks from it
    (rad/s³), both over all joints. Setpoints ``dt`` apart, or at ``times`` (stamps: a graph's ticks are
    not exactly periodic and a message can be lost)."""
    if len(setpoints) < 2:
        return [], []
    dv, jerk = _changes(setpoints, dt, times)
    steps, jerks = [], []
    for b in boundaries:
        window = dv[max(b - 1, 0):b + 1]           # changes at setpoints b and b+1
        if len(window):
            steps.append(float(window.max()))
        jw = jerk[max(b - 2, 0):b + 1]
        if len(jw):
            jerks.append(float(jw.max()))
    return steps, jerks


def interior_steps(setpoints: np.ndarray, boundaries: list[int], dt: float = 0.0,
                   times: np.ndarray | None = None, skip=None) -> list[float]:
    """The same velocity change at every tick outside the boundary windows (and the setpoints ``skip``
    marks): the motion's own acceleration per tick, the floor a boundary step is measured against (a
    splice without a jump is at this level, not at 0)."""
    if len(setpoints) < 3:
        return []
    dv, _ = _changes(setpoints, dt, times)
    left_out = np.zeros(len(dv), bool)
    if skip is not None:   # dv[i] is made of setpoints i..i+2
        skip = np.asarray(skip, bool)
        left_out |= skip[:-2] | skip[1:-1] | skip[2:]
    for b in boundaries:   # the changes at setpoints b-1..b+1: the new chunk's first step moves all three
        left_out[max(b - 2, 0):b + 1] = True
    return dv[~left_out].tolist()


def summary(successes: int, episodes: int, steps, jerks, gaps, paths, frozen=(), latencies=(), interior=()) -> dict:
    return {"success_rate": round(successes / episodes, 3),
            "boundary_velocity_step_max": round(max(steps, default=0.0), 4),
            "boundary_velocity_step_p95": round(float(np.percentile(steps, 95)) if steps else 0.0, 4),
            **({"interior_velocity_step_max": round(max(interior), 4),
                "interior_velocity_step_p95": round(float(np.percentile(interior, 95)), 4)} if len(interior) else {}),
            "boundary_jerk_max": round(max(jerks, default=0.0), 1),
            "splice_gap_p95_rad": round(float(np.percentile(gaps, 95)) if gaps else 0.0, 4),
            "path_length_m_mean": round(float(np.mean(paths)), 3) if paths else None,
            "chunks": len(steps), **({"frozen_steps_mean": round(float(np.mean(frozen)), 2)} if frozen else {}),
            **({"observation_to_chunk_p50_s": round(float(np.median(latencies)), 3)} if len(latencies) else {})}


def run_config(policy, sim, seeds, task, seconds, latency, blend, config, cold_start, guidance,
               interpolation: str = INTERPOLATION.default) -> dict:
    dt = 1.0 / node_params(config, "safety_node")["control_rate_hz"]
    successes, steps, jerks, gaps, paths, frozen, interior = 0, [], [], [], [], [], []
    # as in policy_node: one warm-up per start, and the delay estimate carried from episode to episode
    policy_params = resolve(POLICY_PARAMS, node_params(config, "policy_node"), "policy_node")
    delay = DelayEstimator(policy_params["rtc_initial_delay"])
    for k, seed in enumerate(seeds):
        trace: dict = {}
        result = rollout_like_graph(policy, sim, seed, task, seconds, latency, config,
                                    overrides={"blend": blend, "rtc_guidance": guidance,
                                               "interpolation": interpolation},
                                    cold_start=0.0 if k else cold_start, trace=trace, delay=delay)
        successes += result["success"]
        s, j = boundary_steps(trace["setpoints"], trace["boundaries"], dt)
        steps += s
        jerks += j
        interior += interior_steps(trace["setpoints"], trace["starts"] + trace["boundaries"], dt)
        gaps += trace["splice_gaps"]
        frozen += trace["frozen"]
        if result["success"]:
            paths.append(float(np.linalg.norm(np.diff(np.asarray(trace["tcp"]), axis=0), axis=1).sum()))
    return summary(successes, len(seeds), steps, jerks, gaps, paths, frozen, interior=interior)


def graph_splices(trace: dict, period: float,
                  interpolation: str = "linear") -> tuple[list[float], list[float], list[float], list[float],
                                                          list[float]]:
    """From what policy_node published (``graph_episodes.evaluate``'s trace): per splice the velocity step
    and jerk at the boundary, the gap between the admitted new chunk and the setpoint just before it took
    over, each chunk's delay (received - observation stamp), and the interior steps (interior_steps, away
    from every chunk's boundary and outside the pauses). Setpoints stop between the ritual's
    episodes; a chunk that starts a run of setpoints took over from nothing and is no splice, and one
    received during a pause (e-stop to release: the arm brakes, the scene is re-staged) is not about
    blending."""
    if not trace["setpoints"]:
        return [], [], [], [], []
    stamps = np.array([s[0] for s in trace["setpoints"]])
    q = np.stack([s[1] for s in trace["setpoints"]])
    breaks = np.flatnonzero(np.diff(stamps) > 3 * period) + 1
    steps, jerks, gaps, interior = [], [], [], []
    pauses = trace.get("pauses", ())
    for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(stamps)]):
        t = stamps[a:b]
        paused = np.array([any(start <= stamp <= end for start, end in pauses) for stamp in t])
        every_chunk = [int(np.searchsorted(t, c[0] - period)) for c in trace["chunks"] if t[0] < c[0] <= t[-1]]
        interior += interior_steps(q[a:b], every_chunk, times=t, skip=paused)
        chunks = [c for c in trace["chunks"] if t[0] < c[0] <= t[-1]
                  and not any(start <= c[0] <= end for start, end in trace.get("pauses", ()))]
        # the first setpoint from a chunk: the tick after it was accepted, just before it was received here
        # (boundary_steps looks at that tick and the next)
        ticks = [int(np.searchsorted(t, received - period)) for received, *_ in chunks]
        s, j = boundary_steps(q[a:b], ticks, times=t)
        steps, jerks = steps + s, jerks + j
        for (_, stamp, step_period, actions), k in zip(chunks, ticks):
            if k > 0:
                new = interpolate(stamp + step_period * np.arange(len(actions)), actions, t[k - 1:k], interpolation)[0]
                gaps.append(float(np.abs(new - q[a + k - 1]).max()))
    delays = [received - stamp for received, stamp, *_ in trace["chunks"]]
    return steps, jerks, gaps, delays, interior


def run_graph_config(checkpoint, seeds, task, seconds, latency, blend, guidance, workdir: Path,
                     interpolation: str = INTERPOLATION.default) -> dict:
    """The same through the ROS graph: sim_arm, policy_node and safety_node as separate processes, the lab
    ritual before every episode, and each inference made to take at least ``latency`` s."""
    from .graph_episodes import evaluate

    trace: dict = {}
    overrides = {"policy_node": {"blend": blend, "rtc_guidance": guidance, "emulated_inference_time": latency,
                                 "interpolation": interpolation}}
    results = evaluate(checkpoint, task, seeds, seconds, workdir, overrides=overrides, trace=trace)
    period = 1.0 / node_params(load_config(), "policy_node")["control_rate_hz"]
    steps, jerks, gaps, delays, interior = graph_splices(trace, period, interpolation)
    out = summary(sum(bool(r["success"]) for r in results), len(seeds), steps, jerks, gaps, [], latencies=delays,
                  interior=interior)
    out.pop("path_length_m_mean")
    return {**out, "episodes_reported": len(results)}


def targets(results: dict, latencies: list[float]) -> dict:
    """The goals of #18, where the run covers them."""
    out = {}
    rtc, cross = results.get("rtc"), results.get("crossfade")
    if rtc and "0.0" in rtc and "0.3" in rtc:
        out["rtc_0.3s_within_5_points_of_0s"] = rtc["0.3"]["success_rate"] >= rtc["0.0"]["success_rate"] - 0.05
    if rtc and cross:
        out["rtc_velocity_step_below_crossfade_every_latency"] = all(
            rtc[k]["boundary_velocity_step_max"] < cross[k]["boundary_velocity_step_max"] for k in map(str, latencies))
    return out


def main(argv=None) -> None:
    p = checkpoint_bench_parser("chunking", __doc__)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--latencies", type=float, nargs="+", default=[0.0, 0.1, 0.3, 0.6])
    p.add_argument("--blends", nargs="+", default=list(BLEND_POLICIES), choices=BLEND_POLICIES)
    p.add_argument("--cold-start", type=float, default=0.3, help="extra seconds the first inference takes")
    p.add_argument("--rtc-guidance", choices=["identity", "network"], default="identity",
                   help="policy_node's rtc_guidance for the rtc runs")
    p.add_argument("--interpolation", choices=INTERPOLATIONS, default=INTERPOLATION.default,
                   help="policy_node's interpolation between a chunk's actions (default: the node's)")
    p.add_argument("--graph", action="store_true", help="through the ROS graph instead (one graph per blend and "
                   "latency, policy_node's emulated_inference_time = the latency; --cold-start does not apply)")
    p.add_argument("--out", default="out/chunking-graph", help="--graph: where the graph logs go")
    args = p.parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    start = time.perf_counter()
    if args.graph:
        workdir = Path(args.out)
        workdir.mkdir(parents=True, exist_ok=True)
        results = {blend: {str(lat): run_graph_config(args.checkpoint, seeds, args.task, args.seconds, lat, blend,
                                                      args.rtc_guidance, workdir, args.interpolation)
                                for lat in args.latencies}
                   for blend in args.blends}
    else:
        policy = TwinBrainPolicy.from_checkpoint(args.checkpoint, device="cpu")
        sim = ArmSim(image_size=(224, 224))
        config = load_config()
        results = {blend: {str(lat): run_config(policy, sim, seeds, args.task, args.seconds, lat, blend, config,
                                                args.cold_start, args.rtc_guidance, args.interpolation)
                                for lat in args.latencies}
                   for blend in args.blends}
        sim.close()
    emit({"bench": "chunking", "through": "ros_graph" if args.graph else "in_process", "checkpoint": args.checkpoint,
          "task": args.task, "seeds": f"{seeds[0]}..{seeds[-1]}",
          "cold_start_s": None if args.graph else args.cold_start, "rtc_guidance": args.rtc_guidance,
          "interpolation": args.interpolation, "results": results,
          "targets": targets(results, args.latencies),
          "seconds": round(time.perf_counter() - start, 1)})


if __name__ == "__main__":
    main()
