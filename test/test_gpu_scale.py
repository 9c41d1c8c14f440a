"""What training and inference at GPU scale rely on, checked where a CPU can check it."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import BACKBONES, random_image
from torch.overrides import TorchFunctionMode

from twinbrain_ros.model import Observation
from twinbrain_ros.model.action_expert import FlowMatchingActionExpert, gaussian_noise
from twinbrain_ros.model.configuration_twinbrain import ActionExpertConfig
from twinbrain_ros.train.optim import MasterWeightAdamW

DEVICES = ["cpu", "meta"] + (["cuda"] if torch.cuda.is_available() else [])


def _expert():
    torch.manual_seed(0)
    return FlowMatchingActionExpert(ActionExpertConfig(width=32, heads=4, layers=2, future_tokens=2, state_hidden=16),
                                    action_dim=3, chunk_length=5, cond_dim=24)


@pytest.mark.parametrize("device", DEVICES)
def test_seeded_noise_is_drawn_on_the_generator_device_whatever_the_model_device(device):
    """The trainer's generators live on the CPU; the model may live anywhere (CUDA refuses a CPU
    generator for a CUDA tensor). The seeded draw is the same on every device."""
    expert = _expert().to(device)
    features, mask = torch.randn(2, 6, 24), torch.ones(2, 6)
    actions, action_mask = torch.rand(2, 5, 3), torch.ones(2, 5)
    condition = expert.encode_condition(features.to(device), mask.to(device))
    loss = expert.loss(condition, actions.to(device), action_mask.to(device), draws=2,
                       generator=torch.Generator().manual_seed(3))
    assert loss.device.type == device and loss.shape == ()
    chunk = expert.sample(condition, 2, steps=2, generator=torch.Generator().manual_seed(3))
    assert chunk.device.type == device and chunk.shape == (2, 5, 3)
    noise = gaussian_noise((4, 5, 3), device, torch.Generator().manual_seed(1))
    assert noise.device.type == device
    if device != "meta":
        reference = _expert()
        ref_condition = reference.encode_condition(features, mask)
        expected = reference.loss(ref_condition, actions, action_mask, draws=2,
                                  generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(loss.cpu(), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(noise.cpu(), torch.randn((4, 5, 3), generator=torch.Generator().manual_seed(1)))


class RecordAttention(TorchFunctionMode):
    """Observes every real scaled_dot_product_attention call (arguments only; the call itself runs)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            self.calls.append((args[0].shape, args[1].shape, kwargs.get("attn_mask") is not None,
                               kwargs.get("enable_gqa", False)))
        return func(*args, **kwargs)


def _right_features(make_policy, kind):
    policy = make_policy(kind)
    obs = [Observation([random_image(i)], np.linspace(-0.5, 0.5, 7), text) for i, text in
           enumerate(["touch it", "push the blue cube to the left"])]
    inputs, state = policy.prepare(obs)
    return policy, inputs, state


@pytest.mark.parametrize("kind", BACKBONES)
def test_asymot_attention_calls_sdpa_in_a_form_fused_kernels_accept(make_policy, kind):
    """GQA heads repeated before SDPA whenever a mask is given: flash / memory-efficient kernels refuse
    enable_gqa with an explicit mask and SDPA would silently run the math kernel on a GPU."""
    policy, inputs, state = _right_features(make_policy, kind)
    _, left_kv = policy.model.left_forward(inputs["left"])
    with torch.no_grad(), RecordAttention() as seen:
        policy.model.right_forward(inputs["right"], state, left_kv, inputs["left"]["attention_mask"])
    joint = [c for c in seen.calls if c[1][2] > inputs["right"]["input_ids"].shape[1]]   # over [Left ; Right] keys
    assert len(joint) == policy.model.right.config.text_config.num_hidden_layers
    for q_shape, k_shape, masked, gqa in joint:
        assert masked and not gqa and q_shape[1] == k_shape[1], (q_shape, k_shape, gqa)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused kernels are CUDA kernels")
def test_asymot_runs_on_the_memory_efficient_kernel_on_cuda(make_policy):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    policy, inputs, state = _right_features(make_policy, "qwen3_vl")
    policy.model.cuda()
    inputs = {k: {n: t.cuda() for n, t in v.items()} for k, v in inputs.items()}
    _, left_kv = policy.model.left_forward(inputs["left"])
    reference = policy.model.right_forward(inputs["right"], state.cuda(), left_kv, inputs["left"]["attention_mask"])
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):   # raises if SDPA would need the math kernel
        fused = policy.model.right_forward(inputs["right"], state.cuda(), left_kv, inputs["left"]["attention_mask"])
    torch.testing.assert_close(fused, reference, rtol=1e-4, atol=1e-4)


