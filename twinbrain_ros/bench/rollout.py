"""`twinbrain-bench rollout --checkpoint DIR`: where a policy takes the arm, without ROS.

A diagnostic next to the closed loop: the policy drives the simulated arm in-process (receding
horizon: predict a chunk, follow its first ``--execute`` steps, predict again), on the closed loop's
unseen seeds. Per episode it reports success and the closest the gripper came to the target cube,
split into horizontal and vertical error, plus how the gripper's x/y at that moment correlate with
the cube's across episodes (1.0: it goes where the cube is; 0: it ignores the image).

``--graph-latency S`` executes the way the ROS graph does instead, still in-process and in sim time:
policy_node's own PolicyRunner (synchronizer, chunk admission, executor; settings from the layered
config) at the control rate, a chunk taking effect S seconds after its observation, fresh noise per
chunk, and every setpoint through the safety limiter built from the same config. It separates what the model
does from what the graph (transport, timing under load, processes) does to it.
"""

from __future__ import annotations

import numpy as np

from ..graph import load_config, node_params
from ..model import TwinBrainPolicy
from ..nodes.policy_params import runner_from_config
from ..nodes.safety_params import SafetyConfig
from ..runtime.chunk_executor import interpolate
from ..runtime.rtc import DelayEstimator
from ..sim.arm_sim import ArmSim, ClosestApproach
from .stats import checkpoint_bench_parser, emit


def _done(closest: ClosestApproach) -> bool:
    """Per physics tick: track the closest approach, then ask the task's success detector."""
    closest.update()
    return closest.sim.success()


def _result(closest: ClosestApproach, success: bool) -> dict:
    return {"success": success, "tcp": closest.tcp, "cube": closest.cube}


def rollout(policy: TwinBrainPolicy, sim: ArmSim, seed: int, task: str, seconds: float, execute: int) -> dict:
    target = sim.reset(seed, task)
    closest, step, t = ClosestApproach(sim), 1.0 / 10, 0.0   # the dataset's fps: a chunk row per 0.1 s
    while t < seconds:
        images = [sim.render(c) for c in policy.config.camera_names]
        chunk = policy.predict(images, sim.joint_positions(), target.instruction, seed=0)
        for row in chunk[:execute]:
            sim.set_targets(row)
            sim.step(step)
            t += step
            if _done(closest):
                return _result(closest, True)
    return _result(closest, False)


