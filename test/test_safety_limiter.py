"""Safety limiter, tested like libfranka / ros2_control: ε inside passes, ε outside is limited, and
after limiting every output satisfies every limit, also for adversarial random streams."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinbrain_ros.runtime.safety import CommandRejected, JointLimit, SafetyLimiter

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
    for names, values, kind in [(["j1", "j2", "jX"], [0, 0, 0], "unknown_joint"),
                                (["j1", "j2"], [0, 0], "missing_joint"),
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
    assert lim.release(5.0)[0]
    lim.limit(NAMES, np.full(3, 0.5), 5.01)
    assert lim.release(5.02) == (False, "nothing is latched: release changed nothing")
    assert lim.counters["release_noop"] == 1


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
            lim.latch_estop() if not lim.estopped else lim.release(now)   # refused while still decelerating
        now += DT
        try:
            outputs.append(lim.limit(cmd_names, values[: len(cmd_names)], now).positions)
        except CommandRejected:
            outputs.append(lim.step(now).positions)
        for _ in range(idle_ticks):     # silences: the node keeps ticking at control rate
            now += DT
            outputs.append(lim.step(now).positions)
    check_outputs(outputs, lim)




def moving_limiter(target=0.9, ticks=30):
    """A limiter streaming towards ``target`` at speed; returns (limiter, outputs, now)."""
    lim = make()
    out, now = [lim.q.copy()], 0.0
    for _ in range(ticks):
        now += DT
        out.append(lim.limit(NAMES, np.full(3, target), now).positions)
    assert np.abs(lim.v).max() > 0.5
    return lim, out, now


def test_tracking_error_latches_a_fault_and_decelerates_instead_of_jumping():
    """Old behaviour: a measurement further than max_tracking_error re-seeded the output there (a step of
    up to 2.5 rad in one tick). Now: ε inside does nothing, ε outside latches a fault and holds."""
    lim, out, now = moving_limiter()
    lim.max_tracking_error = 0.5
    lim.observe(lim.q + 0.5 - EPS, now)
    assert not lim.faults
    lim.observe(np.array([-0.6, 0.0, 0.0]), now)     # blocked / pushed: 0.5 + ε and more
    assert set(lim.faults) == {"tracking_error"} and "'j1'" in lim.faults["tracking_error"]
    lim.observe(np.array([-0.7, 0.0, 0.0]), now)     # latched once, counted once
    assert lim.counters["tracking_error"] == 1 and lim.counters["faults"] == 1
    with pytest.raises(CommandRejected, match="fault"):
        lim.limit(NAMES, np.full(3, 0.9), now + DT)
    assert lim.release(now + DT)[1].startswith("release refused: the output is still decelerating")
    for _ in range(100):
        now += DT
        out.append(lim.step(now).positions)
    check_outputs(out, lim)                             # no jump: a stop within limits, then a hold
    assert lim.output_at_rest and lim.faults
    assert not lim.release(now, np.array([-0.6, 0.0, 0.0]), blocked_by="the arm is not at rest")[0]
    ok, message = lim.release(now, np.array([-0.6, 0.0, 0.0]))
    assert ok and "tracking_error" in message and lim.counters["restart"] == 1 and lim.counters["release_refused"] == 2
    np.testing.assert_array_equal(lim.q, [-0.6, 0.0, 0.0])   # where the arm is, at rest, no target
    assert lim.target is None and not np.any(lim.v)


def test_tracking_is_not_checked_while_estopped():
    """A stopped arm may be re-homed or hand-guided; the release restarts from where it is."""
    lim, _, now = moving_limiter()
    lim.max_tracking_error = 0.5
    lim.latch_estop()
    lim.observe(np.array([-0.9, 0.9, 0.0]), now)
    assert not lim.faults


def test_release_restarts_from_the_measured_state_at_rest():
    """The arm moved while e-stopped (re-homed, hand-guided, a simulator reset): after the release the
    limiter starts where the arm is, instead of pulling it back to where it stopped."""
    lim, _, now = moving_limiter(0.5, 20)
    lim.latch_estop()
    for k in range(50):
        lim.step(now + (k + 1) * DT)
    stopped = lim.q.copy()
    lim.observe(np.array([0.1, 0.2, 0.4]), now + 0.6)
    np.testing.assert_array_equal(lim.q, stopped)   # observing never moves the output
    assert lim.release(now + 0.61, np.array([0.1, 0.2, 0.4]))[0]
    np.testing.assert_array_equal(lim.q, [0.1, 0.2, 0.4])
    assert lim.target is None and not np.any(lim.v) and not lim.estopped
    np.testing.assert_array_equal(lim.step(now + 0.62).positions, [0.1, 0.2, 0.4])   # holds until a command


def test_release_resumes_from_the_held_output_when_the_arm_is_there():
    """CI caught it (trip_release_race): the last joint state before the release was taken a tick before
    the stop, 3e-6 rad behind the held output. Re-seeding from it stepped the setpoint back, and the next
    command's first step from rest then needed 6.03 rad/s² against a 6 rad/s² limit. A rest measurement
    within ``resume_tolerance`` of the held output resumes from the output; one beyond restarts there."""
    limits = [JointLimit(n, -1.0, 1.0, max_velocity=2.0, max_acceleration=20.0) for n in NAMES]
    lim = SafetyLimiter(limits, DT, position_margin=0.05, timeout=0.1, resume_tolerance=0.002)
    lim.reset(np.zeros(3), now=0.0)
    out = ramp_to(lim, np.full(3, 0.5), steps=30)
    now = 30 * DT
    lim.latch_estop()
    while not lim.output_at_rest:
        now += DT
        out.append(lim.step(now).positions)
    held = lim.q.copy()
    assert lim.release(now, held - 3e-6)[0] and lim.counters["resume"] == 1 and lim.counters["restart"] == 0
    np.testing.assert_array_equal(lim.q, held)
    for _ in range(20):
        now += DT
        out.append(lim.limit(NAMES, np.full(3, -0.5), now).positions)
    check_outputs(out, lim)
    lim.latch_estop()
    while not lim.output_at_rest:
        now += DT
        lim.step(now)
    moved = lim.q + np.array([0.0, 0.0021, 0.0])   # one joint just beyond the tolerance: the arm was moved
    assert lim.release(now, moved)[0] and lim.counters["restart"] == 1
    np.testing.assert_array_equal(lim.q, moved)


def test_release_resumes_when_the_arm_followed_the_last_horizon_before_the_hold():
    """CI caught it again (trip_release_race, under load): the controller got the hold's messages late, so
    the arm followed the stopping horizon sent just before the e-stop and stood 1.8-3.6 mrad beyond the
    held output, at rest, when the release came. Restarting there stepped the setpoint; the next messages
    had 12 acceleration violations. An arm anywhere between the held output and that horizon's end is
    where our own messages put it: the release resumes. Beyond it (and the tolerance), it restarts."""
    limits = [JointLimit(n, -1.0, 1.0, max_velocity=2.0, max_acceleration=20.0) for n in NAMES]
    lim = SafetyLimiter(limits, DT, position_margin=0.05, timeout=0.1, resume_tolerance=0.002)
    lim.reset(np.zeros(3), now=0.0)
    out = ramp_to(lim, np.array([0.8, -0.8, 0.0]), steps=12)   # still moving fast
    now = 12 * DT
    assert np.abs(lim.v[0]) > 0.5
    followed = lim.stopping_horizon()[0][-1]   # where a controller with no further message stops
    lim.latch_estop()
    while not lim.output_at_rest:
        now += DT
        out.append(lim.step(now).positions)
    held = lim.q.copy()
    assert np.max(np.abs(followed - held)) > 0.002   # beyond the plain tolerance
    assert lim.release(now, followed)[0] and lim.counters["resume"] == 1 and lim.counters["restart"] == 0
    np.testing.assert_array_equal(lim.q, held)
    for _ in range(20):
        now += DT
        out.append(lim.limit(NAMES, np.full(3, 0.2), now).positions)
    check_outputs(out, lim)
    followed = lim.stopping_horizon()[0][-1]
    lim.latch_estop()
    while not lim.output_at_rest:
        now += DT
        lim.step(now)
    beyond = np.maximum(lim.q, followed) + np.array([0.0, 0.0021, 0.0])
    assert lim.release(now, beyond)[0] and lim.counters["restart"] == 1
    np.testing.assert_array_equal(lim.q, np.clip(beyond, lim.lower, lim.upper))


def test_release_with_nothing_latched_is_a_counted_noop_while_moving():
    """Old behaviour: release during motion reset the limiter (a dead stop from full speed)."""
    lim, out, now = moving_limiter()
    v = lim.v.copy()
    assert lim.release(now, np.zeros(3)) == (False, "nothing is latched: release changed nothing")
    np.testing.assert_array_equal(lim.v, v)
    for _ in range(20):
        now += DT
        out.append(lim.limit(NAMES, np.full(3, 0.9), now).positions)
    check_outputs(out, lim)
    assert lim.counters["release_noop"] == 1 and lim.counters["restart"] == 0


def test_velocity_scale_scales_velocity_and_acceleration_limits():
    limits = [JointLimit(n, -1.0, 1.0, max_velocity=2.0, max_acceleration=20.0) for n in NAMES]
    lim = SafetyLimiter(limits, DT, velocity_scale=0.1)
    np.testing.assert_allclose(lim.vmax, 0.2)
    np.testing.assert_allclose(lim.amax, 2.0)
    lim.reset(np.zeros(3), 0.0)
    out = ramp_to(lim, np.full(3, 0.5), steps=400)
    _, a = check_outputs(out, lim)
    v = np.diff(np.array(out), axis=0) / DT
    assert np.abs(v).max() == pytest.approx(0.2) and np.abs(a).max() <= 2.0 + 1e-6
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="velocity_scale"):
            SafetyLimiter(limits, DT, velocity_scale=bad)


def check_horizon(lim, previous):
    """The stop sent with each output: continues from the outputs before it within every limit, ends at rest."""
    positions, velocities = lim.stopping_horizon()
    np.testing.assert_array_equal(positions[0], lim.q)
    assert not np.any(velocities[-1]) and np.array_equal(positions[-1], positions[-2] if len(positions) > 1
                                                         else positions[-1])
    check_outputs(list(previous[-2:]) + list(positions[1:]), lim)


def test_stopping_horizon_from_full_speed_ends_at_rest_inside_the_range():
    lim, out, now = moving_limiter(0.95, 40)     # near the upper limit: braking already acts
    check_horizon(lim, out)
    positions, _ = lim.stopping_horizon()
    assert len(positions) > 2 and np.all(positions <= lim.upper + 1e-12)


events = st.lists(st.tuples(st.sampled_from(["command", "estop", "release", "fault", "far", "idle"]),
                            st.lists(st.floats(-1.2, 1.2), min_size=3, max_size=3), st.integers(0, 15)),
                  min_size=1, max_size=50)


@settings(max_examples=150, deadline=None)
@given(events)
def test_random_fault_sequences_never_violate_a_limit(sequence):
    """Any mix of commands, e-stops, releases, faults and far-off measurements: every output is within the
    limits relative to the previous one; the only discontinuity is a granted restart, which happens with
    the output at rest and starts at rest exactly at the (clamped) measured position. Every tick's stopping
    horizon continues the outputs within limits."""
    lim = make()
    lim.max_tracking_error = 0.5
    segment, now = [lim.q.copy()], 0.0
    for kind, values, idle in sequence:
        now += DT
        if kind == "command":
            try:
                lim.set_target(NAMES, values, now)
            except CommandRejected:
                pass
        elif kind == "estop":
            lim.latch_estop()
        elif kind == "fault":
            lim.latch_fault("joint_state_jump", "test")
        elif kind == "far":
            lim.observe(np.asarray(values), now)
        elif kind == "release":
            at_rest, restarts, held = lim.output_at_rest, lim.counters["restart"], lim.q.copy()
            if lim.release(now, np.asarray(values))[0]:
                assert at_rest
                if lim.counters["restart"] > restarts:
                    check_outputs(segment, lim)
                    np.testing.assert_array_equal(lim.q, np.clip(values, lim.lower, lim.upper))
                    segment = [lim.q.copy()]
                else:   # the measurement is where the controller may hold the arm: the outputs run on
                    np.testing.assert_array_equal(lim.q, held)
        for _ in range(idle + 1):
            now += DT
            segment.append(lim.step(now).positions)
            check_horizon(lim, segment)
    check_outputs(segment, lim)


def test_tracking_error_is_measured_against_the_output_at_the_samples_stamp():
    """Feedback arrives late: the arm's state from 0.2 s ago, compared with the output of 0.2 s ago, is on
    track; compared with the current output it would be 0.4 rad off (a false fault at speed)."""
    lim, _, now = moving_limiter(0.9, 10)
    lim.max_tracking_error = 0.3
    for _ in range(20):                          # 0.2 s more at 2 rad/s: 0.4 rad
        now += DT
        lim.limit(NAMES, np.full(3, 0.9), now)
    earlier = lim.commanded_at(now - 0.2)
    assert np.abs(lim.q - earlier).max() > 0.3
    lim.observe(earlier, now, stamp=now - 0.2)
    assert not lim.faults
    lim.observe(earlier, now)                    # the same state taken as current: a real tracking error
    assert "tracking_error" in lim.faults
