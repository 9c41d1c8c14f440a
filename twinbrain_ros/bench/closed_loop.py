"""`twinbrain-bench closed-loop` (`make closed-loop`): record -> fine-tune -> deploy -> measure.

1. records ``--episodes`` scripted-expert demonstrations of one task headless (LeRobot v3.0);
2. fine-tunes a tiny TwinBrainVLA on CPU for ``--train-minutes``;
3. deploys the checkpoint through the full ROS graph (sim_arm -> policy_node -> safety_node, separate
   processes started by the pip-only runner) and runs ``--eval-episodes`` unseen seeds, each started the
   way a lab starts one (e-stop, re-stage the scene, policy ~/reset, release), waiting up to
   ``--episode-seconds`` for the task's success detector;
4. does the same for the untrained model (same architecture and normalisation, step 0) and runs the
   scripted expert on the same seeds; prints one JSON line with the three success rates.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from pathlib import Path

import yaml

from ..cli import running_graph
from ..data.lerobot_v3 import LeRobotV3Dataset
from ..data.record_sim import record
from ..graph import load_config, section_params
from ..sim.arm_sim import ArmSim
from ..sim.expert import run_episode
from ..train.trainer import TrainConfig, Trainer
from .stats import emit


def train_for(dataset: str, out: Path, minutes: float | None, steps_cap: int, image_size: int,
              lr_right: float, delta: bool, val_episodes: int = 5, probes=None) -> tuple[str, str, dict]:
    """Untrained (step 0) and fine-tuned checkpoints; the cosine schedule is fitted to the time budget, or
    (``minutes`` None) exactly ``steps_cap`` steps. ``probes(trainer)``: named sample sets whose loss is
    logged with the validation loss and reported at the end."""
    cfg = TrainConfig(dataset=dataset, out=str(out), steps=steps_cap, batch_size=8, lr_right=lr_right, lr_head=1e-3,
                      image_size=image_size, warmup_steps=50, val_every=250, save_every=10 ** 9, chunk_length=16,
                      noise_draws=4, val_episodes=val_episodes, time_budget_s=(minutes or 0) * 60,
                      delta_actions=delta)
    trainer = Trainer(cfg)
    if probes is not None:
        trainer.probes = probes(trainer)
    untrained = str(trainer.save(out / "untrained"))
    result = trainer.run()
    info = {"train_steps": trainer.step, "train_seconds": result["seconds"], "lr_right": lr_right,
            "delta_actions": delta,
            "train_loss_eval": trainer.evaluation_loss(trainer.train_set), "val_loss": trainer.validation_loss(),
            **{name: trainer.evaluation_loss(samples) for name, samples in trainer.probes.items()}}
    (out / "train_info.json").write_text(json.dumps(info))
    return untrained, result["checkpoint"], info


def _call(client, timeout: float = 15.0) -> bool:
    """Call a Trigger service; True if it answered with success."""
    future = client.call_async(client.srv_type.Request())
    end = time.monotonic() + timeout
    while not future.done() and time.monotonic() < end:
        time.sleep(0.02)
    return future.done() and future.result() is not None and future.result().success


def _release(client, timeout: float = 10.0) -> bool:
    """The safety node grants a release only from fresh joint states of an arm at rest: right after the sim
    re-homes the arm it refuses (the teleport reads as a jump) until the arm has settled; retry as an
    operator would."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _call(client):
            return True
        time.sleep(0.1)
    return False


