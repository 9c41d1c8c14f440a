"""Bad input and bad checkpoints give one clear error (never a crash deep inside torch)."""

import json

import numpy as np
import pytest
from conftest import random_image

from twinbrain_ros.model import TwinBrainConfig, TwinBrainPolicy, load_base


@pytest.fixture(scope="module")
def policy(make_policy):
    return make_policy("qwen3_vl")


@pytest.mark.parametrize("images, match", [
    ([np.zeros((48, 64), np.uint8)], "HxWx3 uint8"),
    ([np.zeros((48, 64, 3), np.float32)], "HxWx3 uint8"),
    ([np.zeros((8, 8, 3), np.uint8)], "too small"),
    ([], "expected 1 camera"),
    ({"wrist": random_image(0)}, "missing camera"),
])
def test_bad_images(policy, images, match):
    with pytest.raises(ValueError, match=match):
        policy.predict(images, np.zeros(7), "pick up the red cube")


@pytest.mark.parametrize("instruction", ["", "   ", None])
def test_missing_instruction(policy, instruction):
    with pytest.raises(ValueError, match="instruction"):
        policy.predict([random_image(0)], np.zeros(7), instruction)


@pytest.mark.parametrize("state, match", [(np.zeros(6), "state_dim=7"), (np.full(7, np.nan), "NaN")])
def test_bad_state(policy, state, match):
    with pytest.raises(ValueError, match=match):
        policy.predict([random_image(0)], state, "pick up the red cube")


def test_any_resolution_is_resized(policy):
    a = policy.predict([random_image(0, 480, 640)], np.zeros(7), "pick up the red cube", seed=0)
    b = policy.predict([random_image(0, 31, 17)], np.zeros(7), "pick up the red cube", seed=0)
    assert a.shape == b.shape == (16, 7) and np.isfinite(a).all() and np.isfinite(b).all()


def test_cameras_are_placed_in_configured_order(make_policy):
    policy = make_policy("qwen3_vl", camera_names=["front", "wrist"])
    front, wrist = random_image(1), random_image(2)
    by_name = policy.predict({"wrist": wrist, "front": front}, np.zeros(7), "touch the green cube", seed=0)
    in_order = policy.predict([front, wrist], np.zeros(7), "touch the green cube", seed=0)
    swapped = policy.predict([wrist, front], np.zeros(7), "touch the green cube", seed=0)
    assert np.array_equal(by_name, in_order)
    assert not np.allclose(in_order, swapped)


def test_checkpoint_errors_name_the_file(policy, tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint directory not found"):
        TwinBrainPolicy.from_checkpoint(tmp_path / "nope")
    ckpt = policy.save(tmp_path / "ckpt")
    (ckpt / "model.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="model.safetensors.*not a valid safetensors"):
        TwinBrainPolicy.from_checkpoint(ckpt)
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        TwinBrainPolicy.from_checkpoint(ckpt)
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        TwinBrainPolicy.from_checkpoint(ckpt)
    (ckpt / "config.json").write_text(json.dumps({"chunk_length": 0}))
    with pytest.raises(ValueError, match="chunk_length must be >= 1"):
        TwinBrainPolicy.from_checkpoint(ckpt)


def test_normalisation_stats_errors(policy, tmp_path):
    ckpt = policy.save(tmp_path / "ckpt")
    (ckpt / "normalization.json").write_text(json.dumps({"state": {"q01": [0], "q99": [1]}, "action": {}}))
    with pytest.raises(ValueError, match="normalization.json state: q01/q99 must have 7 values"):
        TwinBrainPolicy.from_checkpoint(ckpt)


def test_base_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_base(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="'llama' is not supported"):
        load_base(tmp_path)
    with pytest.raises(ValueError, match="camera_names"):
        TwinBrainConfig(camera_names=["a", "a"])


def test_normalisation_round_trip_and_clipping():
    from twinbrain_ros.model import RangeNormalizer

    data = np.random.default_rng(0).normal(size=(1000, 3)) * [1, 10, 0]
    norm = RangeNormalizer.from_data(data)
    y = norm.normalize(data)
    assert y.min() >= -1 and y.max() <= 1 and np.all(y[:, 2] == 0)
    inside = data[(np.abs(y[:, :2]) < 1).all(1)]
    np.testing.assert_allclose(norm.unnormalize(norm.normalize(inside))[:, :2], inside[:, :2], rtol=1e-4, atol=1e-4)


def test_narrow_spans_are_widened_so_noise_stays_small():
    """A gripper that stays closed in every demonstration (q01..q99 = 3..4 mm): without widening, 1 mm of
    settling noise spans the whole input range; widened to 1 cm it moves the input by 0.2."""
    from twinbrain_ros.model import RangeNormalizer

    norm = RangeNormalizer(np.array([-1.0, 0.003], np.float32), np.array([1.0, 0.004], np.float32))
    assert norm.normalize([0.5, 0.003]).tolist() == [0.5, -1.0] and norm.normalize([0.5, 0.004])[1] == 1.0
    wide = norm.widened(0.01)
    np.testing.assert_allclose(wide.low, [-1.0, -0.0015], atol=1e-7)
    np.testing.assert_allclose(wide.high, [1.0, 0.0085], atol=1e-7)
    np.testing.assert_allclose(wide.normalize([0.5, 0.004]) - wide.normalize([0.5, 0.003]), [0.0, 0.2], atol=1e-6)
    np.testing.assert_allclose(wide.unnormalize(wide.normalize([0.5, 0.0035])), [0.5, 0.0035], atol=1e-6)
