"""TwinBrainVLA configuration: one dataclass, stored as ``config.json`` in every checkpoint."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

LEFT_SYSTEM_PROMPT = "You are a helpful robot brain that can understand images and texts."
STATE_TOKEN = "<|propri|>"


@dataclass
class ActionExpertConfig:
    """The flow-matching DiT. Defaults are the paper's "DiT-B"; tiny presets shrink them."""

    width: int = 768
    heads: int = 12
    layers: int = 16           # alternating cross-attention (even) / self-attention (odd)
    mlp_ratio: float = 4.0
    future_tokens: int = 4     # learned tokens prepended to the action tokens
    state_hidden: int = 1024   # state encoder: state_dim -> state_hidden -> VLM hidden


@dataclass
class TwinBrainConfig:
    base_model_path: str = ""               # the Left brain: a local base VLM checkpoint (referenced, not copied),
                                            # or tiny:<kind>:<seed>, the tiny random base built in code
    base_weights_sha256: str = ""           # the Left brain's weights_sha256 at training (fp32); checked at load
    backbone: str = "qwen3_vl"              # qwen3_vl | qwen2_5_vl
    robot_type: str = "6-DoF arm with parallel gripper"
    camera_names: list[str] = field(default_factory=lambda: ["front"])
    image_size: list[int] = field(default_factory=lambda: [224, 224])   # (height, width) every camera is resized to
    state_dim: int = 7
    action_dim: int = 7
    chunk_length: int = 16                  # H
    num_inference_steps: int = 4            # Euler steps
    noise_draws_per_sample: int = 4         # fresh (eps, t) per sample per training step
    # openpi's delta actions: dimension i is predicted relative to state[i] at the observation when
    # delta_action_mask[i] is true (arm joints), absolute otherwise (a gripper command); [] = all absolute.
    delta_action_mask: list[bool] = field(default_factory=list)
    # An auxiliary training target: from Right's last prompt token (which has attended to the images and
    # the words) predict the state the episode ends in, normalised. Where the goal depends on the words
    # (which cube is named), it makes reading them a training signal of its own. 0 = off (no goal head).
    goal_loss_weight: float = 0.0
    expert: ActionExpertConfig = field(default_factory=ActionExpertConfig)

    def __post_init__(self):
        if isinstance(self.expert, dict):
            self.expert = ActionExpertConfig(**self.expert)
        problems = []
        if self.backbone not in ("qwen3_vl", "qwen2_5_vl"):
            problems.append(f"backbone must be qwen3_vl or qwen2_5_vl, got {self.backbone!r}")
        if not self.camera_names or len(set(self.camera_names)) != len(self.camera_names):
            problems.append(f"camera_names must be a non-empty list of unique names, got {self.camera_names}")
        if len(self.image_size) != 2 or min(self.image_size) < 28:
            problems.append(f"image_size must be [height, width] with both >= 28, got {self.image_size}")
        for name in ("state_dim", "action_dim", "chunk_length", "num_inference_steps", "noise_draws_per_sample"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.delta_action_mask and len(self.delta_action_mask) != int(self.action_dim):
            problems.append(f"delta_action_mask needs one entry per action dimension ({self.action_dim}), "
                            f"got {len(self.delta_action_mask)}")
        elif any(self.delta_action_mask) and int(self.state_dim) < int(self.action_dim):
            problems.append(f"delta actions need state_dim >= action_dim (state[i] is action[i]'s joint), "
                            f"got {self.state_dim} < {self.action_dim}")
        if not float(self.goal_loss_weight) >= 0:
            problems.append(f"goal_loss_weight must be >= 0, got {self.goal_loss_weight}")
        if self.expert.width % self.expert.heads:
            problems.append(f"expert.width {self.expert.width} must be divisible by expert.heads {self.expert.heads}")
        if problems:
            raise ValueError("invalid TwinBrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TwinBrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TwinBrainConfig keys {unknown}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TwinBrainConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"checkpoint config missing: {path}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"checkpoint config {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"checkpoint config {path} must hold a JSON object")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"checkpoint config {path}: {exc}") from None


def tiny_config(backbone: str = "qwen3_vl", base_model_path: str = "", **overrides) -> TwinBrainConfig:
    """The CPU preset used by tests and the demo: small images, a 2-layer DiT."""
    image = [64, 64] if backbone == "qwen3_vl" else [56, 56]
    values = dict(base_model_path=base_model_path, backbone=backbone, image_size=image,
                  expert=ActionExpertConfig(width=64, heads=4, layers=4, future_tokens=2, state_hidden=64))
    values.update(overrides)
    return TwinBrainConfig(**values)
