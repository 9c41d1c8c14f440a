"""`twinbrain-record sim --episodes N --out DIR` (the CLI: ``twinbrain_ros/record.py``): scripted-expert
demonstrations from the simulated arm, recorded headless (no ROS) straight into a LeRobot v3.0 dataset.

Observation at each frame: both cameras + joint positions; action: the expert's leader-arm joint
target at that instant (what a teleoperator's leader arm would publish); task: the instruction.
"""

from __future__ import annotations

import time

from ..sim.arm_sim import ARM_JOINTS, ArmSim
from ..sim.expert import ScriptedExpert
from .lerobot_v3 import Schema
from .lerobot_writer import LeRobotV3Writer


def record(out: str, episodes: int, fps: int = 10, task: str | None = None, first_seed: int = 0,
           image_size: tuple[int, int] = (96, 96), only_success: bool = True, codec: str = "h264") -> dict:
    sim = ArmSim(image_size=image_size)
    schema = Schema(fps, {cam: image_size for cam in sim.cameras}, ARM_JOINTS, ARM_JOINTS)
    writer = LeRobotV3Writer(out, schema, codec=codec)
    physics_per_frame = 1.0 / fps
    control_dt = 0.01
    kept, failed, seed = 0, [], first_seed
    start = time.perf_counter()
    while kept < episodes:
        sim.reset(seed, task)
        expert = ScriptedExpert(sim)
        writer.start_episode(sim.task.instruction)
        t = 0.0
        while t < expert.duration:
            writer.add_frame({cam: sim.render(cam) for cam in sim.cameras}, sim.joint_positions(), expert.command(t), t)
            for _ in range(int(round(physics_per_frame / control_dt))):   # the arm keeps following the leader
                sim.set_targets(expert.command(t))
                sim.step(control_dt)
                t += control_dt
        if sim.success() or not only_success:
            writer.finalize_episode()
            kept += 1
        else:
            writer.discard_episode()
            failed.append(seed)
        seed += 1
    sim.close()
    return {"dataset": out, "episodes": kept, "total_episodes": writer.num_episodes, "discarded_failed_seeds": failed,
            "fps": fps, "seconds": round(time.perf_counter() - start, 1)}