def rollout_like_graph(policy: TwinBrainPolicy, sim: ArmSim, seed: int, task: str, seconds: float,
                       latency: float, config: dict, camera_hz: float = 10.0, overrides: dict | None = None,
                       cold_start: float = 0.0, trace: dict | None = None, delay: DelayEstimator | None = None
                       ) -> dict:
    """policy_node's runner (the same PolicyRunner object, built from the same parameters, ``overrides``
    on top) and safety_node's limiter, in sim time: joint states every control tick, camera frames at
    ``camera_hz``, one inference at a time taking ``latency`` s (the first after activation
    ``cold_start`` s more: model warm-up), fresh noise per chunk, as in the node.
    ``trace`` (a dict) receives the runner's setpoints per tick, the ticks where a new chunk took over
    from a running plan (and those where one started from none),
    the TCP path, the gap between plan and new chunk at each splice and the frozen steps each rtc guide
    asked for. ``delay``: the rtc delay estimate carried over from earlier episodes, as policy_node keeps it
    from one episode to the next (only an activation restarts it)."""
    shared = node_params(config, "safety_node")
    names, dt = shared["joint_names"], 1.0 / shared["control_rate_hz"]
    cameras = list(policy.config.camera_names)
    target = sim.reset(seed, task)
    runner = runner_from_config(config, cameras, policy.config.chunk_length, overrides)
    sync = runner.sync
    runner.set_instruction(target.instruction, 0.0)
    runner.activate(-dt)
    if delay is not None:
        runner.delay = delay
    limiter = SafetyConfig.from_config(config).limiter()
    limiter.reset(sim.joint_positions(), 0.0)
    closest, rng, pending, tick, frame_every = ClosestApproach(sim), np.random.default_rng(seed), None, 0, \
        max(1, round(1.0 / (camera_hz * dt)))
    log = trace if trace is not None else {}
    log.update(setpoints=[], boundaries=[], starts=[], tcp=[], frozen=[], splice_gaps=[])
    inferences = 0
    while tick * dt < seconds:
        t = tick * dt
        sync.add_joint_state(t, names, sim.joint_positions())
        if tick % frame_every == 0:
            for cam in cameras:
                sync.add_frame(cam, t, sim.render(cam), arrival=t)
        if pending is not None and t >= pending[2] - 1e-9:
            before = runner.executor.setpoint(t)
            if runner.accept(pending[0], pending[1], pending[2] - pending[0].started, t) is not None:
                # a chunk that takes over from no plan starts the motion: no splice (as in graph_splices)
                log["boundaries" if before is not None else "starts"].append(len(log["setpoints"]))
                # how far the new chunk is from the plan it takes over from, at t
                if before is not None and trace is not None:
                    job, chunk = pending[0], pending[1]
                    new = interpolate(job.stamp + runner.step_period * np.arange(len(chunk)), chunk, np.array([t]),
                                      runner.executor.interpolation)[0]
                    log["splice_gaps"].append(float(np.abs(new - before).max()))
            pending = None
        if pending is None:
            job = runner.next_job(t)
            if job is not None:
                chunk = policy.predict(job.images, job.state, job.instruction, seed=int(rng.integers(1 << 31)),
                                       guide=job.guide)
                pending = (job, chunk, t + latency + (cold_start if inferences == 0 else 0.0))
                inferences += 1
                if job.guide is not None:
                    log["frozen"].append(job.guide.frozen)
        setpoint = runner.tick(t)
        if setpoint is not None:
            log["setpoints"].append(setpoint)
            sim.set_targets(limiter.limit(names, setpoint, t).positions)
        sim.step(dt)
        if trace is not None:
            log["tcp"].append(sim.tcp_pos())
        tick += 1
        if _done(closest):
            return _result(closest, True)
    return _result(closest, False)


def main(argv=None) -> None:
    p = checkpoint_bench_parser("rollout", __doc__)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--execute", type=int, default=8, help="chunk steps followed before predicting again")
    p.add_argument("--graph-latency", type=float, default=0.0,
                   help="> 0: execute like the ROS graph (executor, safety limiter) with this inference latency (s)")
    args = p.parse_args(argv)
    policy = TwinBrainPolicy.from_checkpoint(args.checkpoint, device="cpu")
    sim = ArmSim(image_size=(224, 224))
    seeds = range(args.first_seed, args.first_seed + args.episodes)
    if args.graph_latency > 0:
        config = load_config()
        runs = [rollout_like_graph(policy, sim, s, args.task, args.seconds, args.graph_latency, config) for s in seeds]
    else:
        runs = [rollout(policy, sim, s, args.task, args.seconds, args.execute) for s in seeds]
    sim.close()
    tcp, cube = np.array([r["tcp"] for r in runs]), np.array([r["cube"] for r in runs])
    corr = [float(np.corrcoef(tcp[:, k], cube[:, k])[0, 1]) for k in (0, 1)]
    emit({"bench": "rollout", "checkpoint": args.checkpoint, "task": args.task, "episodes": len(runs),
          "graph_latency_s": args.graph_latency,
          "successes": sum(r["success"] for r in runs),
          "closest_xy_error_m_mean": round(float(np.linalg.norm(tcp[:, :2] - cube[:, :2], axis=1).mean()), 4),
          "closest_height_above_cube_m_mean": round(float((tcp[:, 2] - cube[:, 2]).mean()), 4),
          "corr_x": round(corr[0], 3), "corr_y": round(corr[1], 3),
          "gripper_y_range_m": round(float(np.ptp(tcp[:, 1])), 3), "cube_y_range_m": round(float(np.ptp(cube[:, 1])),
                                                                                           3)})


if __name__ == "__main__":
    main()
