"""`twinbrain-record sim --episodes N --out DIR` (the CLI: ``twinbrain_ros/record.py``): scripted-expert
demonstrations from the simulated arm, recorded headless (no ROS) straight into a LeRobot v3.0 dataset.

Observation at each frame: both cameras + joint positions; action: the expert's leader-arm joint
target at that instant (what a teleoperator's leader arm would publish); task: the instruction.

Behaviour cloning fails where the policy's own small errors take it to states no demonstration visited.
Four knobs widen what the demonstrations cover: ``start_spread`` (the arm starts anywhere within that
many radians of home), ``chain`` (the share of episodes that start where the last one ended, the scene
re-staged around the arm, as when nobody re-homes the robot between tasks), ``hold`` (seconds at the
final pose: what to do once the task is done) and
``perturb`` (DART, Laskey et al. 2017: the arm follows the leader plus a slowly wandering offset of that
standard deviation while the recorded action stays the clean leader target, so the data shows the way
back from off the path).

``cubes_per_scene`` (2 or 3, with a colour the spec leaves open) records each scene that many times,
naming another cube each time. With one instruction per scene, a policy can fit the demonstrations from
the layout alone and ignore the words; when the same scene leads to different cubes, only the words
tell the demonstrations apart (contrastive goals, as in language-conditioned imitation).
"""

from __future__ import annotations

import time

import numpy as np

from ..sim.arm_sim import ARM_JOINTS, ArmSim
from ..sim.expert import ScriptedExpert
from ..sim.tasks import COLOURS, MIXTURES
from .lerobot_v3 import Schema
from .lerobot_writer import LeRobotV3Writer


def record(out: str, episodes: int, fps: int = 10, task: str | None = None, first_seed: int = 0,
           image_size: tuple[int, int] = (96, 96), only_success: bool = True, codec: str = "h264",
           start_spread: float = 0.0, hold: float = 0.5, perturb: float = 0.0, chain: float = 0.0,
           cubes_per_scene: int = 1) -> dict:
    if not 1 <= cubes_per_scene <= len(COLOURS):
        raise ValueError(f"cubes_per_scene {cubes_per_scene}: expected 1..{len(COLOURS)}")
    spec = task or "mixture"
    if cubes_per_scene > 1 and not (spec in MIXTURES or spec.split(":")[1:2] == ["any"]):
        raise ValueError(f"cubes_per_scene {cubes_per_scene} needs a task whose colour is open "
                         f"(mixture or verb:any), not {spec!r}")
    sim = ArmSim(image_size=image_size)
    schema = Schema(fps, {cam: image_size for cam in sim.cameras}, ARM_JOINTS, ARM_JOINTS)
    writer = LeRobotV3Writer(out, schema, codec=codec)
    physics_per_frame = 1.0 / fps
    control_dt = 0.01
    kept, failed, seed, repeat, others = 0, [], first_seed, 0, []
    start = time.perf_counter()
    end_pose, chained = None, 0
    while kept < episodes:
        sub = [repeat] if repeat else []   # the first naming of a scene keeps the random streams of older datasets
        # chain: this episode starts where the last one ended, as on a robot that is not re-homed
        follow_on = end_pose is not None and np.random.default_rng([seed, 3, *sub]).random() < chain
        named = sim.reset(seed, task, start_spread, start=end_pose if follow_on else None,
                          cube=others[repeat - 1] if repeat else None)
        if repeat == 0:
            others = [c for c in COLOURS if c != named.cube]
        expert = ScriptedExpert(sim, hold)
        offset = _Wander(perturb, np.random.default_rng([seed, 2, *sub]))
        writer.start_episode(sim.task.instruction)
        t = 0.0
        while t < expert.duration:
            writer.add_frame({cam: sim.render(cam) for cam in sim.cameras}, sim.joint_positions(), expert.command(t), t)
            for _ in range(int(round(physics_per_frame / control_dt))):   # the arm keeps following the leader
                sim.set_targets(expert.command(t) + offset.step(control_dt))
                sim.step(control_dt)
                t += control_dt
        end_pose = sim.joint_positions()
        if sim.success() or not only_success:
            writer.finalize_episode()
            kept += 1
            chained += follow_on
        else:
            writer.discard_episode()
            failed.append(seed if cubes_per_scene == 1 else f"{seed}:{named.cube}")
        repeat = (repeat + 1) % cubes_per_scene
        seed += repeat == 0
    sim.close()
    return {"dataset": out, "episodes": kept, "total_episodes": writer.num_episodes, "discarded_failed_seeds": failed,
            "fps": fps, "start_spread": start_spread, "hold": hold, "perturb": perturb, "chain": chain,
            "chained_episodes": chained, "cubes_per_scene": cubes_per_scene, "scenes": seed - first_seed + (repeat > 0),
            "seconds": round(time.perf_counter() - start, 1)}


class _Wander:
    """An Ornstein-Uhlenbeck offset on the arm joints (gripper untouched): stationary standard deviation
    ``std`` rad, correlation time ``tau`` s, so the arm drifts off the path and back rather than jitters."""

    def __init__(self, std: float, rng: np.random.Generator, tau: float = 0.5, dim: int = 7):
        self.std, self.rng, self.tau = std, rng, tau
        self.value = np.zeros(dim)

    def step(self, dt: float) -> np.ndarray:
        if self.std > 0:
            decay = np.exp(-dt / self.tau)
            self.value[:6] = decay * self.value[:6] + self.std * np.sqrt(1 - decay ** 2) * self.rng.standard_normal(6)
        return self.value
