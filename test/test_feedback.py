"""Joint-state feedback checks (runtime/feedback.py): ε inside each bound passes, ε outside is refused
with the fault named; the reference and the rest detection survive a refused sample."""

import numpy as np
import pytest

from twinbrain_ros.runtime.feedback import FeedbackLimits, FeedbackMonitor, Heartbeat
from twinbrain_ros.runtime.joint_limits import CommandRejected, JointLimit, JointSpace

NAMES = ["j1", "j2"]
EPS = 1e-4
LIMITS = FeedbackLimits(timeout=0.2, max_age=0.1, max_future=0.05, velocity_factor=3.0, noise=1e-3,
                        rest_samples=3, rest_tolerance=2e-3)


def monitor(**kw):
    space = JointSpace([JointLimit(n, -2.0, 2.0, max_velocity=1.0, max_acceleration=5.0) for n in NAMES])
    return FeedbackMonitor(space, LIMITS, **kw)


def refused(mon, kind, names, positions, stamp, now):
    with pytest.raises(CommandRejected) as err:
        mon.update(names, positions, stamp, now)
    assert err.value.kind == kind, str(err.value)
    return str(err.value)


def test_implied_velocity_eps_inside_passes_and_eps_outside_is_a_jump():
    mon = monitor()
    mon.update(NAMES, [0.0, 0.0], 1.00, 1.00)
    allowed = 3.0 * 1.0 * 0.01 + 1e-3            # factor x max_velocity x dt + noise
    mon.update(NAMES, [allowed - EPS, 0.0], 1.01, 1.01)
    message = refused(mon, "joint_state_jump", NAMES, [2 * allowed + EPS, 0.0], 1.02, 1.02)
    assert "'j1'" in message and "glitch" in message
    mon.update(NAMES, [2 * allowed - 2 * EPS, 0.0], 1.02, 1.02)   # the refused sample is not the reference
    refused(mon, "joint_state_jump", NAMES, [0.0, 0.7], 1.03, 1.03)   # a +0.7 rad encoder glitch


def test_stamp_age_and_future_bounds():
    mon = monitor()
    mon.update(NAMES, [0.0, 0.0], 1.0 - 0.1 + EPS, 1.0)
    assert "old on arrival" in refused(mon, "joint_state_stale", NAMES, [0.0, 0.0], 1.01 - 0.1 - EPS, 1.01)
    mon.update(NAMES, [0.0, 0.0], 1.02 + 0.05 - EPS, 1.02)
    assert "clock" in refused(mon, "joint_state_future", NAMES, [0.0, 0.0], 1.03 + 0.05 + EPS, 1.03)
    mon.update(NAMES, [0.0, 0.0], 0.0, 1.2)      # unstamped: the arrival time stands in


def test_names_and_values_are_checked():
    mon = monitor(ignore=["finger_mimic"])
    refused(mon, "joint_state_nan", NAMES, [0.0, np.nan], 1.0, 1.0)
    refused(mon, "joint_state_unknown_joint", NAMES + ["bogus"], [0.0, 0.0, 0.0], 1.0, 1.0)
    refused(mon, "joint_state_missing_joint", ["j1"], [0.0], 1.0, 1.0)
    refused(mon, "joint_state_malformed", NAMES, [0.0], 1.0, 1.0)
    q = mon.update(["finger_mimic", "j2", "j1"], [0.5, 0.2, 0.1], 1.0, 1.0)   # ignored name, any order
    np.testing.assert_array_equal(q, [0.1, 0.2])
    mon.update(NAMES, [0.1, 0.2], 1.0, 1.001)                                   # the same sample again
    refused(mon, "joint_state_stamp", NAMES, [0.1, 0.21], 0.99, 1.002)          # stamps going backwards


def test_stall_after_timeout():
    mon = monitor()
    assert mon.stalled(5.0) is None              # nothing received yet: not started, not a stall
    mon.update(NAMES, [0.0, 0.0], 1.0, 1.0)
    assert mon.stalled(1.2 - EPS) is None
    assert "joint_state_timeout" in mon.stalled(1.2 + EPS)


def test_rest_needs_several_consistent_fresh_samples_after_any_fault():
    mon = monitor()
    for k in range(2):
        mon.update(NAMES, [0.0, 0.0], 1.0 + k * 0.01, 1.0 + k * 0.01)
    assert mon.rest_position(1.01) is None and "not at rest" in mon.not_at_rest_reason(1.01)
    mon.update(NAMES, [2e-3 - EPS, 0.0], 1.02, 1.02)
    np.testing.assert_array_equal(mon.rest_position(1.02), [2e-3 - EPS, 0.0])
    mon.update(NAMES, [2e-3 + EPS, 0.0], 1.03, 1.03)     # spread of the last three now 2e-3 + ε... still from 0
    assert mon.rest_position(1.03) is None
    refused(mon, "joint_state_nan", NAMES, [np.nan, 0.0], 1.04, 1.04)
    for k in range(2):
        mon.update(NAMES, [2e-3, 0.0], 1.05 + k * 0.01, 1.05 + k * 0.01)
    assert mon.rest_position(1.06) is None              # the fault cleared the history: two are not enough
    mon.update(NAMES, [2e-3, 0.0], 1.07, 1.07)
    assert mon.rest_position(1.07) is not None
    assert mon.rest_position(1.07 + 0.2 + EPS) is None  # stale: no rest position from old data
    assert "joint_state_timeout" in mon.not_at_rest_reason(1.3)


def test_heartbeat_trips_on_silence_and_on_not_ok():
    hb = Heartbeat(0.5)
    assert hb.fault(0.5 - EPS, started=0.0) is None and "no e-stop heartbeat" in hb.fault(0.5 + EPS, started=0.0)
    hb.beat(True, 1.0)
    assert hb.fault(1.5 - EPS, started=0.0) is None and hb.fault(1.5 + EPS, started=0.0)
    hb.beat(False, 1.6)
    assert "not ok" in hb.fault(1.6, started=0.0)
    hb.beat(True, 1.7)
    assert hb.fault(1.7, started=0.0) is None
