"""The one object the runtime talks to: ``TwinBrainPolicy.predict(images, state, instruction)``.

It owns the model, the prompt processor and the normalisation, and works in robot units:
images are HxWx3 uint8 RGB (any size; resized to ``config.image_size``), state and the returned
(H, action_dim) chunk are in the robot's own units.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .backbone import BaseVLM, load_base, make_tiny_base, weights_sha256
from .checkpoint import WEIGHTS_FILE, load_weights, read_checkpoint, save_checkpoint
from .configuration_twinbrain import TwinBrainConfig, tiny_config
from .modeling_twinbrain import TwinBrainVLA
from .normalization import Normalization, absolute_actions, delta_actions
from .prompts import PromptProcessor, make_right_tokenizer, to_device


@dataclass
class Observation:
    images: list | dict          # one HxWx3 uint8 RGB image per camera (list in camera order, or by name)
    state: np.ndarray            # (state_dim,) robot units
    instruction: str


def pick_device(device: str | None) -> str:
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available (use 'cpu' or 'auto')")
    return device


class TwinBrainPolicy:
    def __init__(self, model: TwinBrainVLA, processor: PromptProcessor, normalization: Normalization,
                 device: str = "cpu", dtype: torch.dtype = torch.float32):
        self.model, self.processor, self.normalization = model, processor, normalization
        self.device, self.dtype = device, dtype
        self.config: TwinBrainConfig = model.config
        self.model.to(device).eval()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_base(cls, base: BaseVLM, config: TwinBrainConfig, normalization: Normalization | None = None,
                  device: str | None = None, seed: int = 0) -> "TwinBrainPolicy":
        """An untrained policy around a loaded base VLM (Right = copy of Left, random action expert)."""
        if base.kind != config.backbone:
            raise ValueError(f"config.backbone is {config.backbone!r} but the base VLM is {base.kind!r}")
        right_tokenizer = make_right_tokenizer(base.tokenizer)
        processor = PromptProcessor(config, base.tokenizer, right_tokenizer, base.image_processor)
        torch.manual_seed(seed)
        dtype = next(base.model.parameters()).dtype
        model = TwinBrainVLA(config, base.model, processor.state_token_id)
        model.state_encoder.float()
        model.action_expert.float()   # the expert runs in fp32 (small, and precision matters for actions)
        normalization = normalization or Normalization.identity(config.state_dim, config.action_dim)
        return cls(model, processor, normalization, pick_device(device), dtype)

    @classmethod
    def from_checkpoint(cls, directory: str | Path, device: str | None = None, dtype: torch.dtype | None = None,
                        base_model_path: str | None = None) -> "TwinBrainPolicy":
        """Load a fine-tuned checkpoint; the Left brain comes from ``config.base_model_path`` (or the override)."""
        config, state, normalization = read_checkpoint(directory)
        device = pick_device(device)
        dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        base_path = base_model_path or config.base_model_path
        if not base_path:
            raise ValueError(f"{Path(directory) / 'config.json'}: base_model_path is empty; pass base_model_path=")
        base = load_base(base_path, dtype=dtype, device=device)
        expected = config.base_weights_sha256
        if expected and base_path == config.base_model_path:
            found = base.sha256 or weights_sha256(base.model)
            if found != expected:
                raise ValueError(f"{Path(directory) / 'config.json'}: the Left brain {base_path} has weights sha256 "
                                 f"{found[:16]}…, the checkpoint was trained on {expected[:16]}… (another base "
                                 "model, or a torch/transformers that builds the tiny base differently)")
        config.base_model_path = str(base_path)
        policy = cls.from_base(base, config, normalization, device)
        load_weights(policy.model, state, Path(directory) / WEIGHTS_FILE)
        return policy

    @classmethod
    def from_tiny_preset(cls, base_dir: str | Path, device: str | None = None, backbone: str = "qwen3_vl",
                         seed: int = 0, **config_overrides) -> "TwinBrainPolicy":
        """Tiny random weights (demo/tests/sim without a checkpoint); the tiny base VLM is written to
        ``base_dir`` once and loaded from there like any real base model."""
        base_dir = make_tiny_base(base_dir, backbone)
        config = tiny_config(backbone, str(base_dir), **config_overrides)
        return cls.from_base(load_base(base_dir), config, device=device, seed=seed)

    def save(self, directory: str | Path) -> Path:
        return save_checkpoint(directory, self.model, self.normalization)

    # -- inference ----------------------------------------------------------------------------
    def prepare(self, observations: list[Observation]) -> tuple[dict, torch.Tensor]:
        """Validate and encode observations: model inputs on device and normalised states."""
        if not observations:
            raise ValueError("no observations given")
        images = [self.processor.check_images(o.images) for o in observations]
        instructions = [self.processor.check_instruction(o.instruction) for o in observations]
        states = np.stack([self.normalization.state.normalize(self.processor.check_state(o.state))
                           for o in observations])
        inputs = to_device(self.processor.encode(images, instructions), self.device, self.dtype)
        return inputs, torch.from_numpy(states).to(self.device)

    @torch.no_grad()
    def predict_batch(self, observations: list[Observation], seed: int | None = None, steps: int | None = None,
                      noise: np.ndarray | None = None, guides: list | None = None) -> np.ndarray:
        """Observations -> (B, H, action_dim). ``seed`` or explicit initial ``noise`` make it repeatable.
        ``guides``: per observation None or a real-time-chunking guide (``target`` (H, action_dim) in robot
        units, ``weights`` (H,), ``max_guidance``, ``through_network``; runtime/rtc.py) the chunk is steered
        to agree with."""
        inputs, state = self.prepare(observations)
        shape = (len(observations), self.config.chunk_length, self.config.action_dim)
        if noise is None:
            generator = None if seed is None else torch.Generator().manual_seed(seed)
            noise = torch.randn(shape, generator=generator)
        else:
            noise = torch.as_tensor(np.asarray(noise, np.float32).reshape(shape))
        guide = self._guidance(observations, guides) if guides else None
        actions = self.model.sample(inputs, state, steps=steps, noise=noise, guide=guide)
        actions = self.normalization.action.unnormalize(actions.float().cpu().numpy())
        return absolute_actions(actions, np.stack([np.asarray(o.state, np.float32) for o in observations]),
                                self.config.delta_action_mask)

    def _guidance(self, observations: list[Observation], guides: list) -> tuple | None:
        """Guides in robot units -> (target, weights, max_guidance, through_network) in the model's
        normalised action space, each target taken relative to its own observation's state (delta actions);
        None when no observation has one. An observation without a guide gets weight 0 everywhere: it is
        sampled unguided."""
        if all(g is None for g in guides):
            return None
        h, a = self.config.chunk_length, self.config.action_dim
        targets, weights, beta = np.zeros((len(guides), h, a), np.float32), np.zeros((len(guides), h), np.float32), 0.0
        exact = False
        for i, (obs, g) in enumerate(zip(observations, guides)):
            if g is None:
                continue
            target, w = np.asarray(g.target, np.float64), np.asarray(g.weights, np.float64)
            if target.shape != (h, a) or w.shape != (h,) or not np.all(np.isfinite(target)):
                raise ValueError(f"an RTC guide must be a finite target ({h}, {a}) with weights ({h},), "
                                 f"got {target.shape} and {w.shape}")
            targets[i] = self.model_actions(target, np.asarray(obs.state, np.float64))
            weights[i] = np.clip(w, 0.0, 1.0)
            beta, exact = max(beta, float(g.max_guidance)), exact or bool(g.through_network)
        return (torch.from_numpy(targets).to(self.device), torch.from_numpy(weights).to(self.device), beta, exact)

    def model_actions(self, actions: np.ndarray, state: np.ndarray) -> np.ndarray:
        """A chunk in robot units (H, action_dim) observed at ``state`` -> the normalised training target."""
        return self.normalization.action.normalize(delta_actions(actions, state, self.config.delta_action_mask))

    def predict(self, images, state, instruction: str, seed: int | None = None, steps: int | None = None,
                guide=None) -> np.ndarray:
        """One observation -> (H, action_dim) action chunk in robot units (``guide``: see predict_batch)."""
        return self.predict_batch([Observation(images, state, instruction)], seed=seed, steps=steps,
                                  guides=None if guide is None else [guide])[0]

    # -- the Left brain as the VLM it is ---------------------------------------------------------
    @torch.no_grad()
    def answer_ids(self, images: dict[str, np.ndarray], question: str, max_new_tokens: int = 64) -> list[int]:
        """Token ids the frozen Left brain generates for ``question`` about ``images`` (name -> RGB frame).
        The base VLM's ordinary ``generate``, greedy so the same scene and question give the same answer."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        inputs = to_device(self.processor.encode_question(images, question), self.device, self.dtype)
        tokenizer = self.processor.left_tokenizer
        out = self.model.left.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        return out[0, inputs["input_ids"].shape[1]:].tolist()

    def ask(self, images: dict[str, np.ndarray], question: str, max_new_tokens: int = 64) -> str:
        """The Left brain's answer as text (special tokens removed)."""
        ids = self.answer_ids(images, question, max_new_tokens)
        return self.processor.left_tokenizer.decode(ids, skip_special_tokens=True).strip()