def _adam_pair(state_dtype):
    torch.manual_seed(0)
    reference = [torch.randn(6, 5), torch.randn(5)]
    ours = [reference[0].bfloat16().float(), reference[1].clone()]    # start from bf16-representable weights
    reference[0] = ours[0].clone()
    ref_params = [torch.nn.Parameter(t.clone()) for t in reference]
    our_params = [torch.nn.Parameter(ours[0].bfloat16()), torch.nn.Parameter(ours[1].clone())]   # bf16 + fp32
    kw = {"lr": 1e-3, "betas": (0.9, 0.95), "weight_decay": 0.1, "eps": 1e-8}
    return (ref_params, torch.optim.AdamW(ref_params, foreach=False, **kw),
            our_params, MasterWeightAdamW(our_params, state_dtype=state_dtype, **kw))


def _adam_steps(params, optimizer, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen).bfloat16().to(p.dtype)   # the same grads for both
        optimizer.step()


def test_master_weight_adamw_is_fp32_adamw_on_a_bf16_model_and_resumes_exactly():
    ref_params, ref_opt, params, opt = _adam_pair(torch.float32)
    _adam_steps(ref_params, ref_opt, 5, seed=1)
    _adam_steps(params, opt, 5, seed=1)
    master = opt.state[params[0]]["master"]
    assert master.dtype == torch.float32 and "master" not in opt.state[params[1]]   # no copy of fp32 weights
    torch.testing.assert_close(master, ref_params[0].detach(), rtol=1e-6, atol=1e-7)
    assert torch.equal(params[0].detach(), master.bfloat16())                          # the model holds it rounded
    torch.testing.assert_close(params[1].detach(), ref_params[1].detach(), rtol=1e-6, atol=1e-7)
    # 1e-3 steps on O(1) weights: a plain bf16 AdamW would round most of them away; the master keeps them
    assert (master - master.bfloat16().float()).abs().max() > 0

    saved = opt.state_dict()
    fresh_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    fresh = MasterWeightAdamW(fresh_params, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    fresh.load_state_dict(saved)
    assert fresh.state[fresh_params[0]]["master"].dtype == torch.float32           # not cast to the weight's bf16
    _adam_steps(params, opt, 3, seed=2)
    _adam_steps(fresh_params, fresh, 3, seed=2)
    for a, b in zip(params, fresh_params):
        assert torch.equal(a, b)
    assert torch.equal(opt.state[params[0]]["master"], fresh.state[fresh_params[0]]["master"])


def test_master_weight_adamw_with_bf16_moments_stays_close_to_fp32_adamw():
    ref_params, ref_opt, params, opt = _adam_pair(torch.bfloat16)
    _adam_steps(ref_params, ref_opt, 20, seed=1)
    _adam_steps(params, opt, 20, seed=1)
    assert opt.state[params[0]]["exp_avg"].dtype == torch.bfloat16
    moved = (ref_params[0].detach() - _adam_pair(torch.float32)[0][0].detach()).abs().mean()
    error = (opt.state[params[0]]["master"] - ref_params[0].detach()).abs().mean()
    assert error < 0.02 * moved, (error, moved)


@pytest.mark.parametrize("kind", BACKBONES)
def test_gradient_checkpointing_of_the_right_brain_gives_the_same_loss_and_gradients(make_policy, kind):
    policy, inputs, state = _right_features(make_policy, kind)
    model = policy.model.train()
    actions = torch.rand(2, policy.config.chunk_length, policy.config.action_dim)

    def loss_and_grads():
        model.zero_grad()
        loss = model.loss(inputs, state, actions, generator=torch.Generator().manual_seed(0))
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.right.parameters() if p.grad is not None]

    plain_loss, plain_grads = loss_and_grads()
    model.right.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert model.right.language_model.gradient_checkpointing
    ckpt_loss, ckpt_grads = loss_and_grads()
    torch.testing.assert_close(ckpt_loss, plain_loss, rtol=1e-6, atol=1e-7)
    assert len(ckpt_grads) == len(plain_grads)
    for a, b in zip(ckpt_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _memory(capsys, *args):
    from twinbrain_ros.bench.memory import main

    main(list(args))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def test_memory_bench_accounts_the_real_4b_model_and_fits_batch_8_on_one_80gb_gpu(capsys):
    from twinbrain_ros.bench.memory import build_meta_model

    model = build_meta_model("qwen3-vl-4b")
    assert all(p.device.type == "meta" for p in model.parameters())
    weights = sum(p.numel() * p.element_size() for p in model.parameters())   # the dtypes as built
    r = _memory(capsys, "--preset", "qwen3-vl-4b", "--gpus", "8", "--batch", "8", "--optimizer-state", "bf16",
                "--gradient-checkpointing")
    params = r["params"]
    assert params["left"] == params["right"] == sum(p.numel() for p in model.left.parameters())
    assert 4.3e9 < params["left"] < 4.6e9 and r["image_tokens"] == 64       # Qwen3-VL-4B, 224² -> 64 tokens
    one, ddp, zero = r["layouts"]["1_gpu"], r["layouts"]["ddp_x8"], r["layouts"]["zero2_x8"]
    assert one["weights_gb"] == round(weights / 1e9, 2)
    trained = params["right"] + params["head"]
    assert zero["optimizer_gb"] == round(12 * trained / 8 / 1e9, 2)             # fp32 master + moments, 1/8 each
    assert one["gradients_gb"] == round((2 * params["right"] + 4 * params["head"]) / 1e9, 2)   # Left: none
    assert zero["total_gb"] < one["total_gb"] == ddp["total_gb"]                # DDP: gradients live in its buckets
    assert one["fits"] and one["total_gb"] + r["margin_gb"] <= 80              # the target
    assert r["checkpoint_gb"] < 10                                              # bf16 Right + fp32 head only
    fp32 = _memory(capsys, "--preset", "qwen3-vl-4b")            # the trainer's defaults: fp32 moments
    assert fp32["optimizer_state"] == "fp32" and not fp32["gradient_checkpointing"]
    assert not fp32["layouts"]["1_gpu"]["fits"] and fp32["layouts"]["zero2_x8"]["fits"]
    copied = _memory(capsys, "--preset", "qwen3-vl-4b", "--ddp-bucket-copy")["layouts"]
    assert copied["ddp_x8"]["buffers_gb"] == copied["1_gpu"]["gradients_gb"]   # accelerate's default: a 2nd copy
    twice = _memory(capsys, "--preset", "qwen3-vl-4b", "--batch", "16")
    no_ckpt = _memory(capsys, "--preset", "qwen3-vl-4b", "--batch", "8", "--optimizer-state", "bf16")
    assert no_ckpt["layouts"]["1_gpu"]["fits"]                                 # also without checkpointing
    assert abs(twice["layouts"]["1_gpu"]["activations_gb"] - 2 * no_ckpt["layouts"]["1_gpu"]["activations_gb"]) < 0.05
    assert no_ckpt["layouts"]["1_gpu"]["activations_gb"] > 3 * one["activations_gb"]


@pytest.mark.parametrize("image", [64, 256])
def test_activation_estimate_matches_what_autograd_saves_on_the_tiny_preset(make_policy, image):
    """The estimate's per-layer terms, checked against the tensors a real bf16 training forward saves."""
    from twinbrain_ros.bench.memory import activation_bytes, measure_saved_bytes

    policy = make_policy("qwen3_vl", image_size=[image, image])
    model = policy.model.train()
    model.left.bfloat16()
    model.right.bfloat16()
    policy.dtype = torch.bfloat16
    obs = [Observation([random_image(i, image, image)], np.zeros(7), "pick up the red cube") for i in range(2)]
    inputs, state = policy.prepare(obs)
    measured = measure_saved_bytes(model, inputs, state, torch.rand(2, policy.config.chunk_length, 7))
    image_tokens = int((inputs["right"]["mm_token_type_ids"] == 1).sum()) // 2
    estimate = activation_bytes(model, 2, inputs["left"]["input_ids"].shape[1], inputs["right"]["input_ids"].shape[1],
                                4 * image_tokens, checkpointing=False)
    for part, saved in measured.items():
        assert 0.8 < estimate[part] / saved < 1.25, (part, estimate[part], saved)


@pytest.mark.parametrize("kind", BACKBONES)
def test_fused_joint_attention_matches_the_eager_reference(make_policy, kind):
    """SDPA joint attention (the fast path) against the reference's matmul + softmax, padding included."""
    from twinbrain_ros.bench.inference import attention
    from twinbrain_ros.model.asymot import EAGER_ATTN_IMPLEMENTATION

    policy, inputs, state = _right_features(make_policy, kind)
    model = policy.model
    assert (inputs["right"]["attention_mask"] == 0).any()        # one prompt is padded
    with torch.no_grad():
        fused, _ = model.features(inputs, state)
        with attention([(model.right.language_model.config, EAGER_ATTN_IMPLEMENTATION)]):
            eager, _ = model.features(inputs, state)
    valid = inputs["right"]["attention_mask"].bool()
    torch.testing.assert_close(fused[valid], eager[valid], rtol=1e-5, atol=1e-5)


def test_inference_baseline_computes_what_predict_computes():
    """The naive baseline of `twinbrain-bench inference` is the reference's way to the same actions."""
    from twinbrain_ros.bench.inference import build_policy, naive_predict

    policy = build_policy("tiny", "cpu", cameras=1, image=224, steps=4, chunk=16)
    rng = np.random.default_rng(0)
    obs = Observation([rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)], np.full(7, 0.1), "pick up the red cube")
    noise = rng.standard_normal((1, 16, 7))
    np.testing.assert_allclose(naive_predict(policy, obs, noise), policy.predict_batch([obs], noise=noise)[0],
                               rtol=1e-4, atol=1e-5)


