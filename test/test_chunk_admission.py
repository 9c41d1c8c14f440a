"""policy_node's whole-chunk policy (runtime/chunk_admission.py): clamp, slow down or refuse a plan
before any of it runs."""

import numpy as np
import pytest

from twinbrain_ros.runtime.chunk_admission import ChunkAdmission
from twinbrain_ros.runtime.joint_limits import CommandRejected, JointLimit, JointSpace

NAMES = ["j1", "j2", "j3"]


def make(margin=0.05, **modes):
    limits = [JointLimit(n, -1.0, 1.0, max_velocity=2.0, max_acceleration=20.0) for n in NAMES]
    return ChunkAdmission(JointSpace(limits, margin), **modes)


def test_chunk_validation():
    adm = make()
    ok = np.linspace(0, 0.1, 10)[:, None].repeat(3, 1)
    adm.validate(NAMES, ok, step_period=0.1)
    with pytest.raises(CommandRejected, match="position range"):
        adm.validate(NAMES, ok + 0.9, step_period=0.1)
    with pytest.raises(CommandRejected, match="rad/s"):
        adm.validate(NAMES, ok * 5, step_period=0.01)
    with pytest.raises(CommandRejected, match="NaN"):
        adm.validate(NAMES, np.full((3, 3), np.nan), step_period=0.1)


def test_chunk_clamping_holds_out_of_range_steps_at_the_limit():
    adm = make(margin=0.05)
    chunk = np.zeros((5, 3))
    chunk[:, 1] = [0.8, 0.9, 1.0, 1.2, 0.9]       # j2 leaves (0.95 after the margin) for two steps
    same, clamped = adm.clamp(NAMES, chunk[:, [0, 2, 1]] * 0)
    assert clamped == [] and np.all(same == 0)
    out, clamped = adm.clamp(NAMES[::-1], chunk[:, ::-1])    # columns follow the given names
    assert clamped == ["j2"]
    assert out[:, 1].tolist() == [0.8, 0.9, 0.95, 0.95, 0.9] and np.all(out[:, [0, 2]] == 0)
    adm.validate(NAMES[::-1], out, step_period=0.1)        # what passes is inside the range
    with_nan, clamped = adm.clamp(NAMES, np.full((2, 3), np.nan))
    assert clamped == []
    with pytest.raises(CommandRejected, match="NaN"):              # NaN is not clamped away
        adm.validate(NAMES, with_nan, step_period=0.1)
    with pytest.raises(CommandRejected, match="unknown joint"):
        adm.clamp(["j1", "j2", "bogus"], chunk)
    with pytest.raises(CommandRejected, match="values"):
        adm.clamp(NAMES, chunk[:, :2])


def test_admitting_a_chunk_clamps_then_slows_down_or_refuses_by_mode():
    adm = make(margin=0.0)
    chunk = np.zeros((4, 3))
    chunk[:, 0] = [0.0, 0.5, 1.4, 1.4]       # j1: 14 rad/s to a point past its limit (1.0); vmax 2 rad/s
    out, clamped, factor = adm.admit(NAMES, chunk, 0.1)
    assert clamped == ["j1"] and out[:, 0].max() == pytest.approx(1.0)
    assert factor == pytest.approx(2.0)   # clamped steps 0.5, 0.5 at 2 rad/s + the 0.1 s hold: 0.6 s, not 0.3 s
    assert np.abs(np.diff(out[:, 0])).max() <= 2.0 * 0.1 + 1e-9 and out[-1, 0] == pytest.approx(1.0)
    reordered, _, _ = adm.admit(NAMES[::-1], chunk[:, ::-1], 0.1)   # columns follow the given names
    np.testing.assert_allclose(reordered[:, ::-1], out)
    with pytest.raises(CommandRejected, match="position range"):
        make(margin=0.0, out_of_range="reject").admit(NAMES, chunk, 0.1)
    with pytest.raises(CommandRejected, match="rad/s"):
        make(margin=0.0, overspeed="reject").admit(NAMES, chunk, 0.1)
    with pytest.raises(CommandRejected, match="NaN"):
        adm.admit(NAMES, np.full((3, 3), np.nan), 0.1)
    with pytest.raises(CommandRejected, match="unknown joint"):   # in every mode, before any reshaping
        make(margin=0.0, out_of_range="reject").admit(["j1", "j2", "bogus"], chunk, 0.1)
    feasible = np.linspace(0.0, 0.1, 4)[:, None].repeat(3, axis=1)
    same, clamped, factor = adm.admit(NAMES, feasible, 0.1)
    assert clamped == [] and factor == 1.0 and np.array_equal(same, feasible)
    with pytest.raises(ValueError, match="clamp"):
        make(out_of_range="maybe")
