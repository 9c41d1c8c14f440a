"""Real-time chunking: the soft mask, the online delay estimate (cold start left out), the guide built
from the executing plan, the runner handing it to the model, and the guided sampler of the shipped
checkpoint holding the frozen steps of a new chunk on the executing plan."""

import numpy as np
import pytest

from twinbrain_ros.bench.chunking import boundary_steps, graph_splices, run_config
from twinbrain_ros.graph import load_config, node_params
from twinbrain_ros.nodes.policy_params import runner_from_config
from twinbrain_ros.runtime.rtc import DelayEstimator, RtcGuide, guide_from_plan, soft_mask

CONFIG = load_config()
NAMES = node_params(CONFIG, "policy_node")["joint_names"]


def test_soft_mask_freezes_the_delay_then_decays_to_the_end_of_the_plan():
    w = soft_mask(16, frozen=3, overlap=10)
    assert np.all(w[:3] == 1.0) and np.all(w[10:] == 0.0)
    assert np.all(np.diff(w[3:10]) < 0) and 0 < w[9] < w[3] < 1
    assert np.all(soft_mask(8, frozen=6, overlap=4) == [1, 1, 1, 1, 0, 0, 0, 0])   # late: all that is left is frozen
    assert np.all(soft_mask(8, frozen=0, overlap=0) == 0)


def test_the_delay_estimate_leaves_out_the_cold_start_and_covers_the_tail():
    est = DelayEstimator(initial=0.1, window=8, quantile=0.9, warmup=2)
    assert est.estimate() == 0.1                 # nothing measured yet
    est.add(2.5)                                 # first inference: warm-up
    est.add(0.9)
    assert est.estimate() == 0.1                 # warm-up measurements never count
    for d in (0.20, 0.22, 0.21, 0.35, 0.20):
        est.add(d)
    assert 0.22 < est.estimate() <= 0.35         # a high quantile: the slow tail is covered
    est.add(float("nan"))
    assert np.isfinite(est.estimate())
    est.reset()
    est.add(3.0)
    assert est.estimate() == 0.1                 # re-activation: warm-up again


def test_the_guide_follows_the_plan_on_the_new_chunks_grid():
    plan_t = np.array([1.0, 1.5, 2.0])
    plan_v = np.array([[0.0, 1.0], [0.5, 1.0], [1.0, 1.0]])
    g = guide_from_plan(plan_t, plan_v, obs_stamp=1.2, step_period=0.1, horizon=16, delay=0.25)
    assert g.frozen == 3                                     # steps at 1.2, 1.3, 1.4 run before 1.45
    np.testing.assert_allclose(g.target[:9, 0], np.linspace(0.2, 1.0, 9), atol=1e-12)
    assert np.all(g.weights[:3] == 1) and g.weights[8] > 0 and np.all(g.weights[9:] == 0)   # plan ends at 2.0
    assert guide_from_plan(plan_t, plan_v, obs_stamp=2.5, step_period=0.1, horizon=16, delay=0.2) is None


def _runner(blend):
    runner = runner_from_config(CONFIG, ["front"], horizon=16, overrides={"blend": blend})
    runner.set_instruction("touch the red cube", 0.0)
    runner.activate(-0.01)
    return runner


def _observe(runner, t):
    runner.sync.add_joint_state(t, NAMES, np.zeros(len(NAMES)))
    runner.sync.add_frame("front", t, np.zeros((8, 8, 3), np.uint8), arrival=t)


def test_the_runner_guides_the_next_chunk_towards_the_executing_plan_only_with_rtc():
    for blend in ("rtc", "crossfade"):
        runner = _runner(blend)
        _observe(runner, 0.0)
        job = runner.next_job(0.0)
        assert job.guide is None                             # nothing executing yet
        chunk = np.repeat(np.zeros(len(NAMES))[None], 16, axis=0)
        chunk[:, 0] = 0.02 * np.arange(16)
        runner.accept(job, chunk, 0.1, 0.1)
        _observe(runner, 0.2)
        job = runner.next_job(0.2)
        if blend == "crossfade":
            assert job.guide is None
            continue
        times = 0.2 + 0.1 * np.arange(16)
        plan = np.array([runner.executor.setpoint(t)[0] for t in times])
        np.testing.assert_allclose(job.guide.target[:, 0], plan, atol=1e-9)
        assert job.guide.frozen == 1 and job.guide.weights[0] == 1.0   # no measured delay yet: 0.1 s assumed


def test_a_bad_rtc_parameter_is_refused_by_the_spec():
    with pytest.raises(ValueError):
        runner_from_config(CONFIG, ["front"], overrides={"rtc_guidance": "magic"})
    with pytest.raises(ValueError):
        runner_from_config(CONFIG, ["front"], overrides={"rtc_max_guidance": -1.0})


@pytest.fixture(scope="module")
def scene():
    from twinbrain_ros.demo import SHIPPED_CHECKPOINT
    from twinbrain_ros.model import TwinBrainPolicy
    from twinbrain_ros.sim.arm_sim import ArmSim

    policy = TwinBrainPolicy.from_checkpoint(SHIPPED_CHECKPOINT, device="cpu")
    sim = ArmSim()
    try:
        sim.reset(10_003, "touch")
        later = [sim.render(c) for c in policy.config.camera_names]
        sim.reset(10_000, "touch")
        images = [sim.render(c) for c in policy.config.camera_names]
        state = sim.joint_positions()
    finally:
        sim.close()
    # the executing plan: a chunk for another scene and state, far from what this observation gives
    plan = policy.predict(later, state + 0.05, "touch the green cube", seed=1)
    return policy, images, state, plan