def test_inference_presets_tokenize_like_the_real_qwen3_vl():
    """Token counts decide attention cost: the bench's prompts are as long as the real model's (Qwen's
    BPE keeps common words whole; the byte tokenizer gave 180 / 255 prompt tokens) and a 224² camera
    image is 64 tokens (the real processor upsizes it to 256²; the tiny one gave 49)."""
    from twinbrain_ros.bench.inference import build_policy

    policy = build_policy("tiny", "cpu", cameras=1, image=224, steps=4, chunk=16)
    obs = Observation([np.zeros((224, 224, 3), np.uint8)], np.zeros(7), "pick up the red cube")
    inputs, _ = policy.prepare([obs])
    assert int(inputs["left"]["mm_token_type_ids"].sum()) == int(inputs["right"]["mm_token_type_ids"].sum()) == 64
    tok = policy.processor.right_tokenizer
    text = "You are a helpful robot brain that can understand images and texts.\nInstruction: pick up the red cube"
    words = tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
    assert len(tok(text, add_special_tokens=False)["input_ids"]) == len(words)     # one token per word
    left, right = inputs["left"]["input_ids"].shape[1], inputs["right"]["input_ids"].shape[1]
    assert 85 <= left <= 105 and 110 <= right <= 130, (left, right)               # real Qwen3-VL: ~90 / ~120


