import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinbrain_ros.runtime.chunk_executor import ChunkExecutor

DT = 0.1


def test_interpolates_on_the_chunk_time_axis_and_holds_at_the_end():
    ex = ChunkExecutor(1, DT, blend="replace")
    assert ex.setpoint(0.0) is None
    ex.add_chunk(np.arange(5.0)[:, None], obs_stamp=10.0, now=10.0)
    assert ex.setpoint(10.05)[0] == pytest.approx(0.5)
    assert ex.setpoint(10.4)[0] == pytest.approx(4.0)
    assert ex.setpoint(99.0)[0] == pytest.approx(4.0)   # held after the last step


def test_steps_in_the_past_are_dropped():
    ex = ChunkExecutor(1, DT, blend="replace")
    ex.add_chunk(np.zeros((20, 1)), obs_stamp=9.9, now=9.95)                        # executing
    dropped = ex.add_chunk(np.arange(10.0)[:, None], obs_stamp=10.0, now=10.25)   # inference took 250 ms
    assert dropped == 3
    assert ex.setpoint(10.25)[0] == pytest.approx(2.5)


@pytest.mark.parametrize("blend", ["replace", "crossfade", "rtc"])
def test_a_chunk_with_nothing_executing_starts_from_its_first_action(blend):
    """The arm held still while the model ran, so a late first chunk is not started part-way through."""
    ex = ChunkExecutor(1, DT, blend=blend)
    dropped = ex.add_chunk(np.arange(10.0)[:, None], obs_stamp=10.0, now=10.45)     # a cold start
    assert dropped == 0
    assert ex.setpoint(10.45)[0] == pytest.approx(0.0)
    assert ex.setpoint(10.50)[0] == pytest.approx(0.5)
    ex.reset()
    ex.add_chunk(np.arange(10.0)[:, None], obs_stamp=11.0, now=11.2)                # after a reset too
    assert ex.setpoint(11.2)[0] == pytest.approx(0.0)


@pytest.mark.parametrize("blend", ["crossfade", "average", "rtc"])
def test_new_chunk_blends_without_a_jump(blend):
    ex = ChunkExecutor(2, DT, blend=blend, blend_steps=3)
    ex.add_chunk(np.zeros((10, 2)), obs_stamp=0.0, now=0.0)
    before = ex.setpoint(0.42)
    ex.add_chunk(np.ones((10, 2)), obs_stamp=0.4, now=0.42)
    np.testing.assert_allclose(ex.setpoint(0.42), before, atol=1e-12)   # continuous at the switch
    after = ex.setpoint(0.42 + 3 * DT + 1e-9)
    expected = 0.5 if blend == "average" else 1.0                       # average: old+new until old ends
    np.testing.assert_allclose(after, expected, atol=1e-9)
    np.testing.assert_allclose(ex.setpoint(5.0), 1.0)                   # only the new chunk remains


def test_replace_switches_at_once_and_old_chunks_are_refused():
    ex = ChunkExecutor(1, DT, blend="replace")
    ex.add_chunk(np.zeros((5, 1)), 0.0, 0.0)
    ex.add_chunk(np.ones((5, 1)), 0.1, 0.1)
    assert ex.setpoint(0.1)[0] == 1.0
    with pytest.raises(ValueError, match="not newer"):
        ex.add_chunk(np.ones((5, 1)), 0.05, 0.2)


def test_bad_chunks_are_refused_before_touching_the_trajectory():
    ex = ChunkExecutor(2, DT)
    ex.add_chunk(np.zeros((4, 2)), 0.0, 0.0)
    for bad, match in [(np.full((4, 2), np.nan), "NaN"), (np.zeros((4, 3)), "chunk must be"),
                       (np.zeros((0, 2)), "chunk must be")]:
        with pytest.raises(ValueError, match=match):
            ex.add_chunk(bad, 1.0, 1.0)
    np.testing.assert_array_equal(ex.setpoint(0.5), [0, 0])
    with pytest.raises(ValueError, match="blend must be"):
        ChunkExecutor(2, DT, blend="magic")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 0.3), st.floats(-5, 5)), min_size=1, max_size=12),
       st.sampled_from(["crossfade", "average", "rtc"]))
def test_random_chunk_streams_are_continuous_and_finite(arrivals, blend):
    ex = ChunkExecutor(1, DT, blend=blend, blend_steps=4)
    now, stamp, last = 0.0, -1.0, None
    for latency, level in arrivals:
        stamp = max(stamp + 1e-3, now - latency)
        before = ex.setpoint(now)
        ex.add_chunk(np.full((8, 1), level) + np.linspace(0, 1, 8)[:, None], stamp, now)
        value = ex.setpoint(now)
        if before is not None:
            assert abs(value[0] - before[0]) < 1e-9
        for t in np.linspace(now, now + 0.2, 9):
            v = ex.setpoint(t)
            assert np.all(np.isfinite(v))
            if last is not None:
                # bounded slope: no jumps even across chunk boundaries
                assert abs(v[0] - last[1]) <= 12.0 * (t - last[0]) / DT + 1e-6
            last = (t, v[0])
        now += 0.2



def _on_polyline(point, knots, tol=1e-9):
    """True if ``point`` lies on a segment between consecutive rows of ``knots``."""
    for a, b in zip(knots[:-1], knots[1:]):
        d = b - a
        s = np.clip(np.dot(point - a, d) / max(np.dot(d, d), 1e-300), 0.0, 1.0)
        if np.linalg.norm(a + s * d - point) < tol:
            return True
    return False


def test_slow_down_keeps_the_path_and_respects_the_velocity_limit():
    from twinbrain_ros.runtime.chunk_executor import slow_down

    rng = np.random.default_rng(0)
    vmax = np.array([1.0, 0.5, 2.0])
    feasible = np.cumsum(rng.uniform(-0.04, 0.04, (16, 3)), axis=0)
    same, factor = slow_down(feasible, 0.1, vmax)
    assert factor == 1.0 and np.array_equal(same, feasible)
    fast = np.cumsum(rng.uniform(-0.5, 0.5, (16, 3)), axis=0)
    slow, factor = slow_down(fast, 0.1, vmax)
    assert factor > 1 and len(slow) > len(fast)
    assert np.all(np.abs(np.diff(slow, axis=0)) <= vmax * 0.1 + 1e-12)   # every step within the limit
    np.testing.assert_allclose(slow[[0, -1]], fast[[0, -1]])             # same start and end
    assert all(_on_polyline(p, fast) for p in slow)                       # same path, only slower
    # as fast as allowed: the duration is what the slowest joint needs segment by segment
    needed = np.maximum(0.1, np.max(np.abs(np.diff(fast, axis=0)) / vmax, axis=1)).sum()
    assert factor == pytest.approx(needed / (0.1 * 15))
