"""The MuJoCo arm: determinism, rendering, JTC semantics, tasks and the scripted expert."""

import numpy as np
import pytest

from twinbrain_ros.sim.arm_sim import ARM_JOINTS, ArmSim
from twinbrain_ros.sim.expert import ScriptedExpert, run_episode
from twinbrain_ros.sim.tasks import COLOURS, PHRASINGS, all_tasks, draw, parse_instruction, validate_spec
from twinbrain_ros.sim.trajectory import TrajectoryFollower


@pytest.fixture(scope="module")
def sim():
    s = ArmSim(image_size=(96, 128))
    yield s
    s.close()


def _rollout(sim, seed):
    sim.reset(seed, "pick")
    states = []
    for k in range(100):
        sim.set_targets(sim.joint_positions() + 0.01 * np.sin(k / 10))
        sim.step(0.01)
        states.append(np.concatenate([sim.joint_positions(), sim.cube_pos("red")]))
    return np.array(states)


def test_physics_is_deterministic_given_a_seed(sim):
    a, b = _rollout(sim, 7), _rollout(sim, 7)
    np.testing.assert_array_equal(a, b)
    c = _rollout(sim, 8)
    assert not np.allclose(a[0, -3:], c[0, -3:])   # another seed places the cubes elsewhere


@pytest.mark.parametrize("dt", [0.005, 0.003, 0.01])
def test_simulated_time_keeps_pace_with_any_step_size(sim, dt):
    """sim_arm steps 5 ms per 200 Hz tick on a 2 ms physics step: one second of ticks must be one second
    of physics (rounding each tick to whole steps ran the arm at 80 % speed)."""
    sim.reset(0)
    start = sim.time
    ticks = int(round(1.0 / dt))
    for _ in range(ticks):
        sim.step(dt)
    assert abs(sim.time - start - ticks * dt) < sim.model.opt.timestep
    sim.step(0.0)
    assert abs(sim.time - start - ticks * dt) < sim.model.opt.timestep


def test_rendering_has_the_configured_size_and_sees_the_scene(sim):
    sim.reset(0)
    for cam in ("front", "wrist"):
        img = sim.render(cam)
        assert img.shape == (96, 128, 3) and img.dtype == np.uint8
        assert img.std() > 10   # not a blank frame
    red = sim.render("front")
    assert ((red[:, :, 0] > 150) & (red[:, :, 1] < 60) & (red[:, :, 2] < 60)).sum() > 3   # the red cube is in view


def test_trajectory_follower_has_jtc_semantics():
    f = TrajectoryFollower(["a", "b"], np.array([0.0, 0.0]))
    # stamp 0 = start now; interpolation from the current setpoint to the first point
    assert f.replace(["a", "b"], 0.0, [1.0, 2.0], [[1.0, 10.0], [2.0, 20.0]], now=5.0) == 2
    np.testing.assert_allclose(f.setpoint(5.5), [0.5, 5.0])
    np.testing.assert_allclose(f.setpoint(6.5), [1.5, 15.0])
    np.testing.assert_allclose(f.setpoint(99.0), [2.0, 20.0])          # hold after the end
    # a new trajectory replaces the active one, from the current setpoint; names reordered
    f.replace(["b", "a"], 0.0, [1.0], [[0.0, 0.0]], now=6.0)
    np.testing.assert_allclose(f.setpoint(6.0), [1.0, 10.0])
    np.testing.assert_allclose(f.setpoint(6.5), [0.5, 5.0])
    # stamped in the past: points already past are dropped; all past -> ignored
    assert f.replace(["a", "b"], 1.0, [1.0, 10.0], [[9.0, 9.0], [3.0, 3.0]], now=7.0) == 1
    np.testing.assert_allclose(f.setpoint(11.0), [3.0, 3.0])
    assert f.replace(["a", "b"], 1.0, [1.0], [[7.0, 7.0]], now=20.0) == 0
    np.testing.assert_allclose(f.setpoint(21.0), [3.0, 3.0])
    with pytest.raises(ValueError, match="do not match"):
        f.replace(["a"], 0.0, [1.0], [[1.0]], now=0.0)
    with pytest.raises(ValueError, match="NaN"):
        f.replace(["a", "b"], 0.0, [1.0], [[np.nan, 1.0]], now=0.0)


@pytest.mark.parametrize("task", all_tasks())
def test_scripted_expert_solves_each_task_on_the_named_cube_only(sim, task):
    """Every verb x colour (x push direction), with the other two cubes on the table: the expert succeeds
    and touches or moves no other cube (`twinbrain-bench expert` measures the rates over many seeds)."""
    for seed in (1, 2):
        assert run_episode(sim, seed, task), (task, seed)
        assert sim.wrong_objects() == [], (task, seed, sim.wrong_objects())


