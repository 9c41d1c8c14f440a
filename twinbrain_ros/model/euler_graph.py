"""The action expert's Euler loop as one static-shape graph: the GPU fast path behind a flag.

With the VLM features' cross-attention K/V computed once, the loop is steps × layers small kernels
whose launch overhead dominates on a GPU. ``CapturedEulerLoop`` records the whole loop once per input
shape into a CUDA graph and replays it (copying the new condition and noise into the recorded input
buffers first). Off CUDA it runs the same static-shape function, eagerly or through ``torch.compile``
(``compile_backend``; the CPU test uses "eager", which checks the loop traces as a single graph).
Enable with ``FlowMatchingActionExpert.use_captured_loop(True)``; results match the eager loop to
float rounding (tested on the CPU; the CUDA graph path by a CUDA-only test).
"""

from __future__ import annotations

import torch


class CapturedEulerLoop:
    def __init__(self, expert, compile_backend: str | None = None):
        self.expert = expert
        self._graphs: dict = {}
        self._compiled = (torch.compile(self.integrate, backend=compile_backend, fullgraph=True, dynamic=False)
                          if compile_backend else self.integrate)

    def integrate(self, kvs, mask, x, steps: int):
        """Euler from t=0 to 1: no host synchronisation and no shape-dependent Python (capturable)."""
        dt = 1.0 / steps
        for k in range(steps):
            t = torch.full((x.shape[0],), k * dt, device=x.device)
            x = x + dt * self.expert.velocity(x, t, (kvs, mask))
        return x

    @torch.no_grad()
    def __call__(self, condition, x: torch.Tensor, steps: int) -> torch.Tensor:
        kvs, mask = condition
        if x.is_cuda:
            return self._replay(kvs, mask, x, steps)
        return self._compiled(kvs, mask, x, steps)

    def _replay(self, kvs, mask, x, steps):
        key = (tuple(x.shape), tuple(mask.shape), steps, x.device)
        if key not in self._graphs:
            self._graphs[key] = self._capture(kvs, mask, x, steps)
        graph, static_kvs, static_mask, static_x, static_out = self._graphs[key]
        for static, kv in zip(static_kvs, kvs):
            if static is not None:
                static[0].copy_(kv[0])
                static[1].copy_(kv[1])
        static_mask.copy_(mask)
        static_x.copy_(x)
        graph.replay()
        return static_out.clone()

    def _capture(self, kvs, mask, x, steps):
        static_kvs = [None if kv is None else (kv[0].clone(), kv[1].clone()) for kv in kvs]
        static_mask, static_x = mask.clone(), x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):   # warm-up outside the capture: lazy cuBLAS / kernel initialisation
            for _ in range(2):
                self.integrate(static_kvs, static_mask, static_x, steps)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.integrate(static_kvs, static_mask, static_x, steps)
        return graph, static_kvs, static_mask, static_x, static_out
