"""`twinbrain-bench memory`: GPU memory of fine-tuning per GPU, computed on the meta device (no weights,
no GPU), one JSON line.

The model is built on the meta device exactly as the trainer builds it (Left = the base VLM, Right = its
copy, action expert + state encoder in fp32) and its parameters are counted per part. Bytes per GPU
follow the trainer's memory plan (twinbrain_ros/train/trainer.py):

  * Left brain: bf16 weights only (frozen: no gradients, no optimizer state).
  * Right brain (bf16): 2 B weight + 2 B gradient + 4 B fp32 master + 2 moments (4 or 2 B each).
  * Action expert + state encoder (fp32): 4 B weight + 4 B gradient + 2 × 4 B moments.
  * DDP × N: all of it on every GPU; the trainer sets gradient_as_bucket_view, so DDP's all-reduce
    buckets hold the gradients instead of a second copy of them (``--ddp-bucket-copy``: accelerate's default).
  * ZeRO-2 × N (DeepSpeed, bf16): weights on every GPU; gradients kept as bf16 + fp32 partitions, fp32
    master and moments, each 1/N; plus DeepSpeed's default reduce + all-gather buckets (2 × 5e8 elements).

Activations are an estimate for a batch: the tensors autograd saves per token in each Right decoder layer
(RMSNorms with their fp32 copies, qk-norm, GQA K/V repeated over the [Left ; Right] keys for the fused SDPA
kernel, SwiGLU MLP), per patch in each vision block, and per token in each DiT block of the action expert
(fp32, B × noise-draws rows); with --gradient-checkpointing a Right layer keeps only its input plus one
layer being recomputed. Token counts: image tokens from the real processor's resize rule, text tokens
from the real tokenizer's prompt lengths (defaults below). Not measured on a GPU: allocator fragmentation
and the CUDA context come on top (``margin_gb``).
"""

from __future__ import annotations

import argparse

import torch

from ..model import ActionExpertConfig, TwinBrainConfig
from ..model.backbone import BACKBONES, REAL_IMAGE_PIXELS, _token_ids, build_tiny_tokenizer, qwen3_vl_4b_config
from ..model.backbone import tiny_config as tiny_base_config
from ..model.modeling_twinbrain import TwinBrainVLA
from .stats import emit

GB = 1e9
DEEPSPEED_BUCKETS = 2 * 5e8 * 2        # reduce_bucket_size + allgather_bucket_size elements, bf16


def build_meta_model(preset: str) -> TwinBrainVLA:
    if preset == "qwen3-vl-4b":
        base_config = qwen3_vl_4b_config()
        config = TwinBrainConfig(backbone="qwen3_vl", expert=ActionExpertConfig())
    elif preset == "tiny":
        tokenizer = build_tiny_tokenizer()
        base_config = tiny_base_config("qwen3_vl", len(tokenizer), _token_ids(tokenizer))
        config = TwinBrainConfig(backbone="qwen3_vl", expert=ActionExpertConfig(width=64, heads=4, layers=4,
                                                                                   future_tokens=2, state_hidden=64))
    else:
        raise SystemExit(f"unknown preset {preset!r}")
    with torch.device("meta"):
        left = BACKBONES["qwen3_vl"][1](base_config).to(torch.bfloat16)
        # The real tokenizer's state token id (151669 for Qwen3-VL) lies inside the padded embedding table,
        # so the Right table does not grow; any id below vocab_size gives the same count.
        model = TwinBrainVLA(config, left, state_token_id=base_config.text_config.vocab_size - 1)
    model.action_expert.float()
    model.state_encoder.float()
    return model


def parameter_counts(model: TwinBrainVLA) -> dict:
    def count(module):
        return sum(p.numel() for p in module.parameters())
    return {"left": count(model.left), "right": count(model.right),
            "head": count(model.action_expert) + count(model.state_encoder)}


