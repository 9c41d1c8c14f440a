"""`twinbrain-bench sensitivity --checkpoint DIR`: how much the plan moves when one joint reading moves.

From each seed's first observation (the sim at home), the policy plans once with the measured state
and once per joint with that joint's reading offset by ``--offset`` (both signs), with the same
flow-matching noise, so any change is the input's doing. Reported per joint: the largest change of any
arm joint's planned target over the chunk (rad), averaged over seeds and signs. A joint that never
moves in the demonstrations yet changes the plan a lot is a state input the policy over-reads: a few
mrad of settling on a real arm (or a controller pulling it) then sends it elsewhere.
"""

from __future__ import annotations

import numpy as np

from ..model import TwinBrainPolicy
from ..sim.arm_sim import ARM_JOINTS, ArmSim
from .stats import checkpoint_bench_parser, emit


def plan(policy: TwinBrainPolicy, images, state: np.ndarray, instruction: str, draws: int) -> np.ndarray:
    """Mean chunk over ``draws`` fixed noise seeds."""
    return np.mean([policy.predict(images, state, instruction, seed=k) for k in range(draws)], axis=0)


def sensitivity(policy: TwinBrainPolicy, sim: ArmSim, seeds, task: str, offset: float, draws: int) -> dict:
    change = np.zeros(len(ARM_JOINTS))
    for seed in seeds:
        target = sim.reset(seed, task)
        images, q = [sim.render(c) for c in policy.config.camera_names], sim.joint_positions()
        base = plan(policy, images, q, target.instruction, draws)
        for j in range(len(ARM_JOINTS)):
            for sign in (1.0, -1.0):
                moved = q.copy()
                moved[j] += sign * offset
                chunk = plan(policy, images, moved, target.instruction, draws)
                change[j] += np.abs(chunk[:, :6] - base[:, :6]).max() / (2 * len(seeds))
    return {name: round(float(c), 4) for name, c in zip(ARM_JOINTS, change)}


def main(argv=None) -> None:
    p = checkpoint_bench_parser("sensitivity", __doc__)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--offset", type=float, default=0.004, help="reading offset, in each joint's units (rad, m)")
    p.add_argument("--draws", type=int, default=4, help="noise seeds averaged per plan")
    args = p.parse_args(argv)
    policy = TwinBrainPolicy.from_checkpoint(args.checkpoint, device="cpu")
    sim = ArmSim(image_size=(224, 224))
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    result = sensitivity(policy, sim, seeds, args.task, args.offset, args.draws)
    sim.close()
    emit({"bench": "sensitivity", "checkpoint": args.checkpoint, "task": args.task, "seeds": args.seeds,
          "offset": args.offset, "max_plan_change_rad": result})


if __name__ == "__main__":
    main()
