"""`twinbrain-train`: fine-tune TwinBrainVLA on LeRobot v3.0 datasets (TWINBRAIN.md recipe).

Left brain frozen, action loss only; AdamW (betas 0.9/0.95) with separate learning rates for the
Right brain and for the action expert + state encoder; cosine schedule with warm-up; grad-clip; several
(ε, t) draws per sample; gradient accumulation. One process needs no accelerate config; several GPUs /
nodes: `accelerate launch -m twinbrain_ros.train.trainer ...` (config/accelerate_zero2.yaml is a
DeepSpeed ZeRO-2 example).

Memory plan (--precision bf16, the default on CUDA): the base VLM is loaded in bf16 (no fp32 copy on the
host either) and moved to the device; the frozen Left brain stays bf16 with no fp32 copy, no gradients
and no optimizer state; the Right brain is stored and computes in bf16 while the optimizer keeps its
fp32 master copy (train/optim.py, moments in --optimizer-state dtype; under DeepSpeed its own fp32
partitions); the action expert and state encoder stay fp32. --gradient-checkpointing recomputes the
Right brain's layers in the backward pass. `twinbrain-bench memory` accounts for all of it per GPU.

Reproducible and resumable: the batch indices and the flow-matching noise of step k are drawn for the
*global* batch from generators seeded by (seed, k), and each process takes its own slice, so N processes
of --batch-size b follow the same trajectory as one process of batch N·b (same learning rate every step:
the scheduler steps once per optimizer step, not once per process), and `--resume` continues exactly
where the run stopped once model, optimizer and scheduler states are restored. Checkpoints are the model
format (config.json, model.safetensors, normalization.json) plus training_state.pt (step, scheduler and,
unless DeepSpeed shards it, the optimizer state; tensors and plain values only, loaded with
torch.load(weights_only=True)); under DeepSpeed every rank writes its own optimizer shard through the
engine's checkpoint (deepspeed/), so a resume needs the same number of processes. Only the main process
writes metrics.jsonl and checkpoints.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, broadcast
from tqdm import tqdm

from ..data.lerobot_v3 import LeRobotV3Dataset
from ..model import Observation, TwinBrainPolicy, load_base, tiny_config
from ..model.backbone import tiny_base_spec
from ..model.configuration_twinbrain import TwinBrainConfig
from ..model.normalization import Normalization
from .optim import MasterWeightAdamW
from .samples import ChunkSamples, delta_action_mask, normalization_from_stats

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass
class TrainConfig:
    dataset: str
    out: str
    base_model_path: str = ""     # empty: the tiny random preset (CPU smoke runs, tests)
    tiny_tokenizer: str = "byte"  # the tiny preset's tokenizer: byte | word (backbone.TINY_TOKENIZERS)
    tiny_size: str = "xs"         # the tiny preset's size: xs | s (backbone.TINY_SIZES)
    image_size: int = 0           # square camera size the model sees; 0 = the preset's / 224
    steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    lr_right: float = 1e-5
    lr_head: float = 1e-4
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    chunk_length: int = 16
    noise_draws: int = 4
    val_episodes: int = 1
    val_every: int = 100
    save_every: int = 500
    seed: int = 0
    time_budget_s: float = 0.0    # > 0: stop after about this long, the LR schedule fitted to it (steps = cap)
    delta_actions: bool = False   # predict joints relative to the observed state (openpi's delta actions)
    absolute_actions: str = "gripper"   # comma-separated action names that stay absolute with delta_actions
    # q01..q99 spans below these (rad, m) are widened: noise stays noise. The state's is wider: a joint the
    # demos never move must not steer the plan with a few mrad of settling (`twinbrain-bench sensitivity`)
    min_state_span: float = 0.1
    min_action_span: float = 0.01
    precision: str = "auto"        # bf16 | fp32 | auto (bf16 on CUDA, fp32 on the CPU); see the memory plan above
    optimizer_state: str = "fp32"  # dtype of AdamW's moments for bf16 weights: fp32 | bf16 (saves 4 bytes/param)
    gradient_checkpointing: bool = False   # recompute the Right brain's layers in backward (less activation memory)
    goal_loss_weight: float = 0.0  # > 0: also predict the episode's final state (TwinBrainConfig.goal_loss_weight)
    # Share of every batch drawn from the first `early_frames` observations of the episodes. There the arm has
    # not moved yet, so only the words tell the goal; later frames give it away through the state (what a
    # policy then learns instead of reading the instruction).
    early_frame_share: float = 0.0
    early_frames: int = 5


def _lr_lambda(cfg: TrainConfig):
    def f(step):
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: str | None = None):
        from accelerate import Accelerator

        self.cfg = cfg
        if not 0 <= cfg.early_frame_share < 1 or cfg.early_frames < 1:
            raise ValueError(f"early_frame_share must be in [0, 1) and early_frames >= 1, got "
                             f"{cfg.early_frame_share}, {cfg.early_frames}")
        precision = cfg.precision if cfg.precision != "auto" else ("bf16" if torch.cuda.is_available() else "fp32")
        if precision not in DTYPES or cfg.optimizer_state not in DTYPES:
            raise ValueError(f"precision / optimizer_state must be one of {sorted(DTYPES)}, "
                             f"got {cfg.precision!r} / {cfg.optimizer_state!r}")
        self.dtype = DTYPES[precision]
        # The dtypes are explicit (bf16 brains, fp32 expert), so no autocast; DeepSpeed alone needs accelerate's
        # bf16 setting, which makes its engine run bf16 with fp32 master partitions.
        deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
        # DDP's gradients as views into its all-reduce buckets: no second copy of every gradient.
        self.acc = Accelerator(gradient_accumulation_steps=cfg.grad_accum,
                               mixed_precision="bf16" if deepspeed and precision == "bf16" else "no",
                               kwargs_handlers=[DistributedDataParallelKwargs(gradient_as_bucket_view=True)])
        self._deepspeed = self.acc.distributed_type == DistributedType.DEEPSPEED
        device = str(self.acc.device)
        self.out = Path(cfg.out)
        self.dataset = LeRobotV3Dataset(cfg.dataset)
        feats = self.dataset.info["features"]
        cameras = list(self.dataset.cameras)
        dims = dict(state_dim=feats["observation.state"]["shape"][0], action_dim=feats["action"]["shape"][0],
                    camera_names=cameras, chunk_length=cfg.chunk_length, noise_draws_per_sample=cfg.noise_draws,
                    goal_loss_weight=cfg.goal_loss_weight)
        if cfg.image_size:
            dims["image_size"] = [cfg.image_size, cfg.image_size]
        if cfg.delta_actions:
            dims["delta_action_mask"] = delta_action_mask(self.dataset, cfg.absolute_actions)
        normalization = normalization_from_stats(self.dataset)
        if cfg.base_model_path:
            base = load_base(cfg.base_model_path, dtype=self.dtype, device=device)
            config = TwinBrainConfig(base_model_path=cfg.base_model_path, backbone=base.kind, **dims)
        else:
            # built in code from its seed on every process: the checkpoint names the spec and the weights'
            # hash, not a file, so it deploys on any machine
            spec = tiny_base_spec("qwen3_vl", tokenizer=cfg.tiny_tokenizer, size=cfg.tiny_size)
            base = load_base(spec, dtype=self.dtype, device=device)
            config = tiny_config("qwen3_vl", base.path, base_weights_sha256=base.sha256, **dims)
        n_eps = len(self.dataset.episodes)
        n_val = min(cfg.val_episodes, max(0, n_eps - 1))
        size = tuple(config.image_size)
        self.train_set = ChunkSamples(self.dataset, cfg.chunk_length, cameras, list(range(n_eps - n_val)), size)
        self.val_set = ChunkSamples(self.dataset, cfg.chunk_length, cameras, list(range(n_eps - n_val, n_eps)),
                                    size) if n_val else None
        if any(config.delta_action_mask):   # stats.json has absolute actions; deltas get their own q01/q99
            normalization.action = self.train_set.action_range(config.delta_action_mask)
        normalization = Normalization(normalization.state.widened(cfg.min_state_span),
                                      normalization.action.widened(cfg.min_action_span))
        self.policy = TwinBrainPolicy.from_base(base, config, normalization, device=device, seed=cfg.seed)
        model = self.policy.model
        if cfg.gradient_checkpointing:
            model.right.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        head = list(model.action_expert.parameters()) + list(model.state_encoder.parameters())
        if model.goal_head is not None:
            head += list(model.goal_head.parameters())
        groups = [{"params": list(model.right.parameters()), "lr": cfg.lr_right}, {"params": head, "lr": cfg.lr_head}]
        if self._deepspeed or self.dtype == torch.float32:
            optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
        else:
            optimizer = MasterWeightAdamW(groups, betas=(0.9, 0.95), weight_decay=cfg.weight_decay,
                                          state_dtype=DTYPES[cfg.optimizer_state])
        # Not handed to accelerate.prepare: its wrapper steps the schedule once per process per optimizer
        # step (N processes would run the warm-up N times faster and reach lr 0 at steps / N).
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        # the frames early_frame_share draws from, found once (the index does not change while training)
        self.early = self.train_set.early_indices(cfg.early_frames) if cfg.early_frame_share > 0 else None
        self.step = 0
        # name -> samples whose evaluation_loss is logged with val_loss (e.g. the language probes of
        # bench/language_loop.py: the same frames with the instruction swapped)
        self.probes: dict[str, object] = {}
        if resume:
            self._load_state(Path(resume))

    # -- batches ----------------------------------------------------------------------------------
    def _batch(self, samples: ChunkSamples, indices) -> tuple:
        items = [samples[int(i)] for i in indices]
        inputs, state = self.policy.prepare([Observation(s.images, s.state, s.instruction) for s in items])
        actions = np.stack([self.policy.model_actions(s.actions, s.state) for s in items])
        actions = torch.from_numpy(actions).to(self.acc.device)
        mask = torch.from_numpy(np.stack([s.action_mask for s in items])).to(self.acc.device)
        return inputs, state, actions, mask, self._goals(items)

    def _goals(self, items) -> torch.Tensor | None:
        """The goal targets, normalised as states are; None without a goal head."""
        if self.policy.model.goal_head is None:
            return None
        goals = np.stack([self.policy.normalization.state.normalize(s.goal) for s in items])
        return torch.from_numpy(goals).to(self.acc.device)

    def _generator(self, step: int, salt: int = 0) -> torch.Generator:
        # The same on every process: each one draws the global batch's noise and keeps its own rows.
        return torch.Generator().manual_seed(hash((self.cfg.seed, step, salt)) % (2 ** 63))

    def _global_batch_loss(self, samples: ChunkSamples, batch: np.ndarray, generator: torch.Generator,
                           with_goal: bool = True):
        """Loss of one *global* batch (sample indices and generator the same on every process), each
        process computing its contiguous share: (this process's loss term, the global batch's loss).
        The terms average over processes to the global loss, so DDP's gradient average is the
        one-process gradient: the masked mean divides by the real steps of the whole batch.
        ``with_goal=False``: the action loss alone (evaluation stays comparable with or without a goal head)."""
        acc, draws = self.acc, self.policy.config.noise_draws_per_sample
        mine = np.array_split(np.arange(len(batch)), acc.num_processes)[acc.process_index]
        noise, t = self.policy.model.action_expert.flow_noise(len(batch) * draws, generator)
        rows = slice(int(mine[0]) * draws, (int(mine[-1]) + 1) * draws)
        inputs, state, actions, mask, goal = self._batch(samples, batch[mine])
        mask_total = acc.reduce(mask.sum(), "sum") / acc.num_processes
        loss = self.model(inputs, state, actions, mask, flow_noise=(noise[rows], t[rows]), mask_total=mask_total,
                          goal=goal if with_goal else None)
        return loss, float(acc.reduce(loss.detach(), "mean"))

    def train_step(self) -> dict:
        cfg, acc = self.cfg, self.acc
        logs = {"loss": 0.0}
        self.model.train()
        for micro in range(cfg.grad_accum):
            rng = np.random.default_rng([cfg.seed, self.step, micro])
            batch = rng.integers(0, len(self.train_set), cfg.batch_size * acc.num_processes)
            if self.early is not None:
                pick = rng.random(len(batch)) < cfg.early_frame_share
                batch[pick] = self.early[rng.integers(0, len(self.early), int(pick.sum()))]
            with acc.accumulate(self.model):
                loss, global_loss = self._global_batch_loss(self.train_set, batch, self._generator(self.step, micro))
                acc.backward(loss)
                if acc.sync_gradients:   # DeepSpeed clips by its own config and may report no norm
                    norm = acc.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], cfg.grad_clip)
                    logs["grad_norm"] = None if norm is None else float(norm)
                self.optimizer.step()
                if acc.sync_gradients:   # once per optimizer step, however many processes and micro-batches
                    self.scheduler.step()
                self.optimizer.zero_grad()
            logs["loss"] += global_loss / cfg.grad_accum
            goal_loss = self.acc.unwrap_model(self.model).last_goal_loss
            if goal_loss is not None:
                logs["goal_loss"] = logs.get("goal_loss", 0.0) + float(goal_loss) / cfg.grad_accum
        self.step += 1
        if self.acc.device.type == "cuda":   # the memory plan's check on a real GPU (twinbrain-bench memory)
            logs["max_memory_gb"] = round(torch.cuda.max_memory_allocated(self.acc.device) / 1e9, 2)
        logs.update(step=self.step, lr_right=self.scheduler.get_last_lr()[0], lr_head=self.scheduler.get_last_lr()[1])
        return logs

    @torch.no_grad()
    def evaluation_loss(self, samples: ChunkSamples | None, max_samples: int = 64) -> float | None:
        """Mean loss over the first ``max_samples`` samples with fixed (ε, t) draws: comparable across steps,
        and the same for any number of processes (global batches, shared out like training's)."""
        if samples is None:
            return None
        self.model.eval()
        n = self.acc.num_processes
        idx = np.arange(min(len(samples), max_samples))
        idx = np.resize(idx, max(len(idx), n))   # every process needs a sample (only tiny sets repeat some)
        chunks = np.array_split(idx, max(1, len(idx) // (self.cfg.batch_size * n)))
        return float(np.mean([self._global_batch_loss(samples, chunk, self._generator(-1, k), with_goal=False)[1]
                              for k, chunk in enumerate(chunks)]))

    def goal_errors(self) -> dict:
        """val_goal_error and one per probe (``goal_error_<probe>``); {} without a goal head."""
        if self.acc.unwrap_model(self.model).goal_head is None:
            return {}
        return {"val_goal_error": self.goal_error(self.val_set),
                **{f"goal_error_{name}": self.goal_error(samples) for name, samples in self.probes.items()}}

    @torch.no_grad()
    def goal_error(self, samples: ChunkSamples | None, max_samples: int = 64) -> float | None:
        """The goal head's mean squared error (normalised units) over the first ``max_samples`` samples, on
        this process (it is deterministic); None without samples or a goal head. A probe with the colour
        swapped in the words tells whether the predicted goal follows them."""
        model = self.acc.unwrap_model(self.model)
        if samples is None or model.goal_head is None:
            return None
        model.eval()
        count, errors = min(len(samples), max_samples), []
        for k in range(0, count, self.cfg.batch_size):
            inputs, state, _, _, goal = self._batch(samples, range(k, min(k + self.cfg.batch_size, count)))
            hidden, mask = model.features(inputs, state)
            errors.append(model.goal_error(hidden, mask, goal).cpu().numpy())
        return float(np.concatenate(errors).mean())

    def validation_loss(self) -> float | None:
        return self.evaluation_loss(self.val_set)

    # -- checkpoints ----------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        self.acc.wait_for_everyone()   # every process has finished the step being saved
        if self.acc.is_main_process:
            self.policy.save(directory)
            state = {"step": self.step, "scheduler": self.scheduler.state_dict(), "train_config": asdict(self.cfg),
                     "processes": self.acc.num_processes}
            if not self._deepspeed:   # DDP / one process: every rank holds the same, complete optimizer state
                state["optimizer"] = self.optimizer.state_dict()
            torch.save(state, directory / "training_state.pt")
        if self._deepspeed:
            # ZeRO shards the optimizer state (and its fp32 master weights): each rank writes its own shard.
            self.model.save_checkpoint(str(directory / "deepspeed"), tag="training", exclude_frozen_parameters=True)
        self.acc.wait_for_everyone()
        return directory

    def _load_state(self, directory: Path) -> None:
        from ..model.checkpoint import WEIGHTS_FILE, load_weights, read_checkpoint

        _, weights, _ = read_checkpoint(directory)
        load_weights(self.policy.model, weights, directory / WEIGHTS_FILE)
        state = torch.load(directory / "training_state.pt", weights_only=True, map_location="cpu")
        if self._deepspeed:
            saved = state.get("processes")
            if saved != self.acc.num_processes:
                raise ValueError(f"{directory}: its ZeRO optimizer shards are for {saved} processes, this run has "
                                 f"{self.acc.num_processes}")
            self.model.load_checkpoint(str(directory / "deepspeed"), tag="training", load_module_strict=False,
                                       load_lr_scheduler_states=False)
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])

    def run(self) -> dict:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        metrics = open(self.out / "metrics.jsonl", "a") if self.acc.is_main_process else None
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.acc.is_main_process, desc="train")
        start, last, cap, mark = time.perf_counter(), {}, cfg.steps, (0.0, self.step)
        while self.step < cfg.steps:
            last = self.train_step()
            if cfg.time_budget_s and self.step % 20 == 0:
                # Fit the step count (and so the cosine schedule) to the rest of the time budget at the
                # recent step rate; refitted as it goes because the first steps also decode the videos.
                elapsed = time.perf_counter() - start
                rate = (self.step - mark[1]) / max(elapsed - mark[0], 1e-6)
                steps = torch.tensor([min(cap, self.step + max(1, int((cfg.time_budget_s - elapsed) * rate)))],
                                     device=self.acc.device)
                cfg.steps = int(broadcast(steps, from_process=0).item())   # all processes stop at the same step
                bar.total, mark = cfg.steps, (elapsed, self.step)
            if self.step % cfg.val_every == 0 or self.step == cfg.steps:
                last["val_loss"] = self.validation_loss()
                last.update({name: self.evaluation_loss(samples) for name, samples in self.probes.items()})
                last.update(self.goal_errors())
            if self.step % cfg.save_every == 0 and self.step < cfg.steps:
                self.save(self.out / f"step-{self.step:06d}")
            if metrics:
                metrics.write(json.dumps(last) + "\n")
                metrics.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}")
        bar.close()
        if metrics:
            metrics.close()
        final = self.save(self.out / "final")
        return {"checkpoint": str(final), "steps": self.step, "last": last,
                "seconds": round(time.perf_counter() - start, 1)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="twinbrain-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for field, default in TrainConfig.__dataclass_fields__.items():
        kind = type(default.default) if default.default is not default.default_factory else str
        flag = "--" + field.replace("_", "-")
        if field in ("dataset", "out"):
            p.add_argument(flag, required=True)
        elif kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default.default)
        else:
            p.add_argument(flag, type=kind, default=default.default)
    p.add_argument("--resume", default=None, help="checkpoint directory written by a previous run")
    args = vars(p.parse_args(argv))
    resume = args.pop("resume")
    trainer = Trainer(TrainConfig(**args), resume)
    result = trainer.run()
    if trainer.acc.is_main_process:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
