"""Per-dimension q01/q99 normalisation of state and action to [-1, 1] (clipped), saved with checkpoints."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class RangeNormalizer:
    low: np.ndarray    # q01 per dimension
    high: np.ndarray   # q99 per dimension

    @classmethod
    def identity(cls, dim: int) -> "RangeNormalizer":
        return cls(-np.ones(dim, np.float32), np.ones(dim, np.float32))

    @classmethod
    def from_data(cls, values: np.ndarray) -> "RangeNormalizer":
        values = np.asarray(values, np.float64).reshape(-1, np.shape(values)[-1])
        return cls(np.quantile(values, 0.01, axis=0).astype(np.float32),
                   np.quantile(values, 0.99, axis=0).astype(np.float32))

    def widened(self, min_span: float) -> "RangeNormalizer":
        """Spans narrower than ``min_span`` widened to it around their middle. A dimension that barely moves
        in the demonstrations (a gripper that stays closed: q01..q99 = 3..4 mm) would otherwise map sensor
        noise onto the whole [-1, 1] input range, and the policy learns to read meaning into it."""
        mid, half = (self.low + self.high) / 2, np.maximum(self.high - self.low, min_span) / 2
        return RangeNormalizer((mid - half).astype(np.float32), (mid + half).astype(np.float32))

    def _span(self):
        span = self.high - self.low
        # A constant dimension (q01 == q99) maps to 0 instead of dividing by zero.
        return np.where(span > 1e-8, span, 1.0), span > 1e-8

    def normalize(self, x: np.ndarray) -> np.ndarray:
        span, varying = self._span()
        y = 2.0 * (np.asarray(x, np.float32) - self.low) / span - 1.0
        return np.clip(np.where(varying, y, 0.0), -1.0, 1.0).astype(np.float32)

    def unnormalize(self, y: np.ndarray) -> np.ndarray:
        span, varying = self._span()
        x = (np.clip(np.asarray(y, np.float32), -1.0, 1.0) + 1.0) / 2.0 * span + self.low
        return np.where(varying, x, self.low).astype(np.float32)

    def to_dict(self) -> dict:
        return {"q01": self.low.tolist(), "q99": self.high.tolist()}

    @classmethod
    def from_dict(cls, data: dict, dim: int, what: str) -> "RangeNormalizer":
        low, high = np.asarray(data["q01"], np.float32), np.asarray(data["q99"], np.float32)
        if low.shape != (dim,) or high.shape != (dim,):
            raise ValueError(f"{what}: q01/q99 must have {dim} values, got {low.shape} and {high.shape}")
        if np.any(high < low) or not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(f"{what}: q01/q99 must be finite with q01 <= q99")
        return cls(low, high)


@dataclass
class Normalization:
    state: RangeNormalizer
    action: RangeNormalizer

    @classmethod
    def identity(cls, state_dim: int, action_dim: int) -> "Normalization":
        return cls(RangeNormalizer.identity(state_dim), RangeNormalizer.identity(action_dim))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"state": self.state.to_dict(), "action": self.action.to_dict()}, indent=2))

    @classmethod
    def untrained_safe(cls, lower, upper, max_velocity, step_period: float) -> "Normalization":
        """For a model with random weights: its [-1, 1] outputs map to a small band around the middle of
        each joint's range, narrow enough that even a jump from -1 to 1 between two chunk steps stays
        under the velocity limit. Demonstrates the plumbing without ever asking for an unsafe chunk."""
        mid = (np.asarray(lower, np.float32) + np.asarray(upper, np.float32)) / 2
        half = 0.45 * np.asarray(max_velocity, np.float32) * step_period
        half = np.minimum(half, (np.asarray(upper, np.float32) - np.asarray(lower, np.float32)) / 4)
        band = RangeNormalizer(mid - half, mid + half)
        return cls(band, band)

    @classmethod
    def load(cls, path: str | Path, state_dim: int, action_dim: int) -> "Normalization":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"normalisation stats missing: {path}")
        try:
            data = json.loads(path.read_text())
            return cls(RangeNormalizer.from_dict(data["state"], state_dim, f"{path} state"),
                       RangeNormalizer.from_dict(data["action"], action_dim, f"{path} action"))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"normalisation stats {path} are malformed: {exc!r}") from None


def _shift_by_state(actions: np.ndarray, state: np.ndarray, mask, sign: float) -> np.ndarray:
    mask = np.asarray(mask, bool)
    actions = np.asarray(actions, np.float32)
    if not mask.any():
        return actions
    offset = np.where(mask, np.asarray(state, np.float32)[..., : mask.size], 0.0)
    return (actions + sign * offset[..., None, :]).astype(np.float32)


def delta_actions(actions: np.ndarray, state: np.ndarray, mask) -> np.ndarray:
    """Absolute chunk (..., H, A) + state (..., S) -> the model's action space (openpi's DeltaActions):
    dims where ``mask`` is true become relative to the observed state, the rest stay absolute."""
    return _shift_by_state(actions, state, mask, -1.0)


def absolute_actions(actions: np.ndarray, state: np.ndarray, mask) -> np.ndarray:
    """The inverse of ``delta_actions``: the chunk the robot is commanded."""
    return _shift_by_state(actions, state, mask, 1.0)
