"""`twinbrain-bench rollout --checkpoint DIR`: where a policy takes the arm, without ROS.

A diagnostic next to the closed loop: the policy drives the simulated arm in-process (receding
horizon: predict a chunk, follow its first ``--execute`` steps, predict again), on the closed loop's
unseen seeds. Per episode it reports success and the closest the gripper came to the target cube,
split into horizontal and vertical error, plus how the gripper's x/y at that moment correlate with
the cube's across episodes (1.0: it goes where the cube is; 0: it ignores the image).
"""

from __future__ import annotations

import argparse

import numpy as np

from ..model import TwinBrainPolicy
from ..sim.arm_sim import ArmSim
from .stats import emit


def rollout(policy: TwinBrainPolicy, sim: ArmSim, seed: int, task: str, seconds: float, execute: int) -> dict:
    target = sim.reset(seed, task)
    step = 1.0 / 10   # the dataset's fps: one chunk row per 0.1 s
    t, best = 0.0, None
    while t < seconds:
        images = [sim.render(c) for c in policy.config.camera_names]
        chunk = policy.predict(images, sim.joint_positions(), target.instruction, seed=0)
        for row in chunk[:execute]:
            sim.set_targets(row)
            sim.step(step)
            t += step
            tcp, cube = sim.tcp_pos(), sim.cube_pos(target.cube)
            if best is None or np.linalg.norm(tcp - cube) < np.linalg.norm(best[0] - best[1]):
                best = (tcp, cube)
            if sim.success():
                return {"success": True, "tcp": best[0], "cube": best[1]}
    return {"success": False, "tcp": best[0], "cube": best[1]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="twinbrain-bench rollout", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--task", default="touch")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=10_000, help="the closed loop's unseen seeds")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--execute", type=int, default=8, help="chunk steps followed before predicting again")
    args = p.parse_args(argv)
    policy = TwinBrainPolicy.from_checkpoint(args.checkpoint, device="cpu")
    sim = ArmSim(image_size=(224, 224))
    runs = [rollout(policy, sim, s, args.task, args.seconds, args.execute)
            for s in range(args.first_seed, args.first_seed + args.episodes)]
    sim.close()
    tcp, cube = np.array([r["tcp"] for r in runs]), np.array([r["cube"] for r in runs])
    corr = [float(np.corrcoef(tcp[:, k], cube[:, k])[0, 1]) for k in (0, 1)]
    emit({"bench": "rollout", "checkpoint": args.checkpoint, "task": args.task, "episodes": len(runs),
          "successes": sum(r["success"] for r in runs),
          "closest_xy_error_m_mean": round(float(np.linalg.norm(tcp[:, :2] - cube[:, :2], axis=1).mean()), 4),
          "closest_height_above_cube_m_mean": round(float((tcp[:, 2] - cube[:, 2]).mean()), 4),
          "corr_x": round(corr[0], 3), "corr_y": round(corr[1], 3),
          "gripper_y_range_m": round(float(np.ptp(tcp[:, 1])), 3), "cube_y_range_m": round(float(np.ptp(cube[:, 1])), 3)})


if __name__ == "__main__":
    main()
