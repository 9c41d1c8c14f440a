"""TwinBrainVLA: frozen Left VLM + trainable Right VLM joined by AsyMoT, and a flow-matching DiT.

Read top to bottom:
  1. ``__init__``      Left = the base VLM (frozen), Right = a deep copy of its backbone (no LM head)
                       with the state token added and the joint attention switched on.
  2. ``left_forward``  the unmodified transformers forward, run once, keeping its post-RoPE K/V cache.
  3. ``right_forward`` transformers' forward again, with the state embedding spliced in and every
                       decoder layer attending over [stop_grad(Left K/V); Right K/V].
  4. ``loss`` / ``sample`` the action expert on Right's last-layer hidden states (``loss`` with the
                       optional goal target: Right's last prompt token -> the episode's final state).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .action_expert import FlowMatchingActionExpert
from .asymot import AsymotContext, build_joint_mask, use_asymot_attention
from .configuration_twinbrain import TwinBrainConfig


class StateEncoder(nn.Module):
    """2-layer MLP: normalised proprioceptive state -> one VLM token embedding."""

    def __init__(self, state_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(state_dim, hidden), nn.SiLU(), nn.Linear(hidden, out_dim))

    def forward(self, state):
        return self.net(state)


class TwinBrainVLA(nn.Module):
    def __init__(self, config: TwinBrainConfig, left_model: nn.Module, state_token_id: int):
        super().__init__()
        self.config = config
        self.state_token_id = state_token_id
        # Left: the base VLM as loaded, frozen forever (kept with its LM head so it can still answer).
        self.left = left_model
        self.left.requires_grad_(False)
        self.left.eval()
        # Right: same architecture and weights, its own vision tower; trainable.
        self.right = copy.deepcopy(left_model.model)
        self.right.requires_grad_(True)
        self._add_state_token_embedding(state_token_id)
        use_asymot_attention(self.right.language_model)
        hidden = self.right.config.text_config.hidden_size
        self.state_encoder = StateEncoder(config.state_dim, config.expert.state_hidden, hidden)
        self.action_expert = FlowMatchingActionExpert(config.expert, config.action_dim, config.chunk_length,
                                                      cond_dim=hidden)
        self.goal_head = (nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, config.state_dim))
                          if config.goal_loss_weight > 0 else None)
        self.last_goal_loss: torch.Tensor | None = None   # the goal term of the latest loss, for logging
        self._pending_state: torch.Tensor | None = None
        self.right.get_input_embeddings().register_forward_hook(self._splice_state_embedding)

    def _add_state_token_embedding(self, state_token_id: int) -> None:
        """Grow Right's embedding table to hold the new token, initialised to the mean embedding."""
        old = self.right.get_input_embeddings()
        if state_token_id < old.num_embeddings:
            return
        new = nn.Embedding(state_token_id + 1, old.embedding_dim, dtype=old.weight.dtype, device=old.weight.device)
        with torch.no_grad():
            new.weight[: old.num_embeddings] = old.weight
            new.weight[old.num_embeddings:] = old.weight.mean(0, keepdim=True)
        self.right.set_input_embeddings(new)
        self.right.config.text_config.vocab_size = state_token_id + 1

    def _splice_state_embedding(self, module, args, output):
        """Forward hook on Right's token embedding: replace each state placeholder by StateEncoder(state)."""
        if self._pending_state is None:
            return output
        is_state = args[0] == self.state_token_id
        if not torch.equal(is_state.sum(1), torch.ones_like(is_state.sum(1))):
            raise ValueError("every Right prompt must contain exactly one state token")
        output = output.clone()
        output[is_state] = self._pending_state.to(output.dtype)
        return output

    def train(self, mode: bool = True):
        super().train(mode)
        self.left.eval()   # the Left brain never leaves eval mode (no dropout, frozen statistics)
        return self

    # ------------------------------------------------------------------------------------------
    def left_forward(self, left_inputs: dict):
        """The base VLM's own forward. Returns last hidden states and per-layer post-RoPE (K, V)."""
        with torch.no_grad():
            out = self.left.model(**left_inputs, use_cache=True)
        cache = out.past_key_values
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        return out.last_hidden_state, kv

    def right_forward(self, right_inputs: dict, state: torch.Tensor, left_kv=None, left_mask=None):
        """Right brain over its prompt, attending to the Left K/V (``left_kv=None``: single-brain)."""
        mask = build_joint_mask(left_mask if left_kv is not None else None, right_inputs["attention_mask"])
        self._pending_state = self.state_encoder(state.to(self.state_encoder.net[0].weight.dtype))
        try:
            out = self.right(**right_inputs, use_cache=False, asymot=AsymotContext(left_kv, mask))
        finally:
            self._pending_state = None
        return out.last_hidden_state

    def features(self, inputs: dict, state: torch.Tensor):
        """Right's last-layer hidden states (B, T_R, D) and its padding mask: the expert's condition."""
        _, left_kv = self.left_forward(inputs["left"])
        hidden = self.right_forward(inputs["right"], state, left_kv, inputs["left"]["attention_mask"])
        return hidden, inputs["right"]["attention_mask"]

    def forward(self, inputs: dict, state: torch.Tensor, actions: torch.Tensor, action_mask=None,
                generator: torch.Generator | None = None, flow_noise=None, mask_total=None,
                goal: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss (a forward, so DDP/accelerate wrappers see it)."""
        return self.loss(inputs, state, actions, action_mask, generator, flow_noise, mask_total, goal)

    def loss(self, inputs: dict, state: torch.Tensor, actions: torch.Tensor, action_mask=None,
             generator: torch.Generator | None = None, flow_noise=None, mask_total=None,
             goal: torch.Tensor | None = None) -> torch.Tensor:
        """See ``FlowMatchingActionExpert.loss`` for ``flow_noise`` / ``mask_total``. ``goal`` (B, state_dim),
        normalised: adds ``goal_loss_weight`` x the goal head's squared error (needs the head)."""
        hidden, mask = self.features(inputs, state)
        condition = self.action_expert.encode_condition(hidden, mask)
        loss = self.action_expert.loss(condition, actions, action_mask, self.config.noise_draws_per_sample,
                                       generator, flow_noise, mask_total)
        self.last_goal_loss = None
        if goal is not None:
            goal_loss = self.goal_error(hidden, mask, goal).mean()
            self.last_goal_loss = goal_loss.detach()
            loss = loss + self.config.goal_loss_weight * goal_loss
        return loss

    def goal_error(self, hidden: torch.Tensor, mask: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Per sample, the goal head's mean squared error on Right's last real (unpadded) prompt token."""
        if self.goal_head is None:
            raise ValueError("this model has no goal head (goal_loss_weight is 0)")
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), mask.long().sum(1) - 1]
        predicted = self.goal_head(last.to(self.goal_head[0].weight.dtype))
        return ((predicted - goal.to(predicted.dtype)) ** 2).mean(-1)

    @torch.no_grad()
    def sample(self, inputs: dict, state: torch.Tensor, steps: int | None = None,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
               guide: tuple | None = None) -> torch.Tensor:
        hidden, mask = self.features(inputs, state)
        condition = self.action_expert.encode_condition(hidden, mask)
        return self.action_expert.sample(condition, hidden.shape[0], steps or self.config.num_inference_steps,
                                         generator, noise, guide)

    def trainable_state_dict(self) -> dict:
        """What a checkpoint stores: Right brain, state encoder, action expert (never the Left brain)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("left.")}
