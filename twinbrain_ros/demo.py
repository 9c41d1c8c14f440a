"""`make demo`: the embedded default. Builds a tiny TwinBrainVLA (or loads --checkpoint), runs it on a
rendered scene + instruction + state, prints the action chunk and the latency."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np


def render_test_scene(size: int = 224) -> np.ndarray:
    """A table with three coloured cubes, drawn with OpenCV (RGB uint8)."""
    img = np.full((size, size, 3), (200, 220, 235), np.uint8)
    cv2.rectangle(img, (0, size // 2), (size, size), (150, 110, 80), -1)
    for (x, color) in ((0.25, (220, 40, 40)), (0.5, (40, 80, 220)), (0.75, (40, 180, 60))):
        c = (int(x * size), int(0.7 * size))
        cv2.rectangle(img, (c[0] - 12, c[1] - 12), (c[0] + 12, c[1] + 12), color, -1)
    return img


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="twinbrain-demo", description=__doc__)
    p.add_argument("--out", default="out/demo")
    p.add_argument("--checkpoint", default=None, help="checkpoint directory (default: tiny random weights)")
    p.add_argument("--instruction", default="pick up the red cube")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)

    from .model import TwinBrainPolicy, load_base, make_tiny_base, tiny_config

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.checkpoint:
        policy = TwinBrainPolicy.from_checkpoint(args.checkpoint, device=args.device)
    else:
        base_dir = make_tiny_base(out / "tiny-base-qwen3_vl", "qwen3_vl")
        policy = TwinBrainPolicy.from_base(load_base(base_dir), tiny_config("qwen3_vl", str(base_dir)),
                                           device=args.device)
    image = render_test_scene()
    cv2.imwrite(str(out / "scene.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    state = np.zeros(policy.config.state_dim, np.float32)
    latencies = []
    for i in range(10):
        start = time.perf_counter()
        chunk = policy.predict([image] * len(policy.config.camera_names), state, args.instruction, seed=i)
        latencies.append(time.perf_counter() - start)
    np.set_printoptions(precision=3, suppress=True)
    print(f"instruction: {args.instruction!r}  state: {state.tolist()}")
    print(f"action chunk (H={chunk.shape[0]}, action_dim={chunk.shape[1]}), robot units:\n{chunk}")
    ms = np.array(latencies[1:]) * 1e3
    summary = {"device": policy.device, "predict_p50_ms": round(float(np.median(ms)), 2),
               "predict_max_ms": round(float(ms.max()), 2), "chunk_shape": list(chunk.shape)}
    print(json.dumps(summary))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
