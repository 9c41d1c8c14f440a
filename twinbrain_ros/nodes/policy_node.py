"""policy_node: cameras + joint states + instruction -> TwinBrainVLA -> setpoints at control rate.

Threads: subscriptions feed the synchronizer (cheap, never wait on the model); a dedicated worker
thread runs inference on the newest synchronized observation, in this process or (``inference_process``:
runtime/policy_process.py) in a child process of its own, whose Python never holds this process's GIL;
the control timer interpolates the executing chunk at ``control_rate_hz`` in its own callback group.
Motion is published only while there is an instruction and the observation is fresh; a model exception
is reported on /diagnostics (ERROR) and motion stops, the node keeps running. This node never talks to the
controller: the safety node does.

A managed (lifecycle) node: configure loads the model and opens the interfaces, activate allows
inference and setpoints, deactivate stops them (the safety node's watchdog holds the arm), cleanup
frees the model and its GPU memory. ``autostart`` (default: launch, `twinbrain-ros up`) goes to active.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.task import Future
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ..msg import ActionChunk
from ..runtime.policy_process import PolicyProcess, PolicyProcessError, load_policy
from ..runtime.policy_runner import PolicyRunner
from ..srv import Ask
from .diagnostics import ThrottledLog, diagnostic_array
from .lifecycle import destroy_entities
from .params import declare, joint_limits
from .policy_params import PARAMS
from .qos import LATCHED
from .realtime import PeriodicThread
from .ros_convert import EE_DIMENSIONS, action_chunk, joint_trajectory, pose_stamped, sec_to_stamp
from .sensor_inputs import SensorInputs


class PolicyNode(LifecycleNode):
    def __init__(self, policy=None, **kwargs):
        self._stop = threading.Event()   # first: destroy_node may run on a half-built node
        self.worker = self.control = None
        self.policy, self._given_policy = None, policy
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        super().__init__("policy_node", **kwargs)
        self.p = p = declare(self, PARAMS)
        self.log = ThrottledLog(self.get_logger())
        sys.setswitchinterval(p["gil_switch_interval"])
        self.torch_threads = p["torch_threads"] or max(1, (os.cpu_count() or 2) - 1)
        if not p["inference_process"]:   # the model runs here (loaded or given): its threads are this process's
            import torch

            torch.set_num_threads(self.torch_threads)
        if len(p["camera_topics"]) != len(p["camera_names"]):
            raise ValueError(f"policy_node: {len(p['camera_topics'])} camera_topics for "
                             f"{len(p['camera_names'])} camera_names")
        self.joint_names = p["joint_names"]
        self.period = 1.0 / p["control_rate_hz"]
        self.limits = joint_limits(p, self.get_name())   # bad limits fail here, before any transition
        self._entities: list = []     # what on_configure created, destroyed again by on_cleanup
        self._configure_error = ""
        if p["autostart"]:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise ValueError(self._configure_error or "policy_node: configure failed")
            self.trigger_activate()

    # -- lifecycle (ros2 lifecycle set /policy_node configure | activate | deactivate | cleanup) -------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        """Load the model and open the interfaces; inference and setpoints wait for activate."""
        try:
            self.policy = self._given_policy or self._load_policy()
            self._check_policy_matches()
        except (ValueError, FileNotFoundError, PolicyProcessError) as exc:
            self._close_policy()
            self._configure_error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        p = self.p
        self.runner = PolicyRunner.from_params(p, self.limits, horizon=self.policy.config.chunk_length)
        self.sync = self.runner.sync
        self.stats = self.runner.stats
        self.tick_errors: deque[float] = deque(maxlen=1000)

        keep = self._entities.append
        sensors = MutuallyExclusiveCallbackGroup()
        self.inputs = SensorInputs(self, self.sync, self.lock, p["camera_topics"], p["joint_states_topic"], self.log,
                                   on_observation=self._on_observation, callback_group=sensors)
        self._entities += self.inputs.subscriptions
        keep(self.create_subscription(String, p["instruction_topic"], self._on_instruction, LATCHED,
                                      callback_group=sensors))
        if p["output_mode"] == "joint":
            self.command_pub = self.create_publisher(JointTrajectory, p["command_topic"], 10)
            keep(self.command_pub)
        else:
            self.pose_pub = self.create_publisher(PoseStamped, p["pose_topic"], 10)
            self.gripper_pub = self.create_publisher(Float64, p["gripper_topic"], 10)
            self._entities += [self.pose_pub, self.gripper_pub]
        self.chunk_pub = self.create_publisher(ActionChunk, "~/chunk", 10)
        keep(self.chunk_pub)
        self._questions = deque()   # (request, future) for the worker; answered between inferences
        keep(self.create_service(Ask, "~/ask", self._on_ask, callback_group=MutuallyExclusiveCallbackGroup()))
        keep(self.create_service(Trigger, "~/reset", self._on_reset, callback_group=MutuallyExclusiveCallbackGroup()))
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        keep(self.diag_pub)
        keep(self.create_timer(p["diagnostics_period"], self._publish_diagnostics,
                               callback_group=MutuallyExclusiveCallbackGroup()))
        self._stop.clear()
        self.worker = threading.Thread(target=self._inference_loop, name="twinbrain-inference", daemon=True)
        self.worker.start()
        self.control = PeriodicThread(
            "twinbrain-control", self.period, self._on_control_tick,
            running=lambda: not self._stop.is_set() and self.context.ok(),   # ends with rclpy shutdown too
            on_error=lambda exc: self.log("error", "control", f"control tick failed: {exc!r}"),
            tick_errors=self.tick_errors, priority=p["control_thread_priority"],
            on_no_priority=lambda exc: self.get_logger().warn(
                f"control thread runs without real-time priority ({exc}); "
                "grant rtprio (e.g. /etc/security/limits.conf) for lower jitter"))
        # Everything loaded so far (torch, transformers, the model) lives for the whole run: move it out of
        # the cyclic GC's reach, so collections stay short instead of scanning millions of objects while
        # holding the GIL.
        gc.freeze()
        self.control.start()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        """Act on what is observed from now on: nothing planned before (or while inactive) is executed."""
        with self.lock:
            self.runner.activate(self.now())
            self.wake.notify_all()
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        """No more setpoints (the safety node's watchdog brings the arm to a hold); the plan is dropped."""
        with self.lock:
            self.runner.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        """Stop the threads, close the interfaces, free the model (and its GPU memory)."""
        self._stop_threads()
        destroy_entities(self, self._entities)
        gc.unfreeze()
        self._close_policy()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_threads()
        self._close_policy()
        return TransitionCallbackReturn.SUCCESS

    def _stop_threads(self) -> None:
        self._stop.set()
        with self.lock:
            self.wake.notify_all()
        if isinstance(self.policy, PolicyProcess):   # first: a hung model process must not hold the worker
            self.policy.close(timeout=1.0)
        if self.worker is not None and self.worker.is_alive():
            self.worker.join(timeout=5.0)
        if self.control is not None and self.control.is_alive():
            self.control.join(timeout=1.0)

    # -- set-up ---------------------------------------------------------------------------------
    def _load_policy(self):
        p = self.p
        load = {k: p[k] for k in ("checkpoint", "device", "base_model_path", "tiny_base_dir", "camera_names",
                                  "joint_lower", "joint_upper", "max_velocity", "chunk_step_period")}
        if p["inference_process"]:
            policy = PolicyProcess(load, self.torch_threads, p["inference_timeout"])
            where = f"inference process {policy.pid}"
        else:
            policy, where = load_policy(**load), "this process"
        source = f"checkpoint {p['checkpoint']}" if p["checkpoint"] else "tiny preset"
        self.get_logger().info(f"model ready on {policy.device} ({source}, {where})")
        return policy

    def _close_policy(self) -> None:
        """Free the model (and its GPU memory): end the inference process, or drop the in-process model."""
        policy, self.policy = self.policy, None
        if isinstance(policy, PolicyProcess):
            policy.close()
            return
        if policy is None or policy is self._given_policy:
            return
        del policy
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _check_policy_matches(self):
        cfg, n = self.policy.config, len(self.joint_names)
        if cfg.action_dim != n or cfg.state_dim != n:
            raise ValueError(f"policy_node: the model has state_dim={cfg.state_dim}, action_dim={cfg.action_dim} "
                             f"but {n} joints are configured {self.joint_names}")
        if list(cfg.camera_names) != list(self.p["camera_names"]):
            raise ValueError(f"policy_node: the model was trained on cameras {cfg.camera_names}, "
                             f"camera_names is {self.p['camera_names']}")

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- inputs (never wait on the model) --------------------------------------------------------
    def _on_observation(self, obs) -> None:
        """A frame completed an observation (called under the lock): wake the inference worker."""
        self.runner.observation_completed(obs.stamp, self.now())
        self.wake.notify()

    def _on_instruction(self, msg: String) -> None:
        with self.lock:
            if self.runner.set_instruction(msg.data, self.now()):   # re-plan: hold until a chunk for it
                self.wake.notify()
        self.get_logger().info(f"instruction: {msg.data!r}")

    def _on_reset(self, request, response):
        """A new episode (LeRobot's policy.reset()): the scene or the arm changed under the policy, e.g. a
        simulator reset or a re-staged table. The executing chunk and any inference still running on an
        older observation are dropped; motion stops (the safety node's watchdog holds the arm) until a
        chunk planned from an observation stamped after this call arrives."""
        with self.lock:
            self.runner.reset(self.now())
            self.wake.notify()
        response.success = True
        response.message = "executing chunk dropped; the next chunk comes from an observation after this reset"
        return response

    # -- inference worker ------------------------------------------------------------------------
    def _inference_loop(self) -> None:
        while not self._stop.is_set() and self.context.ok():   # ends with rclpy shutdown too
            with self.lock:
                if not self._questions:
                    self.wake.wait(timeout=0.05)
                question = self._questions.popleft() if self._questions else None
            if question is not None:
                self._answer(*question)   # takes one inference slot; the control loop runs on meanwhile
                continue
            with self.lock:
                job = self.runner.next_job(self.now())
            if job is None:
                continue
            start = time.perf_counter()
            try:
                chunk = self.policy.predict(job.images, job.state, job.instruction,
                                            steps=self.p["num_inference_steps"] or None, guide=job.guide)
            except Exception as exc:   # noqa: BLE001 - any model failure must leave the robot graph alive
                if self._stop.is_set():    # the model process was ended by the shutdown itself
                    break
                error = f"{type(exc).__name__}: {exc}"
                with self.lock:
                    self.runner.failed(error)
                self.log("error", "inference", f"inference failed: {error}")
                continue
            emulated = self.p["emulated_inference_time"] - (time.perf_counter() - start)
            if emulated > 0 and self._stop.wait(emulated):
                break
            latency = time.perf_counter() - start
            if not self.context.ok():
                break
            self._accept_chunk(job, chunk, latency)

    # -- ~/ask: the frozen Left brain answers questions about the cameras ----------------------
    async def _on_ask(self, request, response):
        """Queue the question for the inference worker and wait without blocking the executor."""
        done = Future(executor=self.executor)
        done.add_done_callback(lambda _: None)   # completion then schedules a task, which wakes the executor
        with self.lock:
            self._questions.append((request, done))
            self.wake.notify()
        success, answer, message, stamp = await done
        response.success, response.answer, response.message = success, answer, message
        response.observation_stamp = sec_to_stamp(stamp)
        return response

    def _answer(self, request, done: Future) -> None:
        cameras = list(request.cameras) or list(self.p["camera_names"])
        unknown = sorted(set(cameras) - set(self.p["camera_names"]))
        with self.lock:
            obs, reason = self.sync.latest_frames(self.now())
        if unknown:
            done.set_result((False, "", f"unknown camera(s) {unknown}; configured: {self.p['camera_names']}", 0.0))
            return
        if obs is None:
            done.set_result((False, "", f"no fresh camera frames: {reason}", 0.0))
            return
        try:
            answer = self.policy.ask({c: obs.images[c] for c in cameras}, request.question,
                                     request.max_new_tokens or self.p["ask_max_new_tokens"])
        except Exception as exc:   # noqa: BLE001 - a bad question must not take the node down
            self.log("warn", "ask", f"~/ask failed: {type(exc).__name__}: {exc}")
            done.set_result((False, "", f"{type(exc).__name__}: {exc}", obs.stamp))
            return
        done.set_result((True, answer, "", obs.stamp))

    def _accept_chunk(self, job, chunk: np.ndarray, latency: float) -> None:
        with self.lock:
            accepted = self.runner.accept(job, chunk, latency, self.now())
            rejection = self.runner.rejection
        if rejection:
            self.log("warn", "chunk_rejected", rejection)
        if accepted is None:
            return
        if accepted.clamped:
            self.log("info", "chunk_clamped", f"chunk left the position range of {accepted.clamped}: clamped")
        if accepted.slow_down > 1.0:
            self.log("info", "chunk_slowed",
                     f"chunk needed more than max_velocity: slowed down x{accepted.slow_down:.2f}")
        joint = self.p["output_mode"] == "joint"
        self.chunk_pub.publish(action_chunk(accepted.chunk, sec_to_stamp(job.stamp),
                                            self.joint_names if joint else EE_DIMENSIONS[:chunk.shape[1]],
                                            self.p["chunk_step_period"], latency, accepted.instruction,
                                            "" if joint else self.p["base_frame"]))

    # -- control loop ----------------------------------------------------------------------------
    def _on_control_tick(self) -> None:
        now = self.now()
        with self.lock:
            setpoint = self.runner.tick(now)
        if setpoint is None or not self.p["setpoints"]:
            return   # split graph: the robot's chunk_runner executes ~/chunk (the freshness check still reports)
        stamp = sec_to_stamp(now)
        if self.p["output_mode"] == "joint":
            self.command_pub.publish(joint_trajectory(self.joint_names, setpoint, stamp, self.period, self.period))
        else:   # end-effector actions: x, y, z, roll, pitch, yaw, gripper
            self.pose_pub.publish(pose_stamped(self.p["base_frame"], stamp, setpoint[:3], setpoint[3:6]))
            self.gripper_pub.publish(Float64(data=float(setpoint[6]) if len(setpoint) > 6 else 0.0))

    def _publish_diagnostics(self) -> None:
        now = self.now()
        runner = self.runner
        lat = np.array(self.stats["latency"]) * 1e3
        tick = np.abs(np.array(self.tick_errors)) * 1e3
        level = "error" if runner.model_error else ("warn" if runner.refusal else "ok")
        values = {
            "inference_latency_p50_ms": f"{np.median(lat):.1f}" if lat.size else "n/a",
            "inference_latency_max_ms": f"{lat.max():.1f}" if lat.size else "n/a",
            "observation_age_ms": f"{(now - runner.last_obs_stamp) * 1e3:.1f}" if runner.last_obs_stamp else "n/a",
            "tick_period_error_p99_ms": f"{np.percentile(tick, 99):.3f}" if tick.size else "n/a",
            "chunks": self.stats["chunks"], "clamped_chunks": self.stats["clamped_chunks"],
            "slowed_chunks": self.stats["slowed_chunks"],
            "rejected_chunks": self.stats["rejected_chunks"],
            "frames": self.inputs.frames, "bad_frames": self.inputs.bad_frames,
            "model_errors": self.stats["model_errors"], "instruction": self.sync.instruction or "",
            "refusal": runner.refusal, "device": self.policy.device if self.policy else "none",
        }
        message = runner.model_error or runner.refusal or "acting"
        self.diag_pub.publish(diagnostic_array(sec_to_stamp(now), "twinbrain: policy", self.get_name(), level,
                                               message, values))

    def destroy_node(self):
        self._stop_threads()
        self._close_policy()
        return super().destroy_node()


def main(args=None):
    from .spin import run_node
    run_node(PolicyNode, args)


if __name__ == "__main__":
    main()
