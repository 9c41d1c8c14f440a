"""Flow-matching Diffusion Transformer action expert (GR00T-style DiT, as TWINBRAIN.md specifies).

Convention: noise at t=0, data at t=1; x_t = (1 - t)·ε + t·a, target velocity a - ε.
Blocks alternate cross-attention (to the Right brain's last-layer hidden states, padding masked) and
self-attention; every LayerNorm is modulated (scale, shift) by the timestep embedding (adaLN).
The cross-attention keys/values of the VLM features do not depend on t, so ``encode_condition``
computes them once and every Euler step reuses them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_twinbrain import ActionExpertConfig
from .euler_graph import CapturedEulerLoop


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoid of t·1000 (t in [0, 1]), shape (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def sample_flow_time(batch: int, device, generator=None) -> torch.Tensor:
    """t = (0.999 - u) / 0.999 with u ~ Beta(1.5, 1): more weight on noisy (small) t."""
    beta = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0))
    u = beta.sample((batch,)) if generator is None else _beta_with_generator(batch, generator)
    return ((0.999 - u) / 0.999).to(device)


def _beta_with_generator(batch: int, generator: torch.Generator) -> torch.Tensor:
    # Beta(a, 1) by inversion: u = U^(1/a); deterministic under a torch.Generator.
    return torch.rand(batch, generator=generator, device=generator.device) ** (1.0 / 1.5)


def gaussian_noise(shape, device, generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, 1) of ``shape`` on ``device``. With a generator the draw is made on the generator's own device
    and then moved: torch refuses a CPU generator for a CUDA tensor, and drawing on the CPU also makes the
    noise of a seeded step the same on every device."""
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


