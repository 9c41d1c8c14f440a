"""Asymmetric mixture-of-transformers (AsyMoT) joint attention for the Right brain.

The Right brain runs through transformers' own Qwen-VL forward (its vision tower, DeepStack, M-RoPE,
norms and MLPs untouched); only the attention *function* of its text decoder is swapped for
``asymot_attention``, registered with transformers' ``AttentionInterface``. At layer l the Right
queries attend over ``[stop_grad(K_L^l, V_L^l) ; K_R^l, V_R^l]``, where K_L/V_L are the Left brain's
post-RoPE keys/values taken from its KV cache (the fast path: Left runs once, fully, first; this equals
the lock-step loop because Left never reads Right).

Visibility (TWINBRAIN.md): Right→Right causal; Right token i sees Left token j iff j ≤ i in the
index-aligned sequences. Alignment uses each token's rank among its sequence's *valid* tokens, so
padding (masked on both sides) never shifts what a real token sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

ATTN_IMPLEMENTATION = "twinbrain_asymot"
EAGER_ATTN_IMPLEMENTATION = "twinbrain_asymot_eager"


@dataclass
class AsymotContext:
    """Per-forward inputs of the joint attention, passed to the Right forward as ``asymot=``."""

    left_kv: list[tuple[torch.Tensor, torch.Tensor]] | None   # per layer (B, kv_heads, T_L, d), post-RoPE
    mask: torch.Tensor                                        # (B, 1, T_R, T_L + T_R) bool, True = attend


def build_joint_mask(left_mask: torch.Tensor | None, right_mask: torch.Tensor) -> torch.Tensor:
    """Boolean mask (B, 1, T_R, T_L + T_R) for Right queries over [Left keys ; Right keys].

    ``left_mask``/``right_mask`` are (B, T) padding masks (1 = real token). ``left_mask=None`` gives
    the single-brain mask (Right keys only).
    """
    right_mask = right_mask.bool()
    t_r = right_mask.shape[1]
    idx = torch.arange(t_r, device=right_mask.device)
    causal = idx[None, :] <= idx[:, None]                                   # (T_R, T_R): key j <= query i
    right_part = causal[None] & right_mask[:, None, :]
    # A padded query would otherwise see nothing (NaN in softmax); let every query see itself.
    right_part = right_part | torch.eye(t_r, dtype=torch.bool, device=right_mask.device)[None]
    if left_mask is None:
        return right_part[:, None]
    left_mask = left_mask.bool().to(right_mask.device)
    rank_l = left_mask.long().cumsum(-1) - 1                                # rank among valid Left tokens
    rank_r = right_mask.long().cumsum(-1) - 1
    left_part = left_mask[:, None, :] & (rank_l[:, None, :] <= rank_r[:, :, None])
    return torch.cat([left_part, right_part], dim=-1)[:, None]


def _joint_keys_values(module, key, value, asymot: AsymotContext | None, groups: int):
    if asymot is None:
        raise RuntimeError("the Right brain's attention needs an AsymotContext (call it through TwinBrainVLA)")
    if asymot.left_kv is not None:
        k_left, v_left = asymot.left_kv[module.layer_idx]
        # stop_grad: the Left brain is frozen and must never receive gradients through Right.
        key = torch.cat([k_left.detach().to(key.dtype), key], dim=2)
        value = torch.cat([v_left.detach().to(value.dtype), value], dim=2)
    if groups > 1:
        # No fused CUDA kernel (flash / memory-efficient) takes enable_gqa together with an explicit mask,
        # so SDPA would fall back to the math kernel; repeat K/V per query head instead (as transformers'
        # own SDPA path does whenever it passes a mask).
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    return key, value


def asymot_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                     asymot: AsymotContext | None = None, **_):
    """Drop-in for transformers' attention functions: returns (B, T, heads, d), None."""
    key, value = _joint_keys_values(module, key, value, asymot, query.shape[1] // key.shape[1])
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=asymot.mask, scale=scaling,
        dropout_p=dropout if module.training else 0.0,
    )
    return out.transpose(1, 2).contiguous(), None


def asymot_eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                           asymot: AsymotContext | None = None, **_):
    """The same joint attention as explicit matmul + softmax (what the reference implementation runs):
    the baseline of `twinbrain-bench inference` and the reference the fused path is tested against."""
    key, value = _joint_keys_values(module, key, value, asymot, query.shape[1] // key.shape[1])
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    weights = weights.masked_fill(~asymot.mask, torch.finfo(weights.dtype).min)
    weights = torch.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTN_IMPLEMENTATION, asymot_attention)
AttentionInterface.register(EAGER_ATTN_IMPLEMENTATION, asymot_eager_attention)


def use_asymot_attention(text_model: torch.nn.Module) -> None:
    """Switch a Qwen-VL text decoder (only it, not the vision tower) to the joint attention."""
    text_model.config._attn_implementation = ATTN_IMPLEMENTATION
