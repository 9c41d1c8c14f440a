"""`python -m twinbrain_ros.train.export CHECKPOINT OUT`: a checkpoint to deploy or ship — config.json,
model.safetensors and normalization.json, without the optimizer state. A Left brain that is the tiny
random base (a checkpoint from before the trainer named it ``tiny:<kind>:<seed>``, which pointed at its
run's tiny-base directory) is named by its spec and the weights' hash instead, after checking that the
spec rebuilds those weights bit for bit; any other base stays referenced by its path."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ..model.backbone import TINY_PREFIX, load_base, tiny_base_spec, weights_sha256
from ..model.checkpoint import CONFIG_FILE, NORM_FILE, WEIGHTS_FILE, read_checkpoint


def portable_base(path: str, kind: str) -> tuple[str, str]:
    """(base_model_path, base_weights_sha256) for the checkpoint's Left brain at ``path``."""
    if path.startswith(TINY_PREFIX):
        return path, load_base(path).sha256
    found = weights_sha256(load_base(path).model)
    spec = tiny_base_spec(kind)
    return (spec, found) if load_base(spec).sha256 == found else (path, found)


def export(checkpoint: str | Path, out: str | Path, provenance: dict | None = None) -> dict:
    checkpoint, out = Path(checkpoint), Path(out)
    config, _, _ = read_checkpoint(checkpoint)   # every file checked before anything is written
    config.base_model_path, config.base_weights_sha256 = portable_base(config.base_model_path, config.backbone)
    out.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS_FILE, NORM_FILE):
        shutil.copyfile(checkpoint / name, out / name)
    config.save(out / CONFIG_FILE)
    if provenance is not None:
        (out / "provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")
    return {"out": str(out), "base_model_path": config.base_model_path,
            "portable": config.base_model_path.startswith(TINY_PREFIX)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m twinbrain_ros.train.export", description=__doc__)
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--provenance", default="", help="a JSON file (how it was trained and measured) stored with it")
    args = p.parse_args(argv)
    provenance = json.loads(Path(args.provenance).read_text()) if args.provenance else None
    print(json.dumps(export(args.checkpoint, args.out, provenance)))


if __name__ == "__main__":
    main()
