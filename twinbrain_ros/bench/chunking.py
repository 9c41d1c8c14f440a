"""`twinbrain-bench chunking --checkpoint DIR`: how chunks are spliced, under inference latency.

For every blend (replace / crossfade / average / rtc) and injected latency, the simulated arm runs in
process and in sim time, driven by policy_node's own PolicyRunner and safety_node's limiter
(bench/rollout.py ``rollout_like_graph``): a chunk takes effect ``latency`` s after its observation
(the first one ``--cold-start`` s later still, as a model's warm-up does), so the figures are about
the splicing, not about this host's speed. Same seeds and noise draws for every blend.

Per blend and latency: success rate; at the ticks where a new chunk takes over, the largest step in
commanded joint velocity (rad/s) and jerk (rad/s³) and the gap between the plan being executed and the
new chunk at that instant (rad: what the blend has to hide); the TCP path length (m) to success; for
rtc the mean number of frozen steps it asked for. One JSON line; ``targets`` checks the goals of #18:
rtc at 0.3 s within 5 points of its 0 s success, and smaller boundary velocity steps than crossfade at
every latency.
"""

from __future__ import annotations

import time

import numpy as np

from ..graph import load_config, node_params
from ..model import TwinBrainPolicy
from ..runtime.chunk_executor import BLEND_POLICIES
from ..sim.arm_sim import ArmSim
from .rollout import rollout_like_graph
from .stats import checkpoint_bench_parser, emit


def boundary_steps(setpoints: np.ndarray, boundaries: list[int], dt: float) -> tuple[list[float], list[float]]:
    """Per chunk boundary (index of the first setpoint from the new chunk): the largest change of velocity
    over the boundary tick and the next (rad/s), and the largest jerk over the three ticks from it
    (rad/s³), both over all joints."""
    q = np.asarray(setpoints, np.float64)
    v = np.diff(q, axis=0) / dt                    # v[i]: from setpoint i to i+1
    dv = np.abs(np.diff(v, axis=0))                # dv[i]: velocity change at setpoint i+1
    jerk = np.abs(np.diff(q, n=3, axis=0)) / dt ** 3
    steps, jerks = [], []
    for b in boundaries:
        window = dv[max(b - 1, 0):b + 1]           # changes at setpoints b and b+1
        if len(window):
            steps.append(float(window.max()))
        jw = jerk[max(b - 2, 0):b + 1]
        if len(jw):
            jerks.append(float(jw.max()))
    return steps, jerks


def run_config(policy, sim, seeds, task, seconds, latency, blend, config, cold_start, guidance) -> dict:
    dt = 1.0 / node_params(config, "safety_node")["control_rate_hz"]
    successes, steps, jerks, gaps, paths, frozen = 0, [], [], [], [], []
    for seed in seeds:
        trace: dict = {}
        result = rollout_like_graph(policy, sim, seed, task, seconds, latency, config,
                                    overrides={"blend": blend, "rtc_guidance": guidance}, cold_start=cold_start,
                                    trace=trace)
        successes += result["success"]
        s, j = boundary_steps(trace["setpoints"], trace["boundaries"], dt)
        steps += s
        jerks += j
        gaps += trace["splice_gaps"]
        frozen += trace["frozen"]
        if result["success"]:
            paths.append(float(np.linalg.norm(np.diff(np.asarray(trace["tcp"]), axis=0), axis=1).sum()))
    return {"success_rate": round(successes / len(seeds), 3),
            "boundary_velocity_step_max": round(max(steps, default=0.0), 4),
            "boundary_velocity_step_p95": round(float(np.percentile(steps, 95)) if steps else 0.0, 4),
            "boundary_jerk_max": round(max(jerks, default=0.0), 1),
            "splice_gap_p95_rad": round(float(np.percentile(gaps, 95)) if gaps else 0.0, 4),
            "path_length_m_mean": round(float(np.mean(paths)), 3) if paths else None,
            "chunks": len(steps), **({"frozen_steps_mean": round(float(np.mean(frozen)), 2)} if frozen else {})}


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
    args = p.parse_args(argv)
    policy = TwinBrainPolicy.from_checkpoint(args.checkpoint, device="cpu")
    sim = ArmSim(image_size=(224, 224))
    config = load_config()
    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    start = time.perf_counter()
    results = {blend: {str(lat): run_config(policy, sim, seeds, args.task, args.seconds, lat, blend, config,
                                            args.cold_start, args.rtc_guidance) for lat in args.latencies}
               for blend in args.blends}
    sim.close()
    emit({"bench": "chunking", "checkpoint": args.checkpoint, "task": args.task, "seeds": f"{seeds[0]}..{seeds[-1]}",
          "cold_start_s": args.cold_start, "rtc_guidance": args.rtc_guidance, "results": results,
          "targets": targets(results, args.latencies),
          "seconds": round(time.perf_counter() - start, 1)})


if __name__ == "__main__":
    main()
