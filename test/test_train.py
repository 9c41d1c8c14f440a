"""Fine-tuning on a tiny recorded dataset: the loss falls, --resume continues identically, the result
deploys as a policy and the Left brain is untouched."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from twinbrain_ros.data.record_sim import record
from twinbrain_ros.model import TwinBrainPolicy, load_base
from twinbrain_ros.train.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "touch"
    record(str(root), episodes=3, image_size=(48, 48), task="touch")
    return root


def _cfg(dataset, out, **kw):
    values = dict(dataset=str(dataset), out=str(out), steps=40, batch_size=4, lr_right=1e-4, lr_head=1e-3,
                  warmup_steps=5, val_every=20, save_every=20, chunk_length=8, noise_draws=2)
    values.update(kw)
    return TrainConfig(**values)


def _losses(out):
    return [json.loads(line) for line in open(out / "metrics.jsonl")]


def test_training_loss_falls_and_the_checkpoint_deploys(dataset, tmp_path):
    trainer = Trainer(_cfg(dataset, tmp_path / "run", steps=60))
    before = trainer.evaluation_loss(trainer.train_set)
    result = trainer.run()
    after = trainer.evaluation_loss(trainer.train_set)
    assert after < 0.75 * before, (before, after)   # fixed (eps, t) draws: a real decrease, not noise
    logs = _losses(tmp_path / "run")
    assert logs[-1]["val_loss"] is not None and np.isfinite(logs[-1]["val_loss"])
    policy = TwinBrainPolicy.from_checkpoint(result["checkpoint"], device="cpu")
    chunk = policy.predict([np.zeros((48, 48, 3), np.uint8)] * 2, np.zeros(7), "touch the green cube", seed=0)
    assert chunk.shape == (8, 7) and np.all(np.isfinite(chunk))
    # the Left brain is still exactly the base model
    base = load_base(policy.config.base_model_path).model.state_dict()
    for name, tensor in policy.model.left.state_dict().items():
        assert torch.equal(tensor, base[name]), name
    # ... so it answers questions exactly as before fine-tuning (~/ask)
    untrained = TwinBrainPolicy.from_base(load_base(policy.config.base_model_path), policy.config)
    frames = {"front": np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)}
    question = "Where is the green cube?"
    assert policy.answer_ids(frames, question, 12) == untrained.answer_ids(frames, question, 12)


def test_resume_continues_identically(dataset, tmp_path):
    Trainer(_cfg(dataset, tmp_path / "full", steps=30, save_every=15)).run()
    resumed = Trainer(_cfg(dataset, tmp_path / "full-resumed", steps=30, save_every=15),
                      resume=str(tmp_path / "full" / "step-000015"))
    assert resumed.step == 15
    resumed.run()
    full = _losses(tmp_path / "full")
    again = _losses(tmp_path / "full-resumed")
    np.testing.assert_allclose([r["loss"] for r in again], [r["loss"] for r in full[15:]], rtol=1e-5, atol=1e-6)
    a = TwinBrainPolicy.from_checkpoint(tmp_path / "full" / "final", device="cpu").model.trainable_state_dict()
    b = TwinBrainPolicy.from_checkpoint(tmp_path / "full-resumed" / "final", device="cpu").model.trainable_state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_time_budget_fits_the_schedule_and_ends_it(dataset, tmp_path):
    """A wall-clock budget (the closed-loop bench trains for minutes, not steps): the run stops on its
    own long before the step cap, and the cosine schedule still runs to its end (lr -> 0), because the
    step count is refitted to the measured step rate."""
    result = Trainer(_cfg(dataset, tmp_path / "budget", steps=10 ** 6, time_budget_s=4.0, val_every=10 ** 9,
                          save_every=10 ** 9)).run()
    logs = _losses(tmp_path / "budget")
    assert result["steps"] < 10 ** 6 and len(logs) == result["steps"]
    assert logs[-1]["lr_right"] < 0.02 * max(r["lr_right"] for r in logs)


def test_delta_actions_train_from_the_cli_and_deploy_as_absolute_targets(dataset, tmp_path):
    """``--delta-actions``: the arm joints are learned relative to the observed state (the gripper
    stays absolute), with their own q01/q99; the deployed policy still returns absolute targets."""
    from twinbrain_ros.model.normalization import absolute_actions, delta_actions
    from twinbrain_ros.train.trainer import main

    main(["--dataset", str(dataset), "--out", str(tmp_path / "delta"), "--steps", "3", "--batch-size", "2",
          "--chunk-length", "8", "--delta-actions", "--val-every", "1000", "--save-every", "1000"])
    policy = TwinBrainPolicy.from_checkpoint(tmp_path / "delta" / "final", device="cpu")
    assert policy.config.delta_action_mask == [True] * 6 + [False]
    trainer = Trainer(_cfg(dataset, tmp_path / "x", delta_actions=True))
    sample = trainer.train_set[5]
    deltas = sample.actions - sample.state[None]
    np.testing.assert_allclose(delta_actions(sample.actions, sample.state, policy.config.delta_action_mask)[:, :6],
                               deltas[:, :6], atol=1e-6)
    # q01/q99 of the real (unpadded) chunk rows in delta space, computed here the plain way
    rows = []
    for i in range(len(trainer.train_set)):
        s = trainer.train_set[i]
        rows.append(np.c_[(s.actions - s.state[None])[:, :6], s.actions[:, 6:]][s.action_mask > 0])
    rows = np.concatenate(rows)
    low, high = np.quantile(rows, 0.01, axis=0), np.quantile(rows, 0.99, axis=0)
    narrow = high - low < 0.01                            # widened to min_action_span around the middle
    low[narrow], high[narrow] = (low + high)[narrow] / 2 - 0.005, (low + high)[narrow] / 2 + 0.005
    np.testing.assert_allclose(trainer.policy.normalization.action.low, low, atol=1e-5)
    np.testing.assert_allclose(trainer.policy.normalization.action.high, high, atol=1e-5)
    state = trainer.policy.normalization.state                # the state's spans are widened further
    assert np.all(state.high - state.low >= 0.1 - 1e-6)
    target = trainer.policy.model_actions(sample.actions, sample.state)
    back = absolute_actions(trainer.policy.normalization.action.unnormalize(target), sample.state,
                            policy.config.delta_action_mask)
    inside = (np.abs(target) < 1).all(1)                  # rows past q01/q99 are clipped by design
    np.testing.assert_allclose(back[inside], sample.actions[inside], atol=1e-5)

    # the same weights and noise with and without the mask differ by exactly the state on the arm joints
    frames = [np.full((48, 48, 3), 90, np.uint8)] * 2
    state = np.array([0.3, -0.2, 1.5, 1.0, 0.1, -0.4, 0.02], np.float32)
    relative = policy.predict(frames, state, "touch the green cube", seed=3)
    policy.config.delta_action_mask = []
    plain = policy.predict(frames, state, "touch the green cube", seed=3)
    np.testing.assert_allclose(relative - plain, np.tile(np.r_[state[:6], 0.0], (8, 1)), atol=1e-5)


def test_delta_actions_refuse_names_that_do_not_line_up(dataset, tmp_path):
    with pytest.raises(ValueError, match="absolute_actions names \\['claw'\\]"):
        Trainer(_cfg(dataset, tmp_path / "bad", delta_actions=True, absolute_actions="claw"))
    from twinbrain_ros.model import tiny_config
    with pytest.raises(ValueError, match="one entry per action dimension"):
        tiny_config(delta_action_mask=[True, False])
    with pytest.raises(ValueError, match="state_dim >= action_dim"):
        tiny_config(state_dim=3, delta_action_mask=[True] * 7)


def test_bf16_memory_plan_trains_only_the_right_things_saves_them_in_bf16_and_resumes_exactly(dataset, tmp_path):
    """--precision bf16 (the CUDA default), run here on the CPU: Left bf16 with no grads and no optimizer
    state, Right bf16 with fp32 master copies in the optimizer, expert fp32; the checkpoint holds only what
    is trained, in the dtype it is trained in; resume is exact (the masters are in training_state.pt)."""
    from safetensors.torch import load_file

    kw = {"steps": 4, "save_every": 2, "val_every": 1000, "precision": "bf16", "gradient_checkpointing": True}
    trainer = Trainer(_cfg(dataset, tmp_path / "bf16", **kw))
    result = trainer.run()
    model, optimizer = trainer.policy.model, trainer.optimizer.optimizer
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad and p.grad is None
               for p in model.left.parameters())
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in optimized for p in model.left.parameters())
    assert all(p.dtype == torch.bfloat16 and id(p) in optimized for p in model.right.parameters())
    head = list(model.action_expert.parameters()) + list(model.state_encoder.parameters())
    assert all(p.dtype == torch.float32 and id(p) in optimized for p in head)
    for p in model.right.parameters():
        master = optimizer.state[p]["master"]
        assert master.dtype == torch.float32 and torch.equal(master.bfloat16(), p.detach())
    saved = load_file(str(tmp_path / "bf16" / "final" / "model.safetensors"))
    assert saved.keys() == model.trainable_state_dict().keys() and not any(k.startswith("left.") for k in saved)
    assert {saved[k].dtype for k in saved if k.startswith("right.")} == {torch.bfloat16}
    assert {saved[k].dtype for k in saved if not k.startswith("right.")} == {torch.float32}

    resumed = Trainer(_cfg(dataset, tmp_path / "bf16-resumed", **kw), resume=str(tmp_path / "bf16" / "step-000002"))
    again = resumed.run()
    losses = [r["loss"] for r in _losses(tmp_path / "bf16")]
    assert [r["loss"] for r in _losses(tmp_path / "bf16-resumed")] == losses[2:]
    a = load_file(str(Path(result["checkpoint"]) / "model.safetensors"))
    b = load_file(str(Path(again["checkpoint"]) / "model.safetensors"))
    for name in a:
        assert torch.equal(a[name], b[name]), name
    policy = TwinBrainPolicy.from_checkpoint(result["checkpoint"], device="cpu")    # deploys (fp32 on the CPU)
    chunk = policy.predict([np.zeros((48, 48, 3), np.uint8)] * 2, np.zeros(7), "touch the green cube", seed=0)
    assert chunk.shape == (8, 7) and np.all(np.isfinite(chunk))


def test_goal_head_learns_where_the_episode_ends_and_deploys(dataset, tmp_path):
    """goal_loss_weight > 0: a goal head on Right's last prompt token learns the episode's final state
    (its error falls), the action loss stays what evaluation reports, the checkpoint loads, and the goal
    head adds nothing at inference. Without the weight there is no head and no goal figure."""
    plain = Trainer(_cfg(dataset, tmp_path / "plain", steps=1))
    assert plain.policy.model.goal_head is None and plain.goal_errors() == {}
    trainer = Trainer(_cfg(dataset, tmp_path / "goal", steps=60, goal_loss_weight=1.0))
    sample = trainer.train_set[0]
    episode = trainer.train_set.index[0][0]
    np.testing.assert_array_equal(sample.goal, trainer.train_set._data[episode]["observation.state"][-1])
    before = trainer.goal_error(trainer.train_set)
    result = trainer.run()
    after = trainer.goal_error(trainer.train_set)
    assert after < 0.5 * before, (before, after)
    logs = _losses(tmp_path / "goal")
    assert all(np.isfinite(line["goal_loss"]) for line in logs)
    assert np.isfinite(logs[-1]["val_goal_error"])
    # evaluation_loss is the action loss alone, with or without a goal head
    items = [trainer.val_set[i] for i in range(4)]
    inputs, state, actions, mask, goal = trainer._batch(trainer.val_set, range(4))
    model = trainer.policy.model
    with torch.no_grad():
        noise = model.action_expert.flow_noise(4 * 2, torch.Generator().manual_seed(0))
        action_only = model.loss(inputs, state, actions, mask, flow_noise=noise)
        total = model.loss(inputs, state, actions, mask, flow_noise=noise, goal=goal)
        hidden, hmask = model.features(inputs, state)
        expected = action_only + model.goal_error(hidden, hmask, goal).mean()
    assert len(items) == 4 and torch.allclose(total, expected)
    policy = TwinBrainPolicy.from_checkpoint(result["checkpoint"], device="cpu")
    assert policy.config.goal_loss_weight == 1.0 and policy.model.goal_head is not None
    chunk = policy.predict([np.zeros((48, 48, 3), np.uint8)] * 2, np.zeros(7), "touch the green cube", seed=0)
    assert chunk.shape == (8, 7) and np.all(np.isfinite(chunk))


def test_early_frames_are_each_episodes_first_observations_and_fill_their_share(dataset, tmp_path):
    """early_indices(k): the first k observations of every episode, and early_frame_share draws that share
    of a batch from them (there only the words tell the goal)."""
    trainer = Trainer(_cfg(dataset, tmp_path / "early", steps=1, early_frame_share=0.5, early_frames=2))
    samples = trainer.train_set
    first = samples.early_indices(2)
    assert len(first) == 2 * len(samples.episodes)
    for episode in {e for e, _ in samples.index}:
        rows = [t for e, t in samples.index if e == episode][:2]
        assert sorted(samples.index[i][1] for i in first if samples.index[i][0] == episode) == rows
    with pytest.raises(ValueError, match="early_frame_share"):
        Trainer(_cfg(dataset, tmp_path / "bad", steps=1, early_frame_share=1.0))
