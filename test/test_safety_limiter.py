"""Safety limiter, tested like libfranka / ros2_control: ε inside passes, ε outside is limited, and
after limiting every output satisfies every limit, also for adversarial random streams."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinbrain_ros.runtime.safety import CommandRejected, JointLimit, SafetyLimiter, WorkspaceBox

DT, EPS = 0.01, 1e-3
NAMES = ["j1", "j2", "j3"]


def make(max_step=None, margin=0.05, jerk=None):
    limits = [JointLimit(n, -1.0, 1.0, max_velocity=2.0, max_acceleration=20.0, max_jerk=jerk) for n in NAMES]
    lim = SafetyLimiter(limits, DT, position_margin=margin, max_step=max_step, timeout=0.1)
    lim.reset(np.zeros(3), now=0.0)
    return lim


def check_outputs(outputs, lim, tol=1e-9):
    q = np.array(outputs)
    assert np.all(np.isfinite(q))
    assert np.all(q >= lim.lower - tol) and np.all(q <= lim.upper + tol)
    v = np.diff(q, axis=0) / DT
    assert np.all(np.abs(v) <= lim.vmax + 1e-6)
    a = np.diff(v, axis=0) / DT
    assert np.all(np.abs(a) <= lim.amax + 1e-6)
    return v, a


def ramp_to(lim, target, steps=400, speed=None):
    """Step command (speed=None) or a feasible constant-speed ramp towards ``target``."""
    out, now, cmd = [lim.q.copy()], 0.0, lim.q.copy()
    for _ in range(steps):
        now += DT
        cmd = target if speed is None else cmd + np.clip(target - cmd, -speed * DT, speed * DT)
        out.append(lim.limit(NAMES, cmd, now).positions)
    return out


def test_position_eps_inside_passes_and_eps_outside_is_clamped():
    lim = make()
    inside = np.full(3, 0.95 - EPS)
    out = ramp_to(lim, inside, steps=700, speed=0.2)
    np.testing.assert_allclose(out[-1], inside, atol=1e-9)
    assert not lim.limit(NAMES, inside, 10.0).acted["position"].any()
    res = lim.limit(NAMES, np.full(3, 0.95 + EPS), 10.01)
    assert res.acted["position"].all() and np.all(res.positions <= 0.95 + 1e-12)
    check_outputs(out, lim)


def test_velocity_eps_inside_passes_and_eps_outside_is_limited():
    for factor, limited in ((1 - EPS, False), (1 + EPS, True)):
        lim = make()
        speed, now, out = 2.0 * factor, 0.0, [lim.q.copy()]
        # accelerate within limits, then command a constant-speed ramp
        v = 0.0
        target = 0.0 - 0.9
        lim.reset(np.full(3, -0.9), 0.0)
        out = [lim.q.copy()]
        acted = False
        for _ in range(3):      # the stream starts at rest, so its velocity is known from the first move
            now += DT
            out.append(lim.limit(NAMES, np.full(3, target), now).positions)
        for k in range(60):
            now += DT
            v = min(speed, v + 20.0 * DT * (1 - EPS))
            target += v * DT
            res = lim.limit(NAMES, np.full(3, target), now)
            out.append(res.positions)
            if k > 20 and target < 0.3:
                acted |= bool(res.acted["velocity"].any())
        assert acted == limited
        check_outputs(out, lim)


def test_acceleration_is_limited_for_a_step_command():
    lim = make()
    out = ramp_to(lim, np.array([0.9, -0.9, 0.5]), steps=200)
    _, a = check_outputs(out, lim)
    assert np.abs(a).max() > 19.0        # it did use the available acceleration
    np.testing.assert_allclose(out[-1], [0.9, -0.9, 0.5], atol=1e-6)


def test_max_step_per_command():
    lim = make(max_step=0.001)
    res = lim.limit(NAMES, np.full(3, 0.5), DT)
    assert res.acted["step"].all() and np.all(np.abs(res.positions) <= 0.001 + 1e-12)


def test_jerk_limit_smooths_acceleration():
    lim = make(jerk=500.0)
    out = ramp_to(lim, np.full(3, 0.5), steps=300)
    q = np.array(out)
    a = np.diff(q, 2, axis=0) / DT**2
    assert np.abs(np.diff(a[:4], axis=0) / DT).max() <= 500.0 + 1e-6    # acceleration builds up at max jerk
    assert a[0].max() < 20.0 - 1e-6                                          # not at once
    np.testing.assert_allclose(out[-1], 0.5, atol=1e-3)


def test_names_are_reordered_and_bad_commands_rejected_and_counted():
    lim = make()
    res = lim.limit(["j3", "j1", "j2"], [0.0003, 0.0001, 0.0002], DT)
    assert res.positions[0] < res.positions[1] < res.positions[2]
    for names, values, kind in [(["j1", "j2", "jX"], [0, 0, 0], "unknown_joint"), (["j1", "j2"], [0, 0], "missing_joint"),
                                (NAMES, [0, np.nan, 0], "nan"), (NAMES, [0, np.inf, 0], "nan"),
                                (["j1", "j1", "j2", "j3"], [0, 0, 0, 0], "malformed")]:
        with pytest.raises(CommandRejected) as err:
            lim.limit(names, values, 2 * DT)
        assert err.value.kind == kind
        assert lim.counters[kind] >= 1


def test_watchdog_decelerates_to_hold_within_limits():
    lim = make()
    out, now = [lim.q.copy()], 0.0
    for _ in range(30):                       # moving fast towards 0.9
        now += DT
        out.append(lim.limit(NAMES, np.full(3, 0.9), now).positions)
    moving = np.abs(lim.v).max()
    assert moving > 0.5
    t = now
    for _ in range(100):
        t += DT
        out.append(lim.step(t).positions)
        if t - now > 0.1 + DT:
            assert lim.watchdog_active, "watchdog must act within one control period after the timeout"
    check_outputs(out, lim)
    assert np.abs(lim.v).max() < 1e-9 and lim.counters["watchdog"] == 1


def test_estop_latches_until_release():
    lim = make()
    for k in range(10):
        lim.limit(NAMES, np.full(3, 0.5), (k + 1) * DT)
    lim.latch_estop()
    with pytest.raises(CommandRejected, match="e-stop"):
        lim.limit(NAMES, np.full(3, 0.5), 0.2)
    out = [lim.q.copy()]
    for k in range(50):
        out.append(lim.step(0.2 + k * DT).positions)
    check_outputs(out, lim)
    frozen = lim.q.copy()
    assert np.abs(lim.v).max() < 1e-9
    with pytest.raises(CommandRejected):      # still latched after any amount of time
        lim.limit(NAMES, np.full(3, 0.5), 5.0)
    np.testing.assert_array_equal(lim.q, frozen)
    lim.release_estop()
    lim.limit(NAMES, np.full(3, 0.5), 5.01)


def test_chunk_validation():
    lim = make()
    ok = np.linspace(0, 0.1, 10)[:, None].repeat(3, 1)
    lim.validate_chunk(NAMES, ok, step_period=0.1)
    with pytest.raises(CommandRejected, match="position range"):
        lim.validate_chunk(NAMES, ok + 0.9, step_period=0.1)
    with pytest.raises(CommandRejected, match="rad/s"):
        lim.validate_chunk(NAMES, ok * 5, step_period=0.01)
    with pytest.raises(CommandRejected, match="NaN"):
        lim.validate_chunk(NAMES, np.full((3, 3), np.nan), step_period=0.1)


def test_position_margin_per_joint():
    limits = [JointLimit(n, -1.0, 1.0, max_velocity=2.0, max_acceleration=20.0) for n in NAMES]
    lim = SafetyLimiter(limits, DT, position_margin=[0.05, 0.05, 0.0])
    assert lim.lower.tolist() == [-0.95, -0.95, -1.0] and lim.upper.tolist() == [0.95, 0.95, 1.0]
    lim.reset(np.zeros(3), now=0.0)
    out = ramp_to(lim, np.array([-1.0, -1.0, -1.0]), steps=300)
    np.testing.assert_allclose(out[-1], [-0.95, -0.95, -1.0])    # the joint without margin reaches its limit
    with pytest.raises(ValueError, match="one per joint"):
        SafetyLimiter(limits, DT, position_margin=[0.05, 0.05])
    with pytest.raises(ValueError, match=">= 0"):
        SafetyLimiter(limits, DT, position_margin=[0.05, -0.01, 0.0])


def test_chunk_clamping_holds_out_of_range_steps_at_the_limit():
    lim = make(margin=0.05)
    chunk = np.zeros((5, 3))
    chunk[:, 1] = [0.8, 0.9, 1.0, 1.2, 0.9]       # j2 leaves (0.95 after the margin) for two steps
    same, clamped = lim.clamp_chunk(NAMES, chunk[:, [0, 2, 1]] * 0)
    assert clamped == [] and np.all(same == 0)
    out, clamped = lim.clamp_chunk(NAMES[::-1], chunk[:, ::-1])    # columns follow the given names
    assert clamped == ["j2"]
    assert out[:, 1].tolist() == [0.8, 0.9, 0.95, 0.95, 0.9] and np.all(out[:, [0, 2]] == 0)
    lim.validate_chunk(NAMES[::-1], out, step_period=0.1)        # what passes is inside the range
    with_nan, clamped = lim.clamp_chunk(NAMES, np.full((2, 3), np.nan))
    assert clamped == []
    with pytest.raises(CommandRejected, match="NaN"):              # NaN is not clamped away
        lim.validate_chunk(NAMES, with_nan, step_period=0.1)
    with pytest.raises(CommandRejected, match="unknown joint"):
        lim.clamp_chunk(["j1", "j2", "bogus"], chunk)
    with pytest.raises(CommandRejected, match="values"):
        lim.clamp_chunk(NAMES, chunk[:, :2])


def test_admitting_a_chunk_clamps_then_slows_down_or_refuses_by_mode():
    lim = make(margin=0.0)
    chunk = np.zeros((4, 3))
    chunk[:, 0] = [0.0, 0.5, 1.4, 1.4]       # j1: 14 rad/s to a point past its limit (1.0); vmax 2 rad/s
    out, clamped, factor = lim.admit_chunk(NAMES, chunk, 0.1)
    assert clamped == ["j1"] and out[:, 0].max() == pytest.approx(1.0)
    assert factor == pytest.approx(2.0)   # clamped steps 0.5, 0.5 at 2 rad/s + the 0.1 s hold: 0.6 s, not 0.3 s
    assert np.abs(np.diff(out[:, 0])).max() <= 2.0 * 0.1 + 1e-9 and out[-1, 0] == pytest.approx(1.0)
    reordered, _, _ = lim.admit_chunk(NAMES[::-1], chunk[:, ::-1], 0.1)   # columns follow the given names
    np.testing.assert_allclose(reordered[:, ::-1], out)
    with pytest.raises(CommandRejected, match="position range"):
        lim.admit_chunk(NAMES, chunk, 0.1, out_of_range="reject")
    with pytest.raises(CommandRejected, match="rad/s"):
        lim.admit_chunk(NAMES, chunk, 0.1, overspeed="reject")
    with pytest.raises(CommandRejected, match="NaN"):
        lim.admit_chunk(NAMES, np.full((3, 3), np.nan), 0.1)
    with pytest.raises(CommandRejected, match="unknown joint"):   # in every mode, before any reshaping
        lim.admit_chunk(["j1", "j2", "bogus"], chunk, 0.1, out_of_range="reject")
    feasible = np.linspace(0.0, 0.1, 4)[:, None].repeat(3, axis=1)
    same, clamped, factor = lim.admit_chunk(NAMES, feasible, 0.1)
    assert clamped == [] and factor == 1.0 and np.array_equal(same, feasible)


def test_workspace_box():
    box = WorkspaceBox(np.array([0.2, -0.3, 0.0]), np.array([0.6, 0.3, 0.5]))
    p, q, clamped = box.limit_pose([0.7, 0.0, 0.1], [0, 0, 0, 1])
    assert clamped and p[0] == 0.6
    with pytest.raises(CommandRejected):
        box.limit_pose([np.nan, 0, 0], [0, 0, 0, 1])
    with pytest.raises(CommandRejected, match="norm"):
        box.limit_pose([0.3, 0, 0], [0, 0, 0, 0])


command = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=3, max_size=3),
    st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=3),
    st.lists(st.floats(-1.2, 1.2), min_size=3, max_size=3),
)
names = st.one_of(st.just(NAMES), st.permutations(NAMES), st.just(["j1", "j2", "bogus"]), st.just(["j1", "j2"]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(names, command, st.integers(0, 30), st.booleans()), min_size=1, max_size=60),
       st.sampled_from([None, 0.005]))
def test_adversarial_streams_never_violate_a_limit(stream, max_step):
    lim = make(max_step=max_step)
    outputs, now = [lim.q.copy()], 0.0
    for cmd_names, values, idle_ticks, estop in stream:
        if estop:
            lim.latch_estop() if not lim.estopped else lim.release_estop()
        now += DT
        try:
            outputs.append(lim.limit(cmd_names, values[: len(cmd_names)], now).positions)
        except CommandRejected:
            outputs.append(lim.step(now).positions)
        for _ in range(idle_ticks):     # silences: the node keeps ticking at control rate
            now += DT
            outputs.append(lim.step(now).positions)
    check_outputs(outputs, lim)


def test_tracking_error_reseeds_from_the_measured_state():
    lim = SafetyLimiter([JointLimit(n, -1.0, 1.0, 2.0, 20.0) for n in NAMES], DT)
    assert not lim.observe(np.zeros(3), 0.0, 0.5) and lim.initialized
    for k in range(20):
        lim.limit(NAMES, np.full(3, 0.5), (k + 1) * DT)
    assert not lim.observe(lim.q + 0.1, 0.3, 0.5)                 # small error: nothing happens
    assert lim.observe(np.array([-0.6, 0.0, 0.0]), 0.31, 0.5)     # the arm is elsewhere (pushed, reset)
    np.testing.assert_array_equal(lim.q, [-0.6, 0.0, 0.0])
    assert lim.target is None and not np.any(lim.v) and lim.counters["tracking_reset"] == 1
    assert not lim.observe(np.array([0.9, 0.9, 0.9]), 0.32, 0.0)  # 0 disables the check


def test_release_restarts_from_the_measured_state_at_rest():
    """The arm moved while e-stopped (re-homed, hand-guided, a simulator reset): after the release the
    limiter starts where the arm is, instead of pulling it back to where it stopped."""
    lim = SafetyLimiter([JointLimit(n, -1.0, 1.0, 2.0, 20.0) for n in NAMES], DT)
    lim.observe(np.zeros(3), 0.0, 0.5)
    for k in range(20):
        lim.limit(NAMES, np.full(3, 0.5), (k + 1) * DT)
    lim.latch_estop()
    for k in range(50):
        lim.step(0.2 + k * DT)
    stopped = lim.q.copy()
    lim.observe(np.array([0.1, 0.2, 0.4]), 0.8, 0.5)   # moved by less than max_tracking_error
    np.testing.assert_array_equal(lim.q, stopped)
    lim.release_estop(0.81)
    np.testing.assert_array_equal(lim.q, [0.1, 0.2, 0.4])
    assert lim.target is None and not np.any(lim.v) and not lim.estopped
    np.testing.assert_array_equal(lim.step(0.82).positions, [0.1, 0.2, 0.4])   # holds there until a command
