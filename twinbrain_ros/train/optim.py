"""AdamW for a model stored in bf16: an fp32 master copy per low-precision parameter (the update of a bf16
weight at lr 1e-5 is far below bf16's resolution and would be rounded away), moments in ``state_dtype``.

Memory per trained bf16 parameter: 2 (weight) + 2 (grad) + 4 (master) + 2·size(state_dtype) (m, v) bytes:
16 with fp32 moments, 12 with bf16 moments (what lets Qwen3-VL-4B fine-tune on one 80 GB GPU, see
`twinbrain-bench memory`). fp32 parameters (action expert, state encoder) are updated in place with no copy.
DeepSpeed keeps its own fp32 master partitions; under it the trainer uses torch's AdamW instead.
"""

from __future__ import annotations

import itertools
import math

import torch


class MasterWeightAdamW(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 state_dtype: torch.dtype = torch.float32):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        self.state_dtype = state_dtype

    def _init_state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        state["step"] = torch.tensor(0.0)
        if p.dtype != torch.float32:
            state["master"] = p.detach().float().clone()
        state["exp_avg"] = torch.zeros_like(p, dtype=self.state_dtype)
        state["exp_avg_sq"] = torch.zeros_like(p, dtype=self.state_dtype)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p] or self._init_state(p)
                weight = state.get("master", p)
                grad = p.grad.float()
                state["step"] += 1
                step = float(state["step"])
                # fp32 moments: .float() is the stored tensor itself and the updates below are in place;
                # bf16 moments are updated in fp32 and rounded back once.
                exp_avg, exp_avg_sq = state["exp_avg"].float(), state["exp_avg_sq"].float()
                weight.mul_(1 - lr * decay)
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2 ** step)).add_(eps)
                weight.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1 ** step))
                if exp_avg is not state["exp_avg"]:
                    state["exp_avg"].copy_(exp_avg)
                    state["exp_avg_sq"].copy_(exp_avg_sq)
                if weight is not p:
                    p.copy_(weight)
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        # torch casts every floating state tensor to its parameter's dtype on load, which would round the
        # fp32 master copies (and fp32 moments of bf16 weights) to bf16: put the saved tensors back as saved,
        # as copies (a live state_dict shares its tensors, the step counter included, with its optimizer).
        saved = state_dict["state"]
        super().load_state_dict(state_dict)
        ids = itertools.chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = itertools.chain.from_iterable(g["params"] for g in self.param_groups)
        for index, p in zip(ids, params):
            for key, value in saved.get(index, {}).items():
                if isinstance(value, torch.Tensor):
                    self.state[p][key] = value.clone() if key == "step" else value.to(p.device).clone()