class AdaLayerNorm(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(width, 2 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x, temb):
        scale, shift = self.modulation(F.silu(temb))[:, None].chunk(2, dim=-1)
        return self.norm(x) * (1 + scale) + shift


class DiTBlock(nn.Module):
    def __init__(self, cfg: ActionExpertConfig, cross: bool):
        super().__init__()
        w = cfg.width
        self.cross, self.heads = cross, cfg.heads
        self.norm1 = AdaLayerNorm(w)
        self.q = nn.Linear(w, w)
        self.kv = nn.Linear(w, 2 * w)
        self.out = nn.Linear(w, w)
        self.norm2 = AdaLayerNorm(w)
        hidden = int(w * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(w, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, w))

    def _heads(self, x):
        b, t, w = x.shape
        return x.view(b, t, self.heads, w // self.heads).transpose(1, 2)

    def condition_kv(self, cond):
        k, v = self.kv(cond).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def forward(self, x, temb, cond_kv=None, cond_mask=None):
        h = self.norm1(x, temb)
        q = self._heads(self.q(h))
        if self.cross:
            k, v = cond_kv
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask=cond_mask)
        else:
            k, v = self.condition_kv(h)
            attn = F.scaled_dot_product_attention(q, k, v)
        x = x + self.out(attn.transpose(1, 2).flatten(2))
        return x + self.mlp(self.norm2(x, temb))


class FlowMatchingActionExpert(nn.Module):
    def __init__(self, cfg: ActionExpertConfig, action_dim: int, chunk_length: int, cond_dim: int):
        super().__init__()
        w = cfg.width
        self.cfg, self.action_dim, self.chunk_length = cfg, action_dim, chunk_length
        self.time_mlp = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.action_in = nn.Linear(action_dim, w)
        self.action_fuse = nn.Sequential(nn.Linear(2 * w, w), nn.SiLU(), nn.Linear(w, w))
        self.future_tokens = nn.Parameter(torch.randn(cfg.future_tokens, w) * 0.02)
        self.position = nn.Parameter(torch.randn(cfg.future_tokens + chunk_length, w) * 0.02)
        self.cond_proj = nn.Sequential(nn.LayerNorm(cond_dim), nn.Linear(cond_dim, w))
        self.blocks = nn.ModuleList(DiTBlock(cfg, cross=(i % 2 == 0)) for i in range(cfg.layers))
        self.norm_out = AdaLayerNorm(w)
        self.decoder = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, action_dim))
        self._captured_loop: CapturedEulerLoop | None = None

    def use_captured_loop(self, enabled: bool = True, compile_backend: str | None = None) -> None:
        """``sample``'s Euler loop as one captured static-shape graph (a CUDA graph on CUDA; euler_graph.py)."""
        self._captured_loop = CapturedEulerLoop(self, compile_backend) if enabled else None

    def encode_condition(self, features: torch.Tensor, mask: torch.Tensor):
        """VLM features (B, T, D) + padding mask (B, T) -> per-cross-block (K, V) and SDPA mask."""
        cond = self.cond_proj(features.float())
        kvs = [blk.condition_kv(cond) if blk.cross else None for blk in self.blocks]
        return kvs, mask.bool()[:, None, None, :]

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, condition) -> torch.Tensor:
        kvs, cond_mask = condition
        b = x_t.shape[0]
        t_sin = sinusoidal_embedding(t, self.cfg.width)
        temb = self.time_mlp(t_sin)
        act = self.action_in(x_t)
        act = self.action_fuse(torch.cat([act, t_sin[:, None].expand_as(act)], dim=-1))
        x = torch.cat([self.future_tokens[None].expand(b, -1, -1), act], dim=1) + self.position[None]
        for blk, kv in zip(self.blocks, kvs):
            x = blk(x, temb, kv, cond_mask)
        x = self.norm_out(x, temb)[:, -self.chunk_length:]
        return self.decoder(x)

    def flow_noise(self, rows: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(ε, t) for ``rows`` = samples × draws loss rows, on the generator's device (the CPU without one).
        Drawn for a whole batch so that a data-parallel process can take its own rows of the global draw."""
        device = "cpu" if generator is None else generator.device
        noise = gaussian_noise((rows, self.chunk_length, self.action_dim), device, generator)
        return noise, sample_flow_time(rows, device, generator)

    def loss(self, condition, actions: torch.Tensor, action_mask: torch.Tensor | None = None,
             draws: int = 1, generator: torch.Generator | None = None,
             flow_noise: tuple[torch.Tensor, torch.Tensor] | None = None,
             mask_total: torch.Tensor | float | None = None) -> torch.Tensor:
        """Flow-matching MSE with ``draws`` fresh (ε, t) per sample; padded chunk steps masked out.

        ``flow_noise``: explicit (ε, t) for the B·draws rows (sample i's draws are rows i·draws...);
        otherwise drawn here from ``generator``. ``mask_total``: the sum of ``action_mask`` the masked
        mean divides by (default: this batch's); a data-parallel process passes global sum / processes
        so that the gradient average over processes is exactly the one-process loss's gradient."""
        kvs, cond_mask = condition
        b = actions.shape[0]
        rep = lambda x: x.repeat_interleave(draws, dim=0)  # noqa: E731 - VLM features shared by the draws
        condition = ([None if kv is None else (rep(kv[0]), rep(kv[1])) for kv in kvs], rep(cond_mask))
        a = rep(actions.float())
        noise, t = flow_noise if flow_noise is not None else self.flow_noise(b * draws, generator)
        if noise.shape != a.shape or t.shape != (b * draws,):
            raise ValueError(f"flow_noise for {b} samples x {draws} draws must be (ε {tuple(a.shape)}, "
                             f"t ({b * draws},)), got ({tuple(noise.shape)}, {tuple(t.shape)})")
        noise, t = noise.to(a.device, torch.float32), t.to(a.device, torch.float32)
        x_t = (1 - t)[:, None, None] * noise + t[:, None, None] * a
        err = (self.velocity(x_t, t, condition) - (a - noise)) ** 2
        if action_mask is None:
            return err.mean()
        m = rep(action_mask.float())[:, :, None]
        total = m.sum() if mask_total is None else torch.as_tensor(mask_total, dtype=m.dtype, device=m.device) * draws
        return (err * m).sum() / (total * self.action_dim).clamp_min(1.0)

    @torch.no_grad()
    def sample(self, condition, batch: int, steps: int, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None, guide: tuple | None = None) -> torch.Tensor:
        """Euler integration from noise (t=0) to actions (t=1): (B, H, action_dim) normalised actions.
        ``guide`` (target (B, H, A), weights (B, H), max_guidance, through_network): real-time chunking,
        see ``_guided``."""
        device = condition[1].device
        if noise is None:
            noise = gaussian_noise((batch, self.chunk_length, self.action_dim), "cpu", generator)
        x = noise.to(device=device, dtype=torch.float32)
        if guide is not None:
            return self._guided(condition, x, steps, *guide)
        if self._captured_loop is not None:
            return self._captured_loop(condition, x, steps)
        dt = 1.0 / steps
        for k in range(steps):
            t = torch.full((batch,), k * dt, device=device)
            x = x + dt * self.velocity(x, t, condition)
        return x

    def _guided(self, condition, x: torch.Tensor, steps: int, target: torch.Tensor, weights: torch.Tensor,
                max_guidance: float, through_network: bool = False) -> torch.Tensor:
        """Training-free real-time chunking (Black et al. 2025, Algorithm 1, guided inpainting).

        At each Euler step the clean chunk the flow predicts, x̂₁ = x + (1 - t) v, is compared with the
        target and the weighted error e is added to the velocity with weight min(β, (1 - t) / (t r²)),
        r² = (1 - t)² / (t² + (1 - t)²): large early (capped at β), fading as t → 1.
        ``through_network``: e is first pulled back through the network, eᵀ ∂x̂₁/∂x (one backward pass
        per step; the paper's ΠGDM form). Without it ∂x̂₁/∂x is taken as the identity (no backward pass;
        what LeRobot's RTC computes). Where x̂₁ hardly depends on x (a sharp, image-conditioned
        posterior) the exact pull-back is near zero and cannot move the frozen steps, while the identity
        form still pulls them onto the target; compare with `twinbrain-bench chunking --rtc-guidance
        network`."""
        w = weights.to(x.device, torch.float32)[:, :, None]
        target = target.to(x.device, torch.float32)
        dt = 1.0 / steps
        for k in range(steps):
            tau = k * dt
            t = torch.full((x.shape[0],), tau, device=x.device)
            if through_network:
                with torch.enable_grad():
                    x_in = x.detach().requires_grad_(True)
                    v = self.velocity(x_in, t, condition)
                    x1 = x_in + (1 - tau) * v
                    (pull,) = torch.autograd.grad(x1, x_in, grad_outputs=(target - x1.detach()) * w)
                v = v.detach()
            else:
                v = self.velocity(x, t, condition)
                pull = (target - (x + (1 - tau) * v)) * w
            r2 = (1 - tau) ** 2 / (tau ** 2 + (1 - tau) ** 2)
            weight = max_guidance if tau == 0 else min(max_guidance, (1 - tau) / (tau * r2))
            x = x + dt * (v + weight * pull)
        return x
