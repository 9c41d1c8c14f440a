"""End-effector limits (runtime/pose_limiter.py): no pose target passes through; the output moves
within the Euclidean step / velocity / acceleration limits, the box and the orientation rate."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinbrain_ros.runtime.joint_limits import CommandRejected
from twinbrain_ros.runtime.pose_limiter import PoseLimiter, WorkspaceBox, rotate_towards

DT, V, A, W = 0.01, 0.25, 1.0, 1.0
IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])


def make():
    lim = PoseLimiter(WorkspaceBox([-0.8, -0.8, 0.0], [0.8, 0.8, 1.2]), DT, V, A, W, timeout=0.3)
    lim.start([0.3, 0.0, 0.4], IDENTITY, 0.0)
    return lim


def angle(q1, q2):
    return 2 * np.arccos(min(1.0, abs(float(np.dot(q1, q2)))))


def check(outputs, box):
    p = np.array([o[0] for o in outputs])
    assert np.all(p >= box.minimum - 1e-9) and np.all(p <= box.maximum + 1e-9)
    v = np.linalg.norm(np.diff(p, axis=0), axis=1) / DT
    assert v.max(initial=0) <= V + 1e-9
    acc = np.linalg.norm(np.diff(np.diff(p, axis=0), axis=0), axis=1) / DT**2
    assert acc.max(initial=0) <= A + 1e-6
    rates = [angle(a[2], b[2]) / DT for a, b in zip(outputs, outputs[1:])]
    assert max(rates, default=0) <= W + 1e-6


def test_workspace_box():
    box = WorkspaceBox(np.array([0.2, -0.3, 0.0]), np.array([0.6, 0.3, 0.5]))
    p, q, clamped = box.limit_pose([0.7, 0.0, 0.1], [0, 0, 0, 1])
    assert clamped and p[0] == 0.6
    with pytest.raises(CommandRejected):
        box.limit_pose([np.nan, 0, 0], [0, 0, 0, 1])
    with pytest.raises(CommandRejected, match="norm"):
        box.limit_pose([0.3, 0, 0], [0, 0, 0, 0])
    with pytest.raises(ValueError, match="below"):
        WorkspaceBox([0.0, 0.0, 0.0], [1.0, -1.0, 1.0])


def test_a_far_pose_after_silence_never_passes_through():
    """Old behaviour: two consecutive outputs 2.56 m apart within 10 ms."""
    lim = make()
    out, now = [lim.step(0.0)], 0.0
    for _ in range(50):              # a long silence: holding
        now += DT
        out.append(lim.step(now))
    far = np.array([-2.0, 2.0, 3.0])     # outside the box too
    q_target = np.array([1.0, 0.0, 0.0, 0.0])   # 180 degrees about x
    for k in range(1000):           # 1.1 m at 0.25/sqrt(3) m/s per axis
        now += DT
        if k % 2 == 0:
            assert lim.set_target(far, q_target, now)   # clamped into the box, counted
        out.append(lim.step(now))
    check(out, lim.box)
    np.testing.assert_allclose(out[-1][0], [-0.8, 0.8, 1.2], atol=1e-6)
    assert angle(out[-1][2], q_target) < 1e-6 and lim.counters["workspace"] > 0


def test_watchdog_and_estop_hold_within_limits():
    lim = make()
    out, now = [lim.step(0.0)], 0.0
    for _ in range(40):
        now += DT
        lim.set_target([0.8, 0.0, 0.4], [0.0, 0.0, np.sin(0.5), np.cos(0.5)], now)
        out.append(lim.step(now))
    for _ in range(100):             # silence: the watchdog decelerates to a hold, the orientation freezes
        now += DT
        out.append(lim.step(now))
    check(out, lim.box)
    assert lim.position.watchdog_active and np.allclose(out[-1][1], 0)
    lim.position.latch_estop()
    with pytest.raises(CommandRejected, match="e-stop"):
        lim.set_target([0.8, 0.0, 0.4], IDENTITY, now)
    with pytest.raises(CommandRejected, match="NaN"):
        lim.set_target([np.nan, 0.0, 0.4], IDENTITY, now)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.lists(st.floats(-3, 3), min_size=3, max_size=3),
                          st.lists(st.floats(-1, 1), min_size=4, max_size=4), st.integers(0, 20)),
                min_size=1, max_size=20))
def test_random_pose_streams_stay_within_limits(stream):
    lim = make()
    out, now = [lim.step(0.0)], 0.0
    for position, quaternion, idle in stream:
        now += DT
        q = np.asarray(quaternion)
        try:
            lim.set_target(position, q / np.linalg.norm(q) if np.linalg.norm(q) > 1e-3 else q, now)
        except CommandRejected:
            pass
        for _ in range(idle + 1):
            out.append(lim.step(now))
            now += DT
    check(out, lim.box)


def test_rotate_towards_takes_the_short_way():
    target = -np.array([0.0, 0.0, np.sin(0.1), np.cos(0.1)])   # same rotation, other sign
    out = rotate_towards(IDENTITY, target, 0.05)
    assert angle(out, IDENTITY) == pytest.approx(0.05) and angle(out, target) == pytest.approx(0.15)
