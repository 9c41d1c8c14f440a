"""Bench diagnostics on the real tiny policy: `rollout --graph-latency` (the ROS graph's execution replayed
in-process, in sim time) and `sensitivity` (how much the plan moves with one joint reading)."""

import numpy as np


class CountingPolicy:
    """The real tiny policy, counting observations and remembering the chunks it returned."""

    def __init__(self, policy):
        self.policy, self.config, self.chunks = policy, policy.config, []

    def predict(self, *args, **kwargs):
        self.chunks.append(self.policy.predict(*args, **kwargs))
        return self.chunks[-1]


def test_graph_like_rollout_runs_chunks_through_executor_and_limiter(tiny_base_dirs):
    from twinbrain_ros.bench.rollout import rollout_like_graph
    from twinbrain_ros.graph import load_config, node_params
    from twinbrain_ros.model import TwinBrainPolicy
    from twinbrain_ros.sim.arm_sim import ArmSim

    config = load_config()
    shared = node_params(config, "safety_node")
    base = TwinBrainPolicy.from_tiny_preset(tiny_base_dirs["qwen3_vl"], camera_names=["front", "wrist"])
    policy = CountingPolicy(base)
    sim = ArmSim(image_size=(64, 64))
    try:
        result = rollout_like_graph(policy, sim, seed=10_000, task="touch", seconds=1.0, latency=0.25, config=config)
        q = sim.joint_positions()
    finally:
        sim.close()
    assert result["success"] in (False, True) and result["tcp"].shape == (3,) and result["cube"].shape == (3,)
    assert len(policy.chunks) == 4            # one observation at 0, 0.25, 0.5, 0.75 s of sim time
    assert not np.allclose(policy.chunks[0], policy.chunks[1])   # fresh noise per chunk, as in the node
    margin = np.asarray(shared["position_margin"])
    lower, upper = np.asarray(shared["joint_lower"]) + margin, np.asarray(shared["joint_upper"]) - margin
    assert np.all(q >= lower - 0.02) and np.all(q <= upper + 0.02)   # the arm follows the limited setpoints


def test_state_sensitivity_is_zero_without_an_offset_and_grows_with_one(tiny_base_dirs):
    """The same noise for both plans: a zero offset changes nothing, so any change is the input's doing."""
    from twinbrain_ros.bench.sensitivity import sensitivity
    from twinbrain_ros.model import TwinBrainPolicy
    from twinbrain_ros.sim.arm_sim import ARM_JOINTS, ArmSim

    policy = TwinBrainPolicy.from_tiny_preset(tiny_base_dirs["qwen3_vl"], camera_names=["front", "wrist"])
    sim = ArmSim(image_size=(64, 64))
    try:
        none = sensitivity(policy, sim, [10_000], "touch", offset=0.0, draws=2)
        large = sensitivity(policy, sim, [10_000], "touch", offset=0.5, draws=2)
    finally:
        sim.close()
    assert list(none) == ARM_JOINTS and all(v == 0.0 for v in none.values())
    assert all(v >= 0.0 for v in large.values()) and max(large.values()) > 0.0
