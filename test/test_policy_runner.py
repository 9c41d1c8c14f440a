"""PolicyRunner without ROS: what policy_node does between synchronized inputs and setpoints —
newest-observation jobs, instruction versions, the reset cutoff, admission, stale chunks, the control
tick's freshness rule and the latency trace."""

import numpy as np

from twinbrain_ros.graph import load_config, node_params
from twinbrain_ros.nodes.policy_params import runner_from_config

CONFIG = load_config()
PARAMS = node_params(CONFIG, "policy_node")
NAMES = PARAMS["joint_names"]
MAX_AGE = runner_from_config(CONFIG).sync.max_age
IMAGE = np.zeros((32, 32, 3), np.uint8)


def runner_at(t=0.0, instruction="touch the red cube"):
    runner = runner_from_config(CONFIG, ["front"])
    runner.set_instruction(instruction, t)
    runner.activate(t - 0.01)
    return runner


def observe(runner, t, q=None):
    q = np.zeros(len(NAMES)) if q is None else q
    runner.sync.add_joint_state(t, NAMES, q)
    obs = runner.sync.add_frame("front", t, IMAGE, arrival=t)
    runner.observation_completed(obs.stamp, t)


def chunk_from(q, steps=16, speed=0.05):
    """A feasible chunk: every joint ramps from ``q`` at ``speed`` rad per step (the gripper stays)."""
    rows = np.repeat(np.asarray(q, float)[None], steps, axis=0)
    rows[:, :-1] += speed * np.arange(steps)[:, None]
    return rows


def test_each_observation_is_inferred_once_per_instruction():
    runner = runner_at()
    observe(runner, 0.0)
    job = runner.next_job(0.01)
    assert job is not None and job.stamp == 0.0 and job.instruction == "touch the red cube"
    assert runner.next_job(0.02) is None                       # already taken
    runner.set_instruction("touch the blue cube", 0.03)
    again = runner.next_job(0.03)                               # the same frame, for the new words
    assert again is not None and again.stamp == 0.0 and again.instruction == "touch the blue cube"


def test_a_chunk_runs_then_a_reset_drops_it_and_older_inferences():
    runner = runner_at()
    observe(runner, 0.0)
    job = runner.next_job(0.0)
    accepted = runner.accept(job, chunk_from(job.state), 0.05, 0.05)
    assert accepted is not None and runner.stats["chunks"] == 1
    observe(runner, 0.1)
    assert np.all(np.isfinite(runner.tick(0.1)))
    stale = runner.next_job(0.1)                                # inference running when the reset comes
    runner.reset(0.12)
    assert runner.tick(0.12) is None and runner.refusal == "waiting for the first action chunk"
    assert runner.accept(stale, chunk_from(stale.state), 0.05, 0.15) is None   # planned for the old scene
    assert runner.next_job(0.15) is None                        # the frame at 0.1 is from before the reset
    observe(runner, 0.2)
    assert runner.next_job(0.2).stamp == 0.2


def test_an_instruction_change_while_inferring_holds_and_discards_the_old_plan():
    runner = runner_at()
    observe(runner, 0.0)
    first = runner.next_job(0.0)
    runner.accept(first, chunk_from(first.state), 0.05, 0.05)
    observe(runner, 0.3)
    held = runner.tick(0.3)
    job = runner.next_job(0.3)
    runner.set_instruction("touch the green cube", 0.3)
    assert runner.accept(job, chunk_from(job.state), 0.05, 0.35) is None
    observe(runner, 0.4)
    np.testing.assert_allclose(runner.tick(0.4), held)         # holds where it was until the new plan


def test_rejected_chunks_and_model_errors_stop_motion_with_a_reason():
    runner = runner_at()
    observe(runner, 0.0)
    job = runner.next_job(0.0)
    bad = chunk_from(job.state)
    bad[3, 0] = np.nan
    assert runner.accept(job, bad, 0.05, 0.05) is None
    assert runner.rejection.startswith("chunk rejected") and runner.stats["rejected_chunks"] == 1
    observe(runner, 0.1)
    job = runner.next_job(0.1)
    runner.accept(job, chunk_from(job.state), 0.05, 0.15)
    runner.failed("RuntimeError: boom")
    observe(runner, 0.2)
    assert runner.tick(0.2) is None and runner.refusal == "RuntimeError: boom"
    assert not runner.executor.active and runner.stats["model_errors"] == 1


def test_stale_inputs_stop_the_stream_and_the_trace_splits_the_delay():
    runner = runner_at()
    observe(runner, 0.0)
    job = runner.next_job(0.004)
    runner.accept(job, chunk_from(job.state), 0.05, 0.056)
    assert runner.tick(0.06) is not None
    overhead = runner.stats["overhead"][-1]
    np.testing.assert_allclose([overhead["queue"], overhead["compute"], overhead["handoff"], overhead["total"]],
                               [0.004, 0.05, 0.002, 0.06], atol=1e-9)
    late = MAX_AGE + 0.1                  # no frame since 0.0
    assert runner.tick(late) is None and "too old" in runner.refusal and not runner.executor.active


def test_inactive_runs_nothing():
    runner = runner_at()
    runner.deactivate()
    observe(runner, 0.0)
    assert runner.next_job(0.0) is None and runner.tick(0.0) is None and runner.refusal == "inactive"