def test_guided_sampling_holds_the_frozen_steps_on_the_executing_plan(scene):
    policy, images, state, plan = scene
    frozen = 5
    guide = RtcGuide(plan, soft_mask(16, frozen, 12), frozen, max_guidance=5.0)
    free = policy.predict(images, state, "touch the green cube", seed=3)
    guided = policy.predict(images, state, "touch the green cube", seed=3, guide=guide)
    free_gap, guided_gap = np.abs(free - plan)[:frozen].max(), np.abs(guided - plan)[:frozen].max()
    assert guided_gap < 0.5 * free_gap, (guided_gap, free_gap)
    assert np.all(np.isfinite(guided))
    exact = policy.predict(images, state, "touch the green cube", seed=3,
                           guide=RtcGuide(plan, guide.weights, frozen, 5.0, through_network=True))
    assert np.all(np.isfinite(exact)) and exact.shape == plan.shape
    nothing = RtcGuide(plan, np.zeros(16), 0)            # zero weights: exactly the unguided sample
    np.testing.assert_allclose(policy.predict(images, state, "touch the green cube", seed=3, guide=nothing), free,
                               atol=1e-5)


def test_a_malformed_guide_is_refused(scene):
    policy, images, state, plan = scene
    with pytest.raises(ValueError, match="RTC guide"):
        policy.predict(images, state, "touch the green cube", guide=RtcGuide(plan[:4], np.ones(4), 1))
    bad = plan.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="RTC guide"):
        policy.predict(images, state, "touch the green cube", guide=RtcGuide(bad, np.ones(16), 1))


def test_boundary_steps_see_a_splice_jump_and_not_a_smooth_ramp():
    dt = 0.01
    smooth = np.linspace(0, 1, 101)[:, None]
    jump = smooth.copy()
    jump[50:] += 0.1
    assert max(boundary_steps(smooth, [50], dt)[0]) < 1e-9
    steps, jerks = boundary_steps(jump, [50], dt)
    assert steps[0] == pytest.approx(10.0) and jerks[0] > 0


def test_boundary_steps_on_stamps_do_not_read_a_lost_message_as_a_jump():
    t = np.arange(101) * 0.01
    q = (t * 2.0)[:, None]
    keep = np.ones(101, bool)
    keep[49] = False                                   # one setpoint message lost just before the boundary
    assert max(boundary_steps(q[keep], [49], times=t[keep])[0]) < 1e-9
    assert max(boundary_steps(q[keep], [49], 0.01)[0]) > 1.0   # on a fixed grid the gap looks like a jump


def test_graph_splices_from_published_setpoints_and_chunks():
    """Two runs of setpoints (the ritual's pause between episodes); in each, the chunk that started it is no
    splice, the next one is: its gap is measured against the setpoint just before it took over. One that
    came during an e-stop is left out."""
    period, trace = 0.01, {"setpoints": [], "chunks": []}
    for start in (0.0, 10.0):
        for k in range(100):
            q = 2.0 if 82 <= k <= 88 else 0.5 if k >= 50 else 0.0   # 82..88: someone moved it while stopped
            trace["setpoints"].append((start + k * period, np.array([q])))
        trace["chunks"].append((start - 0.001, start - 0.1, 0.1, np.zeros((16, 1))))          # starts the run
        trace["chunks"].append((start + 0.5 + 0.002, start + 0.4, 0.1, np.full((16, 1), 0.5)))  # a splice at k=50
        trace["chunks"].append((start + 0.85, start + 0.8, 0.1, np.full((16, 1), 3.0)))   # during an e-stop
        trace.setdefault("pauses", []).append((start + 0.8, start + 0.9))
    steps, jerks, gaps, delays, interior = graph_splices(trace, period)
    assert len(steps) == len(gaps) == 2
    # away from the splices the setpoints stand still; the jump inside the e-stop's pause is left out
    assert len(interior) > 150 and max(interior) == 0.0
    assert steps == pytest.approx([50.0, 50.0])   # 0.5 rad in one tick
    assert gaps == pytest.approx([0.5, 0.5])
    assert delays == pytest.approx([0.099, 0.102, 0.05, 0.099, 0.102, 0.05])


def test_chunking_bench_runs_the_node_runner_in_process_with_one_delay_estimate():
    """One short rtc episode per seed through rollout_like_graph, as `twinbrain-bench chunking` runs it: the
    figures come back, and the guides froze steps (the delay estimate carried from the first episode on)."""
    from twinbrain_ros.demo import SHIPPED_CHECKPOINT
    from twinbrain_ros.model import TwinBrainPolicy
    from twinbrain_ros.sim.arm_sim import ArmSim

    policy = TwinBrainPolicy.from_checkpoint(SHIPPED_CHECKPOINT, device="cpu")
    sim = ArmSim()
    try:
        result = run_config(policy, sim, [10000, 10001], "touch", 1.5, 0.3, "rtc", load_config(), 0.3, "identity")
    finally:
        sim.close()
    assert result["chunks"] > 0 and result["frozen_steps_mean"] >= 1
    assert 0 <= result["success_rate"] <= 1 and result["boundary_velocity_step_max"] >= 0
