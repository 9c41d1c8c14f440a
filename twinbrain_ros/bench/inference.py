"""`twinbrain-bench inference`: latency of TwinBrainPolicy.predict vs. a naive baseline, one JSON line.

predict = Left once (SDPA, K/V cached) + Right with AsyMoT joint attention on SDPA + all Euler steps
of the action expert with the VLM cross-attention K/V computed once. The naive baseline, measured in
the same run on the same weights, computes the same actions the way the reference implementation does:
eager attention everywhere (the joint attention as matmul + softmax), both brains recomputed on every
call, the expert's cross-attention K/V recomputed at every Euler step (tested equal to predict).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch

from ..model import ActionExpertConfig, Observation, TwinBrainConfig, TwinBrainPolicy, build_base, tiny_config
from ..model.asymot import EAGER_ATTN_IMPLEMENTATION
from ..model.backbone import _token_ids, build_word_tokenizer, qwen3_vl_4b_config
from ..model.normalization import absolute_actions
from ..model.policy import pick_device
from .stats import emit, percentiles_ms


def build_policy(preset: str, device: str, cameras: int, image: int, steps: int, chunk: int) -> TwinBrainPolicy:
    names = [f"cam{i}" for i in range(cameras)]
    common = dict(camera_names=names, image_size=[image, image], num_inference_steps=steps, chunk_length=chunk)
    # Both presets tokenize like the real Qwen3-VL: prompt words whole, 224² images upsized to 64 tokens.
    tokenizer = build_word_tokenizer()
    if preset == "tiny":
        base = build_base("qwen3_vl", tokenizer=tokenizer, real_image_processor=True)
        config = tiny_config("qwen3_vl", **common)
    elif preset == "qwen3-vl-4b":
        if not device.startswith("cuda"):
            raise SystemExit("preset qwen3-vl-4b needs a CUDA device (4B parameters, bf16)")
        with torch.device(device):
            torch.set_default_dtype(torch.bfloat16)
            base = build_base("qwen3_vl", config=qwen3_vl_4b_config(token_ids=_token_ids(tokenizer)),
                              tokenizer=tokenizer, real_image_processor=True)
            torch.set_default_dtype(torch.float32)
        config = TwinBrainConfig(backbone="qwen3_vl", expert=ActionExpertConfig(), **common)
    else:
        raise SystemExit(f"unknown preset {preset!r}")
    return TwinBrainPolicy.from_base(base, config, device=device)


@contextlib.contextmanager
def attention(implementations: list[tuple[object, str]]):
    """Switch (config, attention implementation) pairs for the duration of the block."""
    saved = [(c, c._attn_implementation) for c, _ in implementations]
    for c, implementation in implementations:
        c._attn_implementation = implementation
    try:
        yield
    finally:
        for c, implementation in saved:
            c._attn_implementation = implementation


@torch.no_grad()
def naive_predict(policy: TwinBrainPolicy, obs: Observation, noise: np.ndarray | None = None) -> np.ndarray:
    """What the reference implementation computes, on the same weights: eager attention everywhere (the
    joint [Left ; Right] attention as matmul + softmax), both brains recomputed on every call, and the
    action expert's cross-attention K/V recomputed at every Euler step. Same result as ``predict``."""
    model = policy.model
    inputs, state = policy.prepare([obs])
    eager = [(model.left.model.language_model.config, "eager"), (model.left.model.visual.config, "eager"),
             (model.right.language_model.config, EAGER_ATTN_IMPLEMENTATION), (model.right.visual.config, "eager")]
    with attention(eager):
        _, left_kv = model.left_forward(inputs["left"])
        hidden = model.right_forward(inputs["right"], state, left_kv, inputs["left"]["attention_mask"])
    expert, mask = model.action_expert, inputs["right"]["attention_mask"]
    shape = (1, policy.config.chunk_length, policy.config.action_dim)
    x = torch.randn(shape) if noise is None else torch.as_tensor(np.asarray(noise, np.float32).reshape(shape))
    x = x.to(policy.device)
    dt = 1.0 / policy.config.num_inference_steps
    for k in range(policy.config.num_inference_steps):
        condition = expert.encode_condition(hidden, mask)    # recomputed every step, as the reference does
        x = x + dt * expert.velocity(x, torch.full((1,), k * dt, device=policy.device), condition)
    actions = policy.normalization.action.unnormalize(x.float().cpu().numpy())
    return absolute_actions(actions, np.asarray(obs.state, np.float32)[None], policy.config.delta_action_mask)[0]


def time_calls(fn, runs: int, warmup: int, device: str) -> list[float]:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="twinbrain-bench inference", description=__doc__)
    p.add_argument("--preset", default="tiny", choices=["tiny", "qwen3-vl-4b"])
    p.add_argument("--device", default="auto")
    p.add_argument("--cameras", type=int, default=1)
    p.add_argument("--image", type=int, default=224, help="square camera image side (pixels)")
    p.add_argument("--steps", type=int, default=4, help="Euler steps")
    p.add_argument("--chunk", type=int, default=16)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--capture-euler", action="store_true",
                   help="predict runs the Euler loop as one captured graph (a CUDA graph on CUDA)")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    policy = build_policy(args.preset, device, args.cameras, args.image, args.steps, args.chunk)
    policy.model.action_expert.use_captured_loop(args.capture_euler)
    rng = np.random.default_rng(0)
    obs = Observation([rng.integers(0, 256, (args.image, args.image, 3), dtype=np.uint8) for _ in range(args.cameras)],
                      np.zeros(policy.config.state_dim, np.float32), "pick up the red cube")
    inputs, _ = policy.prepare([obs])
    record = {
        "bench": "inference", "preset": args.preset,
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "dtype": str(policy.dtype).replace("torch.", ""), "batch": 1, "cameras": args.cameras,
        "image": args.image, "image_tokens": int((inputs["right"]["mm_token_type_ids"] == 1).sum()),
        "left_tokens": int(inputs["left"]["input_ids"].shape[1]),
        "right_tokens": int(inputs["right"]["input_ids"].shape[1]),
        "chunk": args.chunk, "euler_steps": args.steps, "captured_euler_loop": args.capture_euler,
        "params_total": sum(p.numel() for p in policy.model.parameters()),
        "params_trainable": sum(p.numel() for p in policy.model.parameters() if p.requires_grad),
        "runs": args.runs, "torch_threads": torch.get_num_threads(),
    }
    record.update(percentiles_ms(time_calls(lambda: policy.predict(obs.images, obs.state, obs.instruction),
                                            args.runs, args.warmup, device), "predict"))
    if not args.no_baseline:
        record.update(percentiles_ms(time_calls(lambda: naive_predict(policy, obs), args.runs, args.warmup, device),
                                     "naive"))
        record["speedup_p50"] = round(record["naive_p50_ms"] / record["predict_p50_ms"], 2)
    emit(record)
