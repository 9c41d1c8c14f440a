"""The invariants of TWINBRAIN.md, each on both backbones (tiny random configs of the real classes)."""

import copy

import numpy as np
import pytest
import torch
from conftest import BACKBONES, random_image

from twinbrain_ros.model import Observation, TwinBrainPolicy, load_base
from twinbrain_ros.model.asymot import build_joint_mask


def _obs(seed, instruction="pick up the red cube", state_dim=7):
    return Observation([random_image(seed)], np.linspace(-0.5, 0.5, state_dim) + seed * 0.01, instruction)


def _inputs(policy, observations):
    return policy.prepare(observations)


@pytest.mark.parametrize("kind", BACKBONES)
def test_left_frozen_and_receives_no_gradient(make_policy, kind):
    policy = make_policy(kind)
    model = policy.model.train()
    assert all(not p.requires_grad for p in model.left.parameters())
    inputs, state = _inputs(policy, [_obs(0), _obs(1, "push the blue cube to the left")])
    actions = torch.randn(2, policy.config.chunk_length, policy.config.action_dim)
    model.loss(inputs, state, actions).backward()
    assert all(p.grad is None for p in model.left.parameters())
    assert not model.left.training
    right_grads = [p.grad for p in model.right.language_model.parameters() if p.grad is not None]
    assert right_grads and any(g.abs().sum() > 0 for g in right_grads)
    assert model.right.visual.patch_embed.proj.weight.grad is not None   # Right has its own vision tower
    assert model.state_encoder.net[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", BACKBONES)
def test_left_hidden_states_equal_plain_transformers_forward(make_policy, tiny_base_dirs, kind):
    policy = make_policy(kind)
    inputs, _ = _inputs(policy, [_obs(0), _obs(1, "touch the green cube")])
    hidden, kv = policy.model.left_forward(inputs["left"])
    plain = load_base(tiny_base_dirs[kind]).model
    with torch.no_grad():
        expected = plain.model(**inputs["left"]).last_hidden_state
    torch.testing.assert_close(hidden, expected, rtol=0, atol=0)
    assert len(kv) == plain.config.text_config.num_hidden_layers


@pytest.mark.parametrize("kind", BACKBONES)
def test_information_flows_left_to_right_only(make_policy, kind):
    policy = make_policy(kind)
    model = policy.model
    inputs, state = _inputs(policy, [_obs(0)])
    seen_left = []
    handle = model.left.model.register_forward_hook(lambda m, a, out: seen_left.append(out.last_hidden_state.clone()))
    try:
        base_right, _ = model.features(inputs, state)
        # Change only Right's inputs (state and its prompt text): Left's output must not move.
        changed = copy.deepcopy(inputs)
        changed["right"]["input_ids"][0, 5] = changed["right"]["input_ids"][0, 6]
        right_changed, _ = model.features(changed, state + 0.3)
        # Change only Left's inputs (its image pixels): Right's output must move.
        left_changed = copy.deepcopy(inputs)
        left_changed["left"]["pixel_values"] = left_changed["left"]["pixel_values"] + 0.5
        right_after_left_change, _ = model.features(left_changed, state)
    finally:
        handle.remove()
    torch.testing.assert_close(seen_left[0], seen_left[1], rtol=0, atol=0)
    assert not torch.allclose(base_right, right_changed)
    assert not torch.allclose(base_right, right_after_left_change)


@pytest.mark.parametrize("kind", BACKBONES)
def test_without_left_right_is_a_plain_single_brain_forward(make_policy, kind):
    policy = make_policy(kind)
    model = policy.model
    inputs, state = _inputs(policy, [_obs(0), _obs(3, "push the blue cube to the left")])
    no_left = model.right_forward(inputs["right"], state, left_kv=None)
    _, left_kv = model.left_forward(inputs["left"])
    zero_mask = torch.zeros_like(inputs["left"]["attention_mask"])
    zeroed = model.right_forward(inputs["right"], state, left_kv, zero_mask)
    # Reference: transformers' own SDPA forward of the same Right weights, state spliced the same way.
    text_config = model.right.language_model.config
    impl = text_config._attn_implementation
    text_config._attn_implementation = "sdpa"
    try:
        with torch.no_grad():
            model._pending_state = model.state_encoder(state)
            plain = model.right(**inputs["right"], use_cache=False).last_hidden_state
    finally:
        model._pending_state = None
        text_config._attn_implementation = impl
    valid = inputs["right"]["attention_mask"].bool()
    torch.testing.assert_close(no_left[valid], plain[valid], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(zeroed[valid], plain[valid], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", BACKBONES)
def test_padding_does_not_change_unpadded_samples(make_policy, kind):
    policy = make_policy(kind)
    short, long = _obs(0, "touch it"), _obs(1, "push the blue cube to the left side of the table, slowly")
    batch_inputs, batch_state = _inputs(policy, [short, long])
    assert (batch_inputs["right"]["attention_mask"] == 0).any()        # the short one is padded
    batched, _ = policy.model.features(batch_inputs, batch_state)
    for i, obs in enumerate([short, long]):
        single_inputs, single_state = _inputs(policy, [obs])
        single, _ = policy.model.features(single_inputs, single_state)
        n = single.shape[1]
        torch.testing.assert_close(batched[i, :n], single[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", BACKBONES)
def test_batched_predict_equals_per_sample_predict(make_policy, kind):
    policy = make_policy(kind)
    observations = [_obs(0, "touch it"), _obs(1, "pick up the red cube and lift it high")]
    noise = np.random.default_rng(0).standard_normal((2, policy.config.chunk_length, policy.config.action_dim))
    batched = policy.predict_batch(observations, noise=noise)
    for i, obs in enumerate(observations):
        single = policy.predict_batch([obs], noise=noise[i:i + 1])[0]
        np.testing.assert_allclose(batched[i], single, rtol=1e-4, atol=1e-4)


def test_joint_mask_is_index_aligned_and_pads_both_sides():
    left = torch.tensor([[1, 1, 1, 0]])           # 3 real Left tokens, 1 pad
    right = torch.tensor([[1, 1, 1, 1, 1, 0]])    # 5 real Right tokens, 1 pad
    mask = build_joint_mask(left, right)[0, 0]
    left_part, right_part = mask[:, :4], mask[:, 4:]
    assert left_part[0].tolist() == [True, False, False, False]
    assert left_part[1].tolist() == [True, True, False, False]
    assert left_part[4].tolist() == [True, True, True, False]      # last Right tokens see all of Left
    assert not left_part[:, 3].any()                                # Left padding never visible
    assert not right_part[:5, 5].any()                              # Right padding never visible
    assert torch.equal(right_part[:5, :5], torch.ones(5, 5).tril().bool())
    assert build_joint_mask(None, right).shape == (1, 1, 6, 6)


@pytest.mark.parametrize("kind", BACKBONES)
def test_overfitting_one_batch_drives_flow_loss_down_and_samples_approach_targets(make_policy, kind):
    torch.manual_seed(0)
    policy = make_policy(kind)
    model = policy.model.train()
    inputs, state = _inputs(policy, [_obs(0)])
    h, a = policy.config.chunk_length, policy.config.action_dim
    targets = torch.linspace(-0.8, 0.8, h)[:, None].expand(h, a)[None].contiguous() * torch.linspace(1, -1, a)
    steps = 300
    optim = torch.optim.AdamW([
        {"params": list(model.right.parameters()), "lr": 3e-4},
        {"params": list(model.action_expert.parameters()) + list(model.state_encoder.parameters()), "lr": 3e-3},
    ], weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optim, steps)
    gen = torch.Generator().manual_seed(0)
    eval_gen = lambda: torch.Generator().manual_seed(123)   # noqa: E731 - same (eps, t) draws before/after
    with torch.no_grad():
        before = model.loss(inputs, state, targets, generator=eval_gen()).item()
    for _ in range(steps):
        optim.zero_grad()
        model.loss(inputs, state, targets, generator=gen).backward()
        optim.step()
        schedule.step()
    model.eval()
    with torch.no_grad():
        after = model.loss(inputs, state, targets, generator=eval_gen()).item()
    assert before / after > 20, (before, after)
    sampled = model.sample(inputs, state, steps=10, generator=torch.Generator().manual_seed(1))
    assert sampled.shape == (1, h, a) and torch.isfinite(sampled).all()
    assert (sampled - targets).abs().mean() < 0.1, (sampled - targets).abs().mean()


@pytest.mark.parametrize("kind", BACKBONES)
def test_save_load_is_bit_exact_and_pickle_free(make_policy, tmp_path, kind):
    policy = make_policy(kind)
    with torch.no_grad():   # make the Right brain differ from Left, as after fine-tuning
        for p in policy.model.right.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    obs = _obs(5)
    before = policy.predict(obs.images, obs.state, obs.instruction, seed=7)
    policy.save(tmp_path / "ckpt")
    assert sorted(f.name for f in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors",
                                                                      "normalization.json"]
    loaded = TwinBrainPolicy.from_checkpoint(tmp_path / "ckpt", device="cpu")
    after = loaded.predict(obs.images, obs.state, obs.instruction, seed=7)
    assert np.array_equal(before, after)
    assert not any(k.startswith("left.") for k in loaded.model.trainable_state_dict())