def evaluate(checkpoint: str, task: str, seeds: list[int], episode_seconds: float, workdir: Path) -> dict:
    """Run the whole graph on ``checkpoint`` and count successes over the seeds."""
    import rclpy
    from std_msgs.msg import Bool
    from std_srvs.srv import Trigger

    from ..nodes.qos import LATCHED

    config = load_config()
    # the sim's own first episode (seed - 1) only runs while the graph starts; every evaluated one is reset
    section_params(config, "sim_arm").update(task=task, seed=seeds[0] - 1)
    cfg_path = workdir / f"eval-{Path(checkpoint).name}.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    log_path = workdir / f"eval-{Path(checkpoint).name}.log"
    results = []
    with running_graph(log_path, use_sim=True, checkpoint=checkpoint, config=cfg_path):
        rclpy.init()
        node = rclpy.create_node("closed_loop_eval")
        success = threading.Event()
        node.create_subscription(Bool, "/sim_arm/success", lambda m: success.set() if m.data else None, LATCHED)
        stop, release = node.create_client(Trigger, "/safety_node/estop"), node.create_client(Trigger,
                                                                                              "/safety_node/release")
        reset = node.create_client(Trigger, "/sim_arm/reset")
        new_episode = node.create_client(Trigger, "/policy_node/reset")
        threading.Thread(target=rclpy.spin, args=(node,), daemon=True).start()
        try:
            # policy_node's services appear once its model is loaded
            if not all(c.wait_for_service(timeout_sec=180) for c in (stop, release, reset, new_episode)):
                raise RuntimeError(f"the graph did not come up; see {log_path}")
            for _ in seeds:   # what a lab does between episodes: stop the arm, re-stage, start afresh
                _call(stop)
                time.sleep(0.5)                           # the safety node brakes the arm to a standstill
                _call(reset)                              # the sim draws the next seed itself
                success.clear()
                _call(new_episode)                        # the policy drops its plan for the last scene
                if not _release(release):                 # the limiter restarts from the re-homed arm
                    raise RuntimeError(f"the safety node refused every release; see {log_path}")
                results.append(success.wait(episode_seconds))
            _call(stop)
            _call(reset)                                  # sim_arm logs how the last episode ended too
        finally:
            node.destroy_node()
            rclpy.try_shutdown()
    return {"success_rate": round(sum(results) / len(results), 3), "successes": int(sum(results)),
            "episodes": len(results),
            "failed_seeds": [s for s, ok in zip(seeds, results) if not ok]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="twinbrain-bench closed-loop", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="touch",
                   help="a task spec (touch, touch:red, ...); mixture: language following (language_loop.py)")
    p.add_argument("--episodes", type=int, default=200, help="scripted demonstrations to record (~0.7 s each)")
    p.add_argument("--train-minutes", type=float, default=30.0,
                   help="CPU training budget (measured on 2 cores: 30 min = 18,900-19,400 steps at 64²)")
    p.add_argument("--train-steps-cap", type=int, default=20000, help="with --task mixture: the step budget")
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--episode-seconds", type=float, default=10.0)
    p.add_argument("--lr-right", type=float, default=1e-4, help="Right-brain learning rate")
    p.add_argument("--image-size", type=int, default=64,
                   help="camera size the tiny model sees (4 tokens at 64, 16 at 128)")
    p.add_argument("--delta-actions", action=argparse.BooleanOptionalAction, default=True,
                   help="arm joints relative to the observed state, gripper absolute (openpi's delta actions)")
    p.add_argument("--out", default="out/closed-loop")
    p.add_argument("--eval-only", action="store_true",
                   help="re-run only the evaluations on the dataset and checkpoints already in --out")
    args = p.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(150, 230)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    if args.task == "mixture":
        from .language_loop import run
        emit(run(args, out, train_for))
        return
    dataset = str(out / "dataset")
    if args.eval_only:
        rec = {"episodes": len(LeRobotV3Dataset(dataset).episodes)}
        untrained, trained = str(out / "train" / "untrained"), str(out / "train" / "final")
        train_info = json.loads((out / "train" / "train_info.json").read_text())
    else:
        rec = record(dataset, args.episodes, fps=10, task=args.task, first_seed=0, image_size=(224, 224))
        untrained, trained, train_info = train_for(dataset, out / "train", args.train_minutes, args.train_steps_cap,
                                                   args.image_size, args.lr_right, args.delta_actions)
    seeds = list(range(10_000, 10_000 + args.eval_episodes))                  # never seen in training
    sim = ArmSim()
    expert = sum(run_episode(sim, s, args.task) for s in seeds) / len(seeds)
    sim.close()
    logs = out / "eval"          # graph logs of both evaluations are kept for diagnosis
    logs.mkdir(exist_ok=True)
    fine_tuned = evaluate(trained, args.task, seeds, args.episode_seconds, logs)
    baseline = evaluate(untrained, args.task, seeds, args.episode_seconds, logs)
    emit({"bench": "closed-loop", "task": args.task, "demonstrations": rec["episodes"], "image_size": args.image_size,
          **train_info,
          "eval_seeds": f"{seeds[0]}..{seeds[-1]}", "fine_tuned": fine_tuned, "untrained": baseline,
          "scripted_expert": {"success_rate": round(expert, 3)}, "seconds": round(time.monotonic() - t0, 1)})
