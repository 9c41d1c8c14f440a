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


def _pchip_plan(rng, n=16):
    return np.cumsum(rng.uniform(-0.1, 0.1, (n, 3)), axis=0)


def test_pchip_passes_through_the_actions_without_overshoot_and_with_continuous_velocity():
    """Monotone cubic between actions: exact at each action, inside each step's two values, and the
    velocity is the same just before and after an action (linear jumps there)."""
    from twinbrain_ros.runtime.chunk_executor import interpolate

    rng = np.random.default_rng(1)
    values = _pchip_plan(rng)
    times = DT * np.arange(len(values))
    np.testing.assert_allclose(interpolate(times, values, times, "pchip"), values, atol=1e-12)
    t = np.linspace(0, times[-1], 3001)
    fine = interpolate(times, values, t, "pchip")
    i = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
    lo, hi = np.minimum(values[i], values[i + 1]), np.maximum(values[i], values[i + 1])
    assert np.all(fine >= lo - 1e-12) and np.all(fine <= hi + 1e-12)
    eps = 1e-6
    for method, continuous in (("pchip", True), ("linear", False)):
        before = interpolate(times, values, times[1:-1] - eps, method)
        after = interpolate(times, values, times[1:-1] + eps, method)
        at = interpolate(times, values, times[1:-1], method)
        jump = np.abs((after - at) / eps - (at - before) / eps).max()
        assert (jump < 1e-3) if continuous else (jump > 0.1), (method, jump)
    # never faster than PEAK_SPEED_OVER_SECANT times the fastest step
    from twinbrain_ros.runtime.chunk_executor import PEAK_SPEED_OVER_SECANT

    speed = np.abs(np.diff(fine, axis=0) / np.diff(t)[:, None]).max(axis=0)
    secant = np.abs(np.diff(values, axis=0) / DT).max(axis=0)
    assert np.all(speed <= PEAK_SPEED_OVER_SECANT["pchip"] * secant + 1e-6)


