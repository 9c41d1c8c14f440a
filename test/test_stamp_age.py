"""Clock skew between hosts is named as the cause instead of a bare "too old" (runtime/stamp_age.py), on
its own and inside the observation synchronizer the policy acts on."""

import numpy as np

from twinbrain_ros.runtime.stamp_age import FUTURE, LATE, OFFSET, OK, StampAgeMonitor
from twinbrain_ros.runtime.synchronizer import ObservationSynchronizer

IMG = np.zeros((4, 4, 3), np.uint8)
JOINTS = ["a", "b"]


def _feed(mon, offset, n=20, rate=30.0, t0=100.0, delay=0.01):
    """``n`` messages at ``rate`` Hz whose sender's clock is ``offset`` s ahead, delivered after ``delay``."""
    out = []
    for k in range(n):
        taken = t0 + k / rate
        out.append(mon.check(taken + offset, taken + delay))
    return out, t0 + (n - 1) / rate + delay


def test_fresh_messages_pass():
    mon = StampAgeMonitor(0.5, 0.05, "camera frame")
    problems, now = _feed(mon, offset=0.0)
    assert problems == [None] * 20 and mon.report(now).kind == OK


def test_sender_clock_ahead_is_named_clock_skew():
    mon = StampAgeMonitor(0.5, 0.05, "camera frame")
    problems, now = _feed(mon, offset=2.0)
    assert all(p and "in the future" in p and "clock skew" in p for p in problems)
    report = mon.report(now)
    assert report.kind == FUTURE and "chrony" in report.message and report.refused == 20


def test_receiver_clock_ahead_is_a_steady_offset_not_late_delivery():
    mon = StampAgeMonitor(0.5, 0.05, "camera frame")
    problems, now = _feed(mon, offset=-1.5)
    assert all(problems)
    assert mon.report(now).kind == OFFSET
    assert "clock skew" in problems[-1] and "1.510" in problems[-1]   # the size of the offset is in the message


def test_a_few_late_messages_are_late_delivery():
    mon = StampAgeMonitor(0.5, 0.05, "action chunk")
    _feed(mon, offset=0.0, n=10)
    late = mon.check(100.0, 100.9)   # one message 0.9 s late (a retransmission after a partition)
    assert "late delivery" in late and mon.report(100.9).kind == LATE


def test_window_forgets_old_samples():
    mon = StampAgeMonitor(0.5, 0.05, window=1.0)
    _feed(mon, offset=2.0, n=5)
    _, now = _feed(mon, offset=0.0, n=40, t0=103.0)
    assert mon.report(now).kind == OK


def test_synchronizer_refuses_future_frames_and_names_the_skew():
    s = ObservationSynchronizer(["front"], JOINTS, max_age=0.3, max_future=0.05)
    now = 50.0
    for k in range(10):
        t = now + 1.0 + k * 0.033            # the robot's clock is 1 s ahead of this host's
        s.add_joint_state(t, JOINTS, [0.0, 0.0])
        assert s.add_frame("front", t, IMG, arrival=now + k * 0.033) is not None
    s.set_instruction("pick")
    obs, reason = s.latest(now + 0.3)
    assert obs is None and "future" in reason and "clock skew" in reason


def test_synchronizer_stale_frames_say_offset_when_every_frame_is_late():
    s = ObservationSynchronizer(["front"], JOINTS, max_age=0.3)
    for k in range(10):
        t = 10.0 + k * 0.033
        s.add_joint_state(t, JOINTS, [0.0, 0.0])
        s.add_frame("front", t, IMG, arrival=t + 0.8)   # this host's clock 0.8 s ahead (or a 0.8 s link)
    s.set_instruction("pick")
    obs, reason = s.latest(10.3 + 0.8)
    assert obs is None and "too old" in reason and "steady offset" in reason


def test_synchronizer_frozen_camera_keeps_the_plain_reason():
    s = ObservationSynchronizer(["front"], JOINTS, max_age=0.3)
    s.add_joint_state(1.0, JOINTS, [0.0, 0.0])
    s.add_frame("front", 1.0, IMG, arrival=1.01)
    obs, reason = s.latest(5.0)   # nothing arrived for 4 s: not a clock problem
    assert obs is None and "too old" in reason and "clock" not in reason