def state_bytes(params: dict, layout: str, gpus: int, moment_bytes: int, bucket_copy: bool = False) -> dict:
    """Weights / gradients / optimizer state (master + moments) / buffers per GPU, in bytes."""
    right, head, left = params["right"], params["head"], params["left"]
    if layout == "zero2":   # DeepSpeed's bf16 engine casts the whole module, the head included, to bf16
        trained = right + head
        return {"weights": 2 * (left + trained), "gradients": 6 * trained / gpus,
                "optimizer": (4 + 8) * trained / gpus, "buffers": DEEPSPEED_BUCKETS}
    grads = 2 * right + 4 * head
    return {"weights": 2 * left + 2 * right + 4 * head, "gradients": grads,
            "optimizer": (4 + 2 * moment_bytes) * right + 8 * head,
            "buffers": grads if layout == "ddp" and gpus > 1 and bucket_copy else 0}


def image_tokens(kind: str, height: int, width: int) -> int:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    (patch, min_pixels, max_pixels), merge = REAL_IMAGE_PIXELS[kind], 2
    h, w = smart_resize(height, width, factor=patch * merge, min_pixels=min_pixels, max_pixels=max_pixels)
    return (h // patch) * (w // patch) // merge ** 2


def activation_bytes(model: TwinBrainVLA, batch: int, left_tokens: int, right_tokens: int, patches: int,
                     checkpointing: bool) -> dict:
    """Bytes autograd saves for the backward pass, per part (``measure_saved_bytes`` checks it on the CPU)."""
    text = model.right.config.text_config
    vision = model.right.config.vision_config
    expert = model.config.expert
    h, inter = text.hidden_size, text.intermediate_size
    q, kv = text.num_attention_heads * text.head_dim, text.num_key_value_heads * text.head_dim
    keys = left_tokens + right_tokens
    # bytes saved per Right token per decoder layer (bf16 = 2, fp32 copies inside RMSNorm = 4)
    per_token = (2 * (4 + 2) * h + 2 * h       # 2 RMSNorms: fp32 input + bf16 output; o_proj output
                 + (4 + 2) * (q + kv)         # qk-norm of q and k
                 + 2 * q * 3                  # q after RoPE, SDPA output, its contiguous copy for o_proj
                 + 2 * 2 * q * keys / right_tokens   # K and V repeated to every query head over [Left ; Right]
                 + 2 * keys                   # the joint mask as SDPA's additive bias
                 + 2 * 3 * inter)             # SwiGLU: gate, silu(gate)·up inputs, down_proj input
    d, d_inter = vision.hidden_size, vision.intermediate_size
    merge = vision.spatial_merge_size ** 2
    per_patch = 2 * (4 * d + 3 * d + 2 * d + 2 * d_inter)   # 2 LayerNorms in/out, q/k/v, out + proj in, MLP
    mergers = 1 + len(getattr(vision, "deepstack_visual_indexes", []))
    pixels = 2 * vision.in_channels * vision.temporal_patch_size * vision.patch_size ** 2   # patch-embed input
    merged = mergers * 2 * 4 * merge * d                    # per merged token: LayerNorm, fc1, GELU, fc2 inputs
    text_layers, vision_layers = text.num_hidden_layers, vision.depth
    if checkpointing:   # a checkpointed layer keeps its input; the one being recomputed holds its own
        right = batch * right_tokens * (text_layers * 2 * h + per_token)
        tower = batch * patches * (vision_layers * 2 * d + per_patch)
    else:
        right = batch * right_tokens * text_layers * per_token
        tower = batch * patches * vision_layers * per_patch
    right += batch * right_tokens * 6 * h            # the final RMSNorm
    tower += batch * (patches * pixels + patches // merge * merged)
    rows, tokens, w = batch * model.config.noise_draws_per_sample, expert.future_tokens + model.config.chunk_length, \
        expert.width
    cross_blocks = (expert.layers + 1) // 2
    dit = 4 * rows * (tokens * expert.layers * (11 * w + 2 * int(expert.mlp_ratio * w))
                      + cross_blocks * 2 * right_tokens * w)   # + the condition K/V repeated per draw
    left_cache = 2 * batch * left_tokens * text_layers * 2 * kv   # the Left K/V Right attends to
    return {"right_brain": right, "vision_tower": tower, "action_expert": dit, "left_kv": left_cache}


def measure_saved_bytes(model: TwinBrainVLA, inputs: dict, state, actions) -> dict:
    """What autograd really saves in one training forward (CPU or GPU), by part: the check on the estimate."""
    params = {id(p) for p in model.parameters()}
    region, saved, sizes = ["action_expert"], set(), {"right_brain": 0, "vision_tower": 0, "action_expert": 0}
    hooks = []
    for name, module in (("vision_tower", model.right.visual), ("right_brain", model.right.language_model)):
        hooks.append(module.register_forward_pre_hook(lambda m, a, name=name: region.__setitem__(0, name)))
        hooks.append(module.register_forward_hook(lambda m, a, o: region.__setitem__(0, "action_expert")))

    def pack(t):
        if id(t) in params or (t._base is not None and id(t._base) in params):
            return t                                   # weights are not activations
        storage = t.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in saved:
            saved.add(key)
            sizes[region[0]] += storage.nbytes()
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.loss(inputs, state, actions)
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="twinbrain-bench memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="qwen3-vl-4b", choices=["qwen3-vl-4b", "tiny"])
    p.add_argument("--gpus", type=int, default=8, help="N for the DDP and ZeRO-2 layouts")
    p.add_argument("--batch", type=int, default=8, help="samples per GPU")
    p.add_argument("--cameras", type=int, default=1)
    p.add_argument("--image", type=int, default=224)
    p.add_argument("--left-text-tokens", type=int, default=26, help="Left prompt without image tokens")
    p.add_argument("--right-text-tokens", type=int, default=56, help="Right prompt without image tokens")
    # the trainer's defaults; one 80 GB GPU at batch 8 needs --optimizer-state bf16 (--gradient-checkpointing helps)
    p.add_argument("--optimizer-state", default="fp32", choices=["fp32", "bf16"], help="AdamW moments")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--ddp-bucket-copy", action="store_true", help="DDP without gradient_as_bucket_view")
    p.add_argument("--gpu-memory-gb", type=float, default=80.0)
    p.add_argument("--margin-gb", type=float, default=4.0, help="CUDA context + allocator fragmentation")
    args = p.parse_args(argv)
    model = build_meta_model(args.preset)
    params = parameter_counts(model)
    image = args.cameras * image_tokens("qwen3_vl", args.image, args.image)
    left_tokens, right_tokens = args.left_text_tokens + image, args.right_text_tokens + image
    patches = image * 4   # each image token merges 2 x 2 patches
    acts = activation_bytes(model, args.batch, left_tokens, right_tokens, patches, args.gradient_checkpointing)
    activations = sum(acts.values())
    moment_bytes = 4 if args.optimizer_state == "fp32" else 2
    layouts = {}
    for name, layout, gpus in (("1_gpu", "single", 1), (f"ddp_x{args.gpus}", "ddp", args.gpus),
                               (f"zero2_x{args.gpus}", "zero2", args.gpus)):
        states = state_bytes(params, layout, gpus, moment_bytes, args.ddp_bucket_copy)
        total = sum(states.values()) + activations
        layouts[name] = {**{f"{k}_gb": round(v / GB, 2) for k, v in states.items()},
                         "activations_gb": round(activations / GB, 2), "total_gb": round(total / GB, 2),
                         "fits": total + args.margin_gb * GB <= args.gpu_memory_gb * GB}
    emit({"bench": "memory", "preset": args.preset, "method": "meta-device parameter count + analytic estimate",
          "params": params, "batch_per_gpu": args.batch, "image_tokens": image, "left_tokens": left_tokens,
          "right_tokens": right_tokens, "optimizer_state": args.optimizer_state,
          "gradient_checkpointing": args.gradient_checkpointing,
          "activations_gb": {k: round(v / GB, 2) for k, v in acts.items()},
          "gpu_memory_gb": args.gpu_memory_gb, "margin_gb": args.margin_gb, "layouts": layouts,
          "checkpoint_gb": round((2 * params["right"] + 4 * params["head"]) / GB, 2)})


if __name__ == "__main__":
    main()