def test_tasks_are_chosen_by_the_instruction():
    rng = np.random.default_rng(0)
    drawn = [draw("mixture", rng) for _ in range(300)]
    assert {(t.name, t.cube) for t in drawn} == {(v, c) for v in PHRASINGS for c in COLOURS}   # all 9
    assert {t.direction for t in drawn if t.name == "push"} == {"left", "right"}
    assert len({t.instruction for t in drawn}) > 20                                     # several phrasings
    for task in drawn:
        assert parse_instruction(task.instruction) == task                             # words -> the same task
        assert task.cube in task.instruction and task.name in ("touch", "pick", "push")
    assert parse_instruction("Touch the RED cube.").cube == "red"
    assert parse_instruction("make me a sandwich") is None
    swapped = draw("push:red:right", rng).with_cube("blue")
    assert swapped.cube == "blue" and "blue" in swapped.instruction and "red" not in swapped.instruction
    assert draw("touch", rng).instruction == "touch the green cube"              # a verb alone: its old task
    with pytest.raises(ValueError, match="expected mixture"):
        validate_spec("touch:purple")


def test_success_and_wrong_object_follow_the_named_cube(sim):
    """The success detector checks the named cube: touching another one is a wrong object, not a success;
    retargeting the task (a new instruction) moves the detector."""
    sim.reset(4, "touch:red")
    other = next(c for c in COLOURS if c != "red")
    sim.set_task(draw(f"touch:{other}", np.random.default_rng(0)))
    assert run_episode_on_scene(sim)                          # the expert touches the retargeted cube
    assert sim.success() and not sim.success(draw("touch:red", np.random.default_rng(0)))
    assert sim.wrong_objects(draw("touch:red", np.random.default_rng(0))) == [other]


def run_episode_on_scene(sim, control_dt=0.01):
    expert = ScriptedExpert(sim)
    t = 0.0
    while t < expert.duration and not sim.success():
        sim.set_targets(expert.command(t))
        sim.step(control_dt)
        t += control_dt
    return sim.success()


def test_safety_limits_of_the_config_leave_the_demonstrations_untouched(sim):
    """What the scripted expert demonstrates must pass the safety node unclamped: a margin that cuts into
    it (0.01 on a gripper whose closed position is 0.0) hands the policy states it never saw in training."""

    from twinbrain_ros.nodes.safety_params import SafetyConfig

    limiter = SafetyConfig.from_config().limiter()
    for task in all_tasks():
        for seed in (1,):
            sim.reset(seed, task)
            expert = ScriptedExpert(sim)
            commands = np.array([expert.command(t) for t in np.arange(0.0, expert.duration, 0.05)])
            inside = (commands >= limiter.lower - 1e-9) & (commands <= limiter.upper + 1e-9)   # float rounding
            assert inside.all(), (task, seed, np.argwhere(~inside)[:3])


def test_reset_puts_the_arm_at_home_with_the_gripper_open(sim):
    from twinbrain_ros.sim.arm_sim import HOME

    for seed in (0, 1):
        sim.reset(seed, "pick")
        np.testing.assert_allclose(sim.joint_positions(), HOME, atol=2e-3)   # both fingers open, not dragged shut
        sim.step(0.5)
        np.testing.assert_allclose(sim.joint_positions(), HOME, atol=2e-3)


def test_a_start_spread_moves_only_the_arm_and_the_expert_still_solves_it(sim):
    from twinbrain_ros.sim.arm_sim import HOME

    sim.reset(4, "touch")
    cubes = {c: sim.cube_pos(c) for c in COLOURS}
    sim.reset(4, "touch", start_spread=0.3)
    start = sim.joint_positions()
    offset = np.abs(start[:6] - HOME[:6])
    assert offset.max() > 0.05 and offset.max() <= 0.3 + 2e-3 and abs(start[6] - HOME[6]) < 2e-3
    for c in COLOURS:                                      # the same scene: only the arm starts elsewhere
        np.testing.assert_allclose(sim.cube_pos(c), cubes[c], atol=1e-6)
    sim.reset(4, "touch", start_spread=0.3)
    np.testing.assert_allclose(sim.joint_positions(), start)   # deterministic given the seed
    assert all(run_episode(sim, s, "touch") for s in range(3))
    expert = ScriptedExpert(sim, hold=3.0)
    assert expert.duration == pytest.approx(expert.times[-1] + 3.0)


def test_an_episode_can_start_where_the_last_one_ended_and_the_expert_solves_it(sim):
    """``start``: a robot nobody re-homes. The scene is the seed's own, the arm starts at the given joints
    (the gripper opens), and the expert still solves the task from there."""
    from twinbrain_ros.sim.arm_sim import HOME

    assert run_episode(sim, 5, "touch")
    end = sim.joint_positions()
    assert np.abs(end[:6] - HOME[:6]).max() > 0.2          # touching took the arm well away from home
    sim.reset(6, "touch")
    cubes = {c: sim.cube_pos(c) for c in COLOURS}
    sim.reset(6, "touch", start=end)
    np.testing.assert_allclose(sim.joint_positions()[:6], end[:6], atol=2e-3)
    assert abs(sim.joint_positions()[6] - HOME[6]) < 2e-3
    for c in COLOURS:
        np.testing.assert_allclose(sim.cube_pos(c), cubes[c], atol=1e-6)
    expert = ScriptedExpert(sim)
    t = 0.0
    while t < expert.duration and not sim.success():
        sim.set_targets(expert.command(t))
        sim.step(0.01)
        t += 0.01
    assert sim.success()


def test_success_detectors_are_false_at_reset(sim):
    for task in all_tasks():
        sim.reset(3, task)
        assert not sim.success() and sim.wrong_objects() == []
    assert sim.joint_positions().shape == (len(ARM_JOINTS),)
