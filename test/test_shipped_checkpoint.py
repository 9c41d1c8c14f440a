"""The checkpoint `make demo` runs (twinbrain_ros/checkpoints/sim_touch): its Left brain is the tiny
random base, rebuilt in code from a seed on any machine, bit for bit (checked by hashing the weights);
it loads as a deployment loads it and acts on a sim observation. Checkpoints that pointed at their
run's tiny-base directory export to the same portable spec."""

import json
import shutil

import numpy as np
import pytest

from twinbrain_ros.demo import SHIPPED_CHECKPOINT, checkpoint_instruction, demo_config
from twinbrain_ros.model import TwinBrainPolicy, load_base
from twinbrain_ros.model.backbone import TINY_PREFIX, tiny_base_spec, weights_sha256
from twinbrain_ros.sim.arm_sim import ArmSim
from twinbrain_ros.train.export import export


def test_the_tiny_base_rebuilds_bit_for_bit_from_its_seed():
    config = json.loads((SHIPPED_CHECKPOINT / "config.json").read_text())
    assert config["base_model_path"] == tiny_base_spec("qwen3_vl", 0)
    assert load_base(config["base_model_path"]).sha256 == config["base_weights_sha256"]
    assert load_base(tiny_base_spec("qwen3_vl", 1)).sha256 != config["base_weights_sha256"]   # the seed matters


def test_the_word_tokenizer_base_is_its_own_spec_and_a_colour_is_one_token():
    """``tiny:<kind>:<seed>:word``: the same architecture with each prompt word one token. The weights'
    hash cannot see a vocabulary that maps the same number of tokens differently, so the vocabulary is
    pinned here: a change to PROMPT_WORDS or to the tokenizers library fails this test, not a robot."""
    import hashlib

    spec = tiny_base_spec("qwen3_vl", 0, tokenizer="word")
    base = load_base(spec)
    assert spec == "tiny:qwen3_vl:0:word" and base.path == spec
    assert base.sha256 != load_base(tiny_base_spec("qwen3_vl", 0)).sha256   # another embedding table
    for text in ("touch the red cube", "put your fingers on the green cube", "shove the blue cube left"):
        assert len(base.tokenizer.tokenize(text)) == len(text.split())   # no word split into pieces
    vocab = json.dumps(base.tokenizer.get_vocab(), sort_keys=True).encode()
    assert hashlib.sha256(vocab).hexdigest() == "9b6db821c2abcc1bdb41dd5a5a5f534b4609eff5e995184bccd5804a854185a3"
    with pytest.raises(ValueError, match="expected tiny:"):
        load_base("tiny:qwen3_vl:0:bpe")


def test_a_larger_tiny_size_is_part_of_the_spec_and_the_default_size_is_unchanged():
    spec = tiny_base_spec("qwen3_vl", 0, tokenizer="word", size="s")
    base = load_base(spec)
    text = base.model.config.text_config
    assert spec == "tiny:qwen3_vl:0:word:s" and base.path == spec
    assert (text.num_hidden_layers, text.hidden_size, base.model.config.vision_config.hidden_size) == (4, 128, 64)
    assert tiny_base_spec("qwen3_vl", 0, tokenizer="word", size="xs") == "tiny:qwen3_vl:0:word"   # shipped specs
    assert load_base(spec).sha256 == base.sha256                               # rebuilt bit for bit from the seed
    for bad in ("tiny:qwen3_vl:0:word:xl", "tiny:qwen3_vl:0:word:s:extra"):
        with pytest.raises(ValueError, match="expected tiny:"):
            load_base(bad)
    with pytest.raises(ValueError, match="tiny size 'xl'"):
        tiny_base_spec("qwen3_vl", 0, size="xl")


def test_the_shipped_checkpoint_acts_on_a_sim_observation():
    policy = TwinBrainPolicy.from_checkpoint(SHIPPED_CHECKPOINT, device="cpu")
    sim = ArmSim()
    try:
        sim.reset(10_000, "touch:red")
        images = {cam: sim.render(cam) for cam in sim.cameras}
        chunk = policy.predict(images, sim.joint_positions(), "touch the red cube", seed=0)
    finally:
        sim.close()
    assert chunk.shape == (policy.config.chunk_length, 7) and np.all(np.isfinite(chunk))


def test_a_different_base_is_refused(tmp_path):
    shutil.copytree(SHIPPED_CHECKPOINT, tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "base_model_path": tiny_base_spec("qwen3_vl", 1)}))
    with pytest.raises(ValueError, match="weights sha256"):
        TwinBrainPolicy.from_checkpoint(tmp_path / "ckpt", device="cpu")
    with pytest.raises(ValueError, match="expected tiny:"):
        load_base("tiny:qwen3_vl:zero")


def test_a_checkpoint_on_a_tiny_base_directory_exports_to_the_spec(tmp_path, tiny_base_dirs):
    shutil.copytree(SHIPPED_CHECKPOINT, tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    config = json.loads(path.read_text())
    # how checkpoints were written before the spec: the run's own tiny-base directory, no hash
    path.write_text(json.dumps({**config, "base_model_path": str(tiny_base_dirs["qwen3_vl"]),
                                "base_weights_sha256": ""}))
    result = export(tmp_path / "old", tmp_path / "new", {"trained_by": "test"})
    assert result["portable"] and result["base_model_path"].startswith(TINY_PREFIX)
    exported = json.loads((tmp_path / "new" / "config.json").read_text())
    assert exported["base_weights_sha256"] == weights_sha256(load_base(tiny_base_dirs["qwen3_vl"]).model)
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["config.json", "model.safetensors",
                                                                    "normalization.json", "provenance.json"]
    TwinBrainPolicy.from_checkpoint(tmp_path / "new", device="cpu")


def test_the_demo_stages_the_task_its_instruction_names(tmp_path):
    import yaml

    from twinbrain_ros.graph import node_params

    config = yaml.safe_load(demo_config("Push the blue cube to the right", tmp_path).read_text())
    sim = node_params(config, "sim_arm")
    assert sim["task"] == "push:blue:right" and sim["publish_instruction"] is False
    with pytest.raises(SystemExit, match="names no sim task"):
        demo_config("make me a sandwich", tmp_path)
    # without --instruction the demo runs the shipped checkpoint's own task, which the sim can stage
    shipped = yaml.safe_load(demo_config(checkpoint_instruction(str(SHIPPED_CHECKPOINT)), tmp_path).read_text())
    assert node_params(shipped, "sim_arm")["task"] == "touch:green"
