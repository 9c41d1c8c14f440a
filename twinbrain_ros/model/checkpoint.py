"""Checkpoint directory format (no pickle anywhere):

    config.json          TwinBrainConfig (base_model_path points at the Left brain's base VLM)
    model.safetensors    Right brain + state encoder + action expert (the Left brain is not duplicated)
    normalization.json   q01/q99 of state and action
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .configuration_twinbrain import TwinBrainConfig
from .normalization import Normalization

CONFIG_FILE, WEIGHTS_FILE, NORM_FILE = "config.json", "model.safetensors", "normalization.json"


def save_checkpoint(directory: str | Path, model, normalization: Normalization) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save(directory / CONFIG_FILE)
    # safetensors refuses shared storage; the Right brain may tie tensors, so store contiguous copies.
    tensors = {k: v.detach().contiguous().clone() for k, v in model.trainable_state_dict().items()}
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt", "producer": "twinbrain_ros"})
    tmp.replace(directory / WEIGHTS_FILE)   # atomic: a crash never leaves a half-written weights file
    normalization.save(directory / NORM_FILE)
    return directory


def read_checkpoint(directory: str | Path) -> tuple[TwinBrainConfig, dict, Normalization]:
    """Read and check every file; any problem raises one error naming the file and what is wrong."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {directory}")
    config = TwinBrainConfig.load(directory / CONFIG_FILE)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint weights missing: {weights}")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"checkpoint weights {weights} are not a valid safetensors file: {exc}") from None
    norm = Normalization.load(directory / NORM_FILE, config.state_dim, config.action_dim)
    return config, state, norm


def load_weights(model, state: dict, source: Path | str) -> None:
    expected = model.trainable_state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"checkpoint weights {source} do not match the model: "
                         f"{len(missing)} missing (e.g. {missing[:3]}), "
                         f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(f"checkpoint weights {source}: {key} has shape {tuple(tensor.shape)}, "
                             f"model expects {tuple(expected[key].shape)}")
    with torch.no_grad():
        model.load_state_dict(state, strict=False)