@pytest.mark.parametrize("blend", ["crossfade", "rtc"])
def test_pchip_streams_change_velocity_far_less_per_tick_than_linear(blend):
    """The same chunk stream at 100 Hz: the largest tick-to-tick velocity change is much smaller with
    pchip, continuous at the switch as with linear, and never outside the actions' range."""
    rng = np.random.default_rng(2)
    chunks = [_pchip_plan(rng) + k * 0.05 for k in range(6)]
    worst = {}
    for method in ("linear", "pchip"):
        ex = ChunkExecutor(3, DT, blend=blend, interpolation=method)
        points = []
        for k, t in enumerate(np.arange(0.0, 3.0, 0.01)):
            if k % 50 == 0:
                before = ex.setpoint(t)
                ex.add_chunk(chunks[k // 50], obs_stamp=t - 0.02, now=t)
                if before is not None:
                    np.testing.assert_allclose(ex.setpoint(t), before, atol=1e-9)
            points.append(ex.setpoint(t))
        v = np.diff(np.asarray(points), axis=0) / 0.01
        worst[method] = np.abs(np.diff(v, axis=0)).max()
        lo, hi = np.min([c.min(0) for c in chunks], 0), np.max([c.max(0) for c in chunks], 0)
        assert np.all(np.asarray(points) >= lo - 1e-9) and np.all(np.asarray(points) <= hi + 1e-9)
    assert worst["pchip"] < 0.5 * worst["linear"], worst


def test_admission_leaves_room_for_the_interpolation_speed():
    from twinbrain_ros.runtime.chunk_admission import ChunkAdmission
    from twinbrain_ros.runtime.joint_limits import JointLimit

    limits = [JointLimit(f"j{i}", -3.0, 3.0, 1.0, 5.0) for i in range(2)]
    names = ["j0", "j1"]
    chunk = np.stack([np.linspace(0, 0.09 * 9, 10)] * 2, axis=1)   # 0.9 rad/s per step: fine for linear
    assert ChunkAdmission(limits, speed_margin=1.0).admit(names, chunk, DT)[2] == 1.0
    slowed, _, factor = ChunkAdmission(limits, speed_margin=1.5).admit(names, chunk, DT)
    assert factor == pytest.approx(1.35) and np.abs(np.diff(slowed, axis=0)).max() <= 1.0 / 1.5 * DT + 1e-12
    with pytest.raises(ValueError, match="speed_margin"):
        ChunkAdmission(limits, speed_margin=0.5)


@pytest.mark.parametrize("blend", ["crossfade", "average"])
def test_pchip_splice_keeps_the_exact_blend_and_its_velocity(blend):
    """The plan after a pchip splice is the blend itself, (1 - w) old + w new with the smoothstep w, at
    every instant (not only on its grid), and its velocity is continuous at the splice and is the
    blend's own just after it: the resampled plan adds no curvature of its own where grid points crowd."""
    from twinbrain_ros.runtime.chunk_executor import interpolate

    rng = np.random.default_rng(3)
    first, second = _pchip_plan(rng), _pchip_plan(rng) + 0.05
    ex = ChunkExecutor(3, DT, blend=blend, interpolation="pchip")
    ex.add_chunk(first, obs_stamp=0.0, now=0.0)
    old = ChunkExecutor(3, DT, blend=blend, interpolation="pchip")
    old.add_chunk(first, obs_stamp=0.0, now=0.0)
    now, stamp = 0.537, 0.5 - 0.093    # a splice between grid points, the new chunk's steps off the old grid
    ex.add_chunk(second, obs_stamp=stamp, now=now)
    t = np.linspace(now, now + 6 * DT, 1201)
    s = np.clip((t - now) / (ex.blend_steps * DT), 0, 1)
    w = s * s * (3 - 2 * s)
    if blend == "average":
        w = w * ex.average_weight
    new = interpolate(stamp + DT * np.arange(len(second)), second, t, "pchip")
    expected = (1 - w)[:, None] * np.stack([old.setpoint(x) for x in t]) + w[:, None] * new
    got = np.stack([ex.setpoint(x) for x in t])
    assert np.abs(got - expected).max() < 1e-3, np.abs(got - expected).max()
    eps = 1e-5
    v_old = (old.setpoint(now + eps) - old.setpoint(now - eps)) / (2 * eps)
    v_before = (ex.setpoint(now) - old.setpoint(now - eps)) / eps
    v_after = (ex.setpoint(now + eps) - ex.setpoint(now)) / eps
    np.testing.assert_allclose(v_before, v_old, atol=1e-3)
    np.testing.assert_allclose(v_after, v_old, atol=1e-3)


def test_pchip_first_chunk_starts_from_rest():
    """Nothing executing: the arm stands still, so a pchip plan leaves its first action at zero velocity
    (linear starts at the first step's full speed) and stays within the velocity bound admission allows."""
    from twinbrain_ros.runtime.chunk_executor import PEAK_SPEED_OVER_SECANT

    chunk = np.stack([np.linspace(0.0, 0.45, 10)] * 3, axis=1)    # 0.5 rad/s per step
    eps = 1e-5
    for method, start_speed in (("pchip", 0.0), ("linear", 0.5)):
        ex = ChunkExecutor(3, DT, interpolation=method)
        ex.add_chunk(chunk, obs_stamp=0.0, now=0.0)
        np.testing.assert_allclose((ex.setpoint(eps) - ex.setpoint(0.0)) / eps, start_speed, atol=1e-3)
        t = np.linspace(0, 0.9, 901)
        speed = np.abs(np.diff(np.stack([ex.setpoint(x) for x in t]), axis=0) / np.diff(t)[:, None]).max()
        assert speed <= PEAK_SPEED_OVER_SECANT[method] * 0.5 + 1e-6, (method, speed)