@pytest.mark.parametrize("backend", [None, "eager"])
def test_captured_euler_loop_matches_the_eager_loop(backend):
    """The fast path's static-shape loop (torch.compile with fullgraph=True: one graph, no breaks) gives
    the eager loop's chunk; on CUDA the same function is what the CUDA graph records."""
    expert = _expert().eval()
    condition = expert.encode_condition(torch.randn(2, 6, 24), torch.tensor([[1] * 6, [1] * 4 + [0] * 2]))
    noise = torch.randn(2, 5, 3)
    eager = expert.sample(condition, 2, steps=4, noise=noise)
    expert.use_captured_loop(True, compile_backend=backend)
    captured = expert.sample(condition, 2, steps=4, noise=noise)
    torch.testing.assert_close(captured, eager, rtol=1e-5, atol=1e-6)
    expert.use_captured_loop(False)
    assert torch.equal(expert.sample(condition, 2, steps=4, noise=noise), eager)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs")
def test_cuda_graph_euler_loop_matches_eager_and_follows_new_inputs():
    expert = _expert().eval().cuda()
    eager = []
    inputs = [(torch.randn(2, 6, 24, device="cuda"), torch.randn(2, 5, 3, device="cuda")) for _ in range(2)]
    mask = torch.ones(2, 6, device="cuda")
    for features, noise in inputs:
        eager.append(expert.sample(expert.encode_condition(features, mask), 2, 4, noise=noise))
    expert.use_captured_loop(True)
    for (features, noise), expected in zip(inputs, eager):   # the second call replays with new inputs
        got = expert.sample(expert.encode_condition(features, mask), 2, 4, noise=noise)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_inference_bench_prints_one_json_line_with_real_token_counts(capsys):
    from twinbrain_ros.bench.inference import main

    main(["--preset", "tiny", "--device", "cpu", "--runs", "2", "--warmup", "1", "--capture-euler"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["image_tokens"] == 64 and record["captured_euler_loop"]
    assert record["predict_p50_ms"] > 0 and record["naive_p50_ms"] > 0
