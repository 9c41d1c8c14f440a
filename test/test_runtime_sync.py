import numpy as np
import pytest

from twinbrain_ros.runtime.synchronizer import JointStateBuffer, ObservationSynchronizer

JOINTS = ["j1", "j2"]
IMG = np.zeros((4, 4, 3), np.uint8)


def _sync(**kw):
    s = ObservationSynchronizer(["front", "wrist"], JOINTS, slop=0.01, max_age=0.3, max_joint_gap=0.05, **kw)
    s.set_instruction("pick up the red cube")
    return s


def test_joint_states_interpolated_at_frame_stamp_and_reordered():
    s = _sync()
    for k in range(11):   # 100 Hz, shuffled name order
        t = 1.0 + 0.01 * k
        s.add_joint_state(t, ["j2", "j1"], [-t, t])
    s.add_frame("front", 1.055, IMG)
    obs = s.add_frame("wrist", 1.058, IMG)
    assert obs is not None and obs.stamp == 1.055
    np.testing.assert_allclose(obs.state, [1.055, -1.055])
    assert obs.camera_stamps == {"front": 1.055, "wrist": 1.058}


def test_cameras_must_match_within_slop():
    s = _sync()
    for k in range(30):
        s.add_joint_state(1.0 + 0.01 * k, JOINTS, [0, 0])
    s.add_frame("front", 1.10, IMG)
    assert s.add_frame("wrist", 1.13, IMG) is None
    assert "slop" in s.last_reason
    assert s.add_frame("wrist", 1.105, IMG) is not None


def test_stale_observation_and_stalled_joints_are_refused():
    s = _sync()
    for k in range(10):
        s.add_joint_state(1.0 + 0.01 * k, JOINTS, [0, 0])
    s.add_frame("front", 1.05, IMG)
    s.add_frame("wrist", 1.05, IMG)
    assert s.latest(1.1)[0] is not None
    obs, reason = s.latest(1.5)
    assert obs is None and "too old" in reason
    # frames keep coming but joint states stopped at 1.09
    s.add_frame("front", 1.3, IMG)
    assert s.add_frame("wrist", 1.3, IMG) is None
    assert "stalled" in s.last_reason


def test_joint_state_gap_is_refused():
    s = _sync()
    s.add_joint_state(1.0, JOINTS, [0, 0])
    s.add_joint_state(1.2, JOINTS, [1, 1])
    s.add_frame("front", 1.1, IMG)
    assert s.add_frame("wrist", 1.1, IMG) is None
    assert "gap" in s.last_reason


def test_instruction_is_latched_and_required():
    s = ObservationSynchronizer(["front"], JOINTS)
    s.add_joint_state(1.0, JOINTS, [0, 0])
    s.add_frame("front", 1.0, IMG)
    assert s.latest(1.01) == (None, "no instruction")
    s.set_instruction("touch the green cube")
    v = s.instruction_version
    for _ in range(3):   # read many times: never consumed
        assert s.latest(1.01)[0].instruction == "touch the green cube"
    s.set_instruction("touch the green cube")
    assert s.instruction_version == v
    s.set_instruction("push the blue cube")
    assert s.instruction_version == v + 1


def test_bad_joint_states_raise():
    buf = JointStateBuffer(JOINTS)
    with pytest.raises(ValueError, match="lacks joints"):
        buf.add(1.0, ["j1"], [0.0])
    with pytest.raises(ValueError, match="NaN"):
        buf.add(1.0, JOINTS, [0.0, np.nan])
    buf.add(1.0, JOINTS, [0, 0])
    buf.add(0.99, JOINTS, [1, 1])    # out of order: inserted, not appended
    np.testing.assert_allclose(buf.lookup(0.995, 0.05)[0], [0.5, 0.5])
    with pytest.raises(ValueError, match="unknown camera"):
        ObservationSynchronizer(["front"], JOINTS).add_frame("rear", 1.0, IMG)
