"""policy_node's parameters, and the PolicyRunner built from them as the node builds it — one place, used
by the node, the launch file (through graph.py), the in-process rollouts and the tests."""

from __future__ import annotations

from pathlib import Path

from ..runtime.chunk_executor import BLEND_POLICIES
from ..runtime.policy_runner import PolicyRunner
from .params import INTERPOLATION, ROBOT, Param, joint_limits, non_empty, non_negative, one_of, positive, resolve

PARAMS = ROBOT + [
    Param("camera_names", ["front"], "Camera names, in the order the model sees them.", non_empty),
    Param("camera_topics", ["camera/front/image_raw"],
          "One topic per camera; a topic ending in /compressed is read as sensor_msgs/CompressedImage.", non_empty),
    Param("joint_states_topic", "joint_states", "sensor_msgs/JointState input."),
    Param("instruction_topic", "instruction", "std_msgs/String task instruction (reliable, transient_local)."),
    Param("command_topic", "twinbrain/joint_command", "Setpoints for the safety node (JointTrajectory)."),
    Param("output_mode", "joint", "joint: JointTrajectory setpoints; end_effector: PoseStamped + gripper.",
          one_of("joint", "end_effector")),
    Param("pose_topic", "twinbrain/pose_command", "End-effector mode: PoseStamped target for the safety node."),
    Param("gripper_topic", "twinbrain/gripper_command", "End-effector mode: gripper position (Float64)."),
    Param("base_frame", "base_link", "End-effector mode: frame of the pose targets."),
    Param("checkpoint", "", "Fine-tuned checkpoint directory; empty runs the tiny random preset."),
    Param("base_model_path", "", "Override of the checkpoint's base VLM path (the Left brain)."),
    Param("tiny_base_dir", str(Path.home() / ".cache/twinbrain_ros/tiny-base-qwen3_vl"),
          "Where the tiny preset's random base VLM is written once."),
    Param("device", "auto", "auto, cpu, cuda or cuda:N."),
    Param("num_inference_steps", 0, "Euler steps; 0 keeps the checkpoint's value.", non_negative),
    Param("chunk_step_period", 0.1, "Seconds between consecutive actions of a chunk (dataset 1/fps).", positive),
    Param("blend", "crossfade", "How a new chunk takes over: " + ", ".join(BLEND_POLICIES) + ".",
          one_of(*BLEND_POLICIES)),
    Param("overspeed_chunks", "slow_down", "A chunk that needs more than max_velocity: slow_down time-scales it "
          "(same path, more steps, MoveIt-style time parameterisation); reject drops it and waits for the next.",
          one_of("slow_down", "reject")),
    Param("out_of_range_chunks", "clamp", "A chunk that leaves a joint's position range: clamp holds those "
          "steps at the limit (what the safety node does to each setpoint anyway; the rest of the chunk still "
          "runs); reject drops the whole chunk and waits for the next.", one_of("clamp", "reject")),
    Param("blend_steps", 4, "Chunk steps over which crossfade/average/rtc ramp in.", positive),
    INTERPOLATION,
    Param("rtc_max_guidance", 5.0, "blend rtc: cap on the guidance weight that pulls a new chunk towards the "
          "executing one (beta of Black et al. 2025; higher follows the executing chunk more tightly).", positive),
    Param("rtc_guidance", "identity", "blend rtc: identity adds the weighted error to the flow velocity (no "
          "backward pass; LeRobot's form); network pulls it back through the network's Jacobian first (the paper's "
          "exact form, one backward pass per Euler step).", one_of("identity", "network")),
    Param("rtc_initial_delay", 0.1, "blend rtc: inference delay assumed (s) until measured delays come in; the "
          "estimate then follows the 90th percentile of recent ones, warm-up inferences left out.",
          non_negative),
    Param("emulated_inference_time", 0.0, "Each inference takes at least this long (s): the worker waits out the "
          "rest before its chunk is accepted, as a slower model or a remote GPU host would. For testing chunk "
          "blending under latency through the graph (twinbrain-bench chunking --graph); 0 on a robot.",
          non_negative),
    Param("sync_slop", 0.02, "Max stamp difference between cameras of one observation (s).", positive),
    Param("max_observation_age", 0.5, "Refuse to act on observations older than this (s).", positive),
    Param("max_observation_future", 0.05, "Refuse observations stamped further than this ahead of this host's "
          "clock: clock skew between the camera's host and this one, reported as such (s).", positive),
    Param("setpoints", True, "Execute the chunks here and stream setpoints on command_topic. false on the GPU "
          "host of a split graph: chunk_runner on the robot executes ~/chunk instead.", None),
    Param("max_joint_gap", 0.05, "Refuse observations whose joint states have a larger gap (s).", positive),
    Param("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", positive),
    Param("autostart", True, "Configure and activate at start-up (launch and twinbrain-ros up); false leaves the "
          "managed node unconfigured for `ros2 lifecycle set` / a lifecycle manager."),
    Param("ask_max_new_tokens", 64, "~/ask: default answer length limit (tokens) of the Left brain.", positive),
    Param("inference_process", False, "Run the model in a child process of its own, so its Python never holds "
          "this node's GIL while camera callbacks and the control loop wait (runtime/policy_process.py); false "
          "runs it in a thread of this process. Off by default: on 2 shared cores it measured no lower node "
          "overhead and a higher control tick error (twinbrain-bench control)."),
    Param("inference_timeout", 60.0, "With inference_process: seconds a call may take before the inference "
          "process counts as hung and is killed (reported as an inference error; cleanup + configure starts a "
          "new one). Generous: a first call may compile or capture graphs.", positive),
    Param("torch_threads", 0, "CPU inference threads; 0 = all cores but one, which stays free for the "
          "control loop and callbacks.", non_negative),
    Param("control_thread_priority", 50, "SCHED_FIFO priority of the control-loop thread (as ros2_control "
          "does); 0 disables. Without the permission (rtprio limit) the node warns and runs unprioritised.",
          non_negative),
    Param("gil_switch_interval", 0.0005,
          "sys.setswitchinterval for this process (s). The inference thread re-takes the GIL between "
          "thousands of small torch ops; at Python's default 5 ms each wait behind rclpy callbacks costs "
          "up to 5 ms (measured: tiny-model inference 2 s -> 0.13 s at 0.2 ms).", positive),
]


def runner_from_config(config: dict, camera_names: list[str] | None = None, horizon: int = 16,
                       overrides: dict | None = None) -> PolicyRunner:
    """The PolicyRunner a policy_node gets from the layered configuration (``graph.load_config()``), for a
    model with chunk length ``horizon``; ``overrides``: parameter values on top (validated the same way)."""
    from ..graph import node_params

    p = resolve(PARAMS, {**node_params(config, "policy_node"), **(overrides or {})}, "policy_node")
    return PolicyRunner.from_params(p, joint_limits(p, "policy_node"), camera_names, horizon)
