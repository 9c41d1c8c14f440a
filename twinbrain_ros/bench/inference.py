"""`twinbrain-bench inference`: latency of TwinBrainPolicy.predict vs. a naive baseline, one JSON line.

predict = Left once (SDPA, K/V cached) + Right with AsyMoT joint attention + all Euler steps of the
action expert with the VLM cross-attention K/V computed once. The naive baseline, measured in the
same run on the same weights, is what the reference implementation does: two independent eager HF
forwards plus the action expert recomputing its conditioning at every Euler step.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch

from ..model import ActionExpertConfig, Observation, TwinBrainConfig, TwinBrainPolicy, build_base, tiny_config
from ..model.backbone import _token_ids, build_tiny_tokenizer, qwen3_vl_4b_config
from ..model.policy import pick_device
from .stats import emit, percentiles_ms


def build_policy(preset: str, device: str, cameras: int, image: int, steps: int, chunk: int) -> TwinBrainPolicy:
    names = [f"cam{i}" for i in range(cameras)]
    common = dict(camera_names=names, image_size=[image, image], num_inference_steps=steps, chunk_length=chunk)
    if preset == "tiny":
        base = build_base("qwen3_vl")
        config = tiny_config("qwen3_vl", **common)
    elif preset == "qwen3-vl-4b":
        if not device.startswith("cuda"):
            raise SystemExit("preset qwen3-vl-4b needs a CUDA device (4B parameters, bf16)")
        tokenizer = build_tiny_tokenizer()
        with torch.device(device):
            torch.set_default_dtype(torch.bfloat16)
            base = build_base("qwen3_vl", config=qwen3_vl_4b_config(token_ids=_token_ids(tokenizer)),
                              tokenizer=tokenizer)
            torch.set_default_dtype(torch.float32)
        config = TwinBrainConfig(backbone="qwen3_vl", expert=ActionExpertConfig(), **common)
    else:
        raise SystemExit(f"unknown preset {preset!r}")
    return TwinBrainPolicy.from_base(base, config, device=device)


@contextlib.contextmanager
def attention(configs, implementation: str):
    saved = [c._attn_implementation for c in configs]
    for c in configs:
        c._attn_implementation = implementation
    try:
        yield
    finally:
        for c, impl in zip(configs, saved):
            c._attn_implementation = impl


@torch.no_grad()
def naive_predict(policy: TwinBrainPolicy, obs: Observation) -> np.ndarray:
    model = policy.model
    inputs, state = policy.prepare([obs])
    configs = [model.left.model.language_model.config, model.left.model.visual.config,
               model.right.language_model.config, model.right.visual.config]
    with attention(configs, "eager"):
        model.left.model(**inputs["left"], use_cache=False)
        model._pending_state = model.state_encoder(state)
        try:
            hidden = model.right(**inputs["right"], use_cache=False).last_hidden_state
        finally:
            model._pending_state = None
    expert, mask = model.action_expert, inputs["right"]["attention_mask"]
    x = torch.randn(1, policy.config.chunk_length, policy.config.action_dim, device=policy.device)
    dt = 1.0 / policy.config.num_inference_steps
    for k in range(policy.config.num_inference_steps):
        condition = expert.encode_condition(hidden, mask)    # recomputed every step, as the reference does
        x = x + dt * expert.velocity(x, torch.full((1,), k * dt, device=policy.device), condition)
    return policy.normalization.action.unnormalize(x.float().cpu().numpy())[0]


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
    args = p.parse_args(argv)
    device = pick_device(args.device)
    policy = build_policy(args.preset, device, args.cameras, args.image, args.steps, args.chunk)
    rng = np.random.default_rng(0)
    obs = Observation([rng.integers(0, 256, (args.image, args.image, 3), dtype=np.uint8) for _ in range(args.cameras)],
                      np.zeros(policy.config.state_dim, np.float32), "pick up the red cube")
    inputs, _ = policy.prepare([obs])
    record = {
        "bench": "inference", "preset": args.preset,
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "dtype": str(policy.dtype).replace("torch.", ""), "batch": 1, "cameras": args.cameras,
        "image": args.image, "image_tokens": int((inputs["right"]["mm_token_type_ids"] == 1).sum()),
        "left_tokens": int(inputs["left"]["input_ids"].shape[1]), "right_tokens": int(inputs["right"]["input_ids"].shape[1]),
        "chunk": args.chunk, "euler_steps": args.steps,
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
