"""Robot-side execution of chunks planned on another host (runtime/remote_chunks.py): no setpoint from an
observation older than the bound, a stop when the link goes quiet, a resume from the measured position."""

import numpy as np

from twinbrain_ros.runtime.remote_chunks import RemoteChunkExecutor

NAMES = ["j1", "j2"]
DT = 0.1


def _chunk(value, h=16):
    return np.full((h, 2), value, np.float64)


def _runner(max_age=0.5):
    return RemoteChunkExecutor(NAMES, max_age=max_age, max_future=0.05, blend="crossfade", blend_steps=4)


def test_fresh_chunk_executes_and_every_setpoint_is_younger_than_the_bound():
    r = _runner()
    assert r.add(NAMES, _chunk(0.3), stamp=10.0, step_period=DT, now=10.2, measured=np.zeros(2)) is None
    for t in np.arange(10.2, 10.5, 0.01):
        q, _ = r.setpoint(t)
        assert q is not None
    assert r.max_executed_age <= 0.5


def test_stale_chunk_on_arrival_is_refused():
    r = _runner()
    reason = r.add(NAMES, _chunk(0.3), stamp=10.0, step_period=DT, now=10.6)
    assert reason and "stale" in reason and r.counters["stale"] == 1
    assert r.setpoint(10.6)[0] is None


def test_future_chunk_is_refused_as_clock_skew():
    r = _runner()
    reason = r.add(NAMES, _chunk(0.3), stamp=12.0, step_period=DT, now=10.0)
    assert "clock skew" in reason and r.counters["future"] == 1


def test_streaming_stops_when_the_newest_observation_ages_past_the_bound():
    r = _runner()
    r.add(NAMES, _chunk(0.3), stamp=10.0, step_period=DT, now=10.1, measured=np.zeros(2))
    assert r.setpoint(10.45)[0] is not None
    q, why = r.setpoint(10.51)   # a partition: nothing newer arrived
    assert q is None and "watchdog" in why and r.counters["expired"] == 1
    assert r.setpoint(10.6)[0] is None
    # the chunks queued during the partition arrive late: refused; then a fresh one resumes the stream
    assert r.add(NAMES, _chunk(0.5), stamp=10.2, step_period=DT, now=12.5) is not None
    measured = np.array([0.25, 0.25])   # where the arm came to rest
    assert r.add(NAMES, _chunk(0.5), stamp=12.4, step_period=DT, now=12.5, measured=measured) is None
    q, _ = r.setpoint(12.5)
    np.testing.assert_allclose(q, measured)   # starts where the arm is, then crossfades: no jump
    q2, _ = r.setpoint(12.51)
    assert np.all(np.abs(q2 - measured) < 0.02)


def test_joint_order_by_name_and_unknown_joints_refused():
    r = _runner()
    chunk = np.stack([np.full(16, 1.0), np.full(16, 2.0)], axis=1)
    assert r.add(["j2", "j1"], chunk, stamp=10.0, step_period=DT, now=10.05) is None
    q, _ = r.setpoint(10.05 + 0.45)
    np.testing.assert_allclose(q, [2.0, 1.0])
    assert "joints" in r.add(["j1", "x"], chunk, stamp=10.1, step_period=DT, now=10.15)


def test_reordered_older_chunk_is_refused():
    r = _runner()
    r.add(NAMES, _chunk(0.3), stamp=10.2, step_period=DT, now=10.3)
    assert "not newer" in r.add(NAMES, _chunk(0.1), stamp=10.1, step_period=DT, now=10.31)
