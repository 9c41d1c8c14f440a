"""sim_arm: the MuJoCo arm as a stand-in robot driver + joint_trajectory_controller.

Publishes camera images (rgb8, or JPEG CompressedImage on topics ending in /compressed — what crosses a
link to another host; stamped with the physics step they show, sensor-data QoS) and
joint_states; executes JointTrajectory on the controller topic with JTC semantics; physics runs in
real time in its own thread, the cameras render a snapshot of it on another (which owns the EGL context),
so a slow frame delays (or drops) frames, never joint states. Each episode draws cube poses and a
task from the seed (sim/tasks.py: which cube, which verb) and publishes the task's instruction
(latched); an instruction someone else publishes that names a task (``twinbrain-ros instruct "touch the
red cube"``) retargets the success detector to it. ``~/reset`` starts the next
episode and logs how the last one ended (success time, closest approach to the target cube);
``~/success`` and /diagnostics report the task's success detector. With ``expert: true`` the scripted
expert drives the arm and publishes its commands on ``leader_topic`` like a teleoperator's leader arm.
"""

from __future__ import annotations

import array
import json
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Bool, Header, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ..runtime.images import rgb_to_jpeg
from ..sim.arm_sim import ARM_JOINTS, ArmSim, ClosestApproach
from ..sim.expert import ScriptedExpert
from ..sim.tasks import parse_instruction, validate_spec
from ..sim.trajectory import TrajectoryFollower
from .diagnostics import ThrottledLog, diagnostic_array
from .params import Param, declare, non_empty, positive
from .qos import LATCHED
from .realtime import renice
from .ros_convert import duration_to_sec, sec_to_stamp, stamp_to_sec

PARAMS = [
    Param("camera_names", ["front", "wrist"], "MJCF cameras to publish.", non_empty),
    Param("camera_topics", ["camera/front/image_raw", "camera/wrist/image_raw"], "One topic per camera; a topic "
          "ending in /compressed gets sensor_msgs/CompressedImage (JPEG, image_transport's convention).", non_empty),
    Param("jpeg_quality", 80, "JPEG quality (1-100) of the /compressed camera topics.",
          lambda q: None if 1 <= q <= 100 else "must be in [1, 100]"),
    Param("image_width", 224, "Rendered image width (px).", positive),
    Param("image_height", 224, "Rendered image height (px).", positive),
    Param("camera_rate_hz", 30.0, "Camera frame rate.", positive),
    Param("joint_state_rate_hz", 200.0, "joint_states rate (also the physics/control update rate).", positive),
    Param("controller_topic", "arm_controller/joint_trajectory", "JointTrajectory input (JTC semantics)."),
    Param("joint_states_topic", "joint_states", "Measured joint states output."),
    Param("instruction_topic", "instruction", "Where each episode's instruction is published (latched)."),
    Param("publish_instruction", True, "Publish the task instruction at every reset."),
    Param("task", "random", "A task spec: mixture / random (verb, colour, direction and phrasing drawn from the "
          "seed), touch:red, push:blue:right, touch:any, or a verb alone (its single historical task).",
          lambda v: _spec_error(v)),
    Param("seed", 0, "Seed of the first episode; episode k uses seed + k."),
    Param("expert", False, "The scripted expert drives the arm (teleop stand-in for recording)."),
    Param("leader_topic", "leader/joint_states", "Expert mode: the leader-arm JointState it publishes."),
    Param("process_niceness", -10, "Nice value of this process's threads where permitted (root or CAP_SYS_NICE), "
          "as safety_node's: the sim stands in for the robot's hardware, whose joint states a busy host does "
          "not delay; at the default priority a loaded host starved the physics loop until its joint states "
          "arrived older than the safety node's max_joint_state_age. 0 leaves it."),
]


def _spec_error(value) -> str | None:
    try:
        validate_spec(value)
    except ValueError as exc:
        return str(exc)
    return None


class SimArmNode(Node):
    def __init__(self, **kwargs):
        self._stop = threading.Event()   # first: destroy_node may run on a half-built node
        super().__init__("sim_arm", **kwargs)
        self.p = p = declare(self, PARAMS)
        self.log = ThrottledLog(self.get_logger())
        # from the thread that spins, before any other starts: the physics thread inherits it, and so does
        # the executor thread whose trajectory callbacks it shares a lock (and the GIL) with
        renice(p["process_niceness"], lambda exc: self.get_logger().info(
            f"process_niceness {p['process_niceness']} not permitted ({exc}); running at the default"))
        if len(p["camera_topics"]) != len(p["camera_names"]):
            raise ValueError("sim_arm: camera_topics and camera_names must have the same length")
        self.lock = threading.Lock()
        self.episode = 0
        self.sim: ArmSim | None = None
        self.follower: TrajectoryFollower | None = None
        self.expert: ScriptedExpert | None = None
        self.episode_start = 0.0
        self.success = False
        self.closest: ClosestApproach | None = None
        self.succeeded_at: float | None = None   # seconds into the episode of the first success
        self._reset_request = threading.Event()
        self._reset_request.set()
        self._ready = threading.Event()

        self.compressed = [t.rstrip("/").endswith("compressed") for t in p["camera_topics"]]
        self.cam_pubs = [self.create_publisher(CompressedImage if c else Image, t, qos_profile_sensor_data)
                         for t, c in zip(p["camera_topics"], self.compressed)]
        self.js_pub = self.create_publisher(JointState, p["joint_states_topic"], qos_profile_sensor_data)
        self.instruction_pub = self.create_publisher(String, p["instruction_topic"], LATCHED)
        self.success_pub = self.create_publisher(Bool, "~/success", LATCHED)
        # cubes other than the named one that were touched or moved this episode (comma-separated; latched)
        self.wrong_pub = self.create_publisher(String, "~/wrong_objects", LATCHED)
        self.wrong = ""
        # how each episode ended (JSON: task, success, wrong objects, closest approach), published at ~/reset
        self.result_pub = self.create_publisher(String, "~/episode_result", LATCHED)
        # advertised only when something is published on it: the expert plays the leader arm
        self.leader_pub = (self.create_publisher(JointState, p["leader_topic"], qos_profile_sensor_data)
                           if p["expert"] else None)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(JointTrajectory, p["controller_topic"], self._on_trajectory, 10)
        self.create_subscription(String, p["instruction_topic"], self._on_instruction, LATCHED)
        self._retarget = None     # a task named by someone else's instruction, for the physics thread
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_timer(1.0, self._publish_diagnostics)
        self._frame_due = threading.Event()   # set by physics with a snapshot to render, cleared when published
        self._frame: tuple | None = None       # (MjData snapshot, stamp) while _frame_due is set
        self._frame_data = None                # the snapshot's buffer, reused
        self.frames_dropped = 0                # camera ticks that found the previous frame still rendering
        self.camera_thread = threading.Thread(target=self._camera_loop, name="sim-cameras", daemon=True)
        self.camera_thread.start()
        self.thread = threading.Thread(target=self._physics_loop, name="sim-physics", daemon=True)
        self.thread.start()
        if not self._ready.wait(timeout=30.0):
            raise RuntimeError("sim_arm: the physics thread did not start (MuJoCo/EGL problem?)")

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- ROS inputs ---------------------------------------------------------------------------
    def _on_trajectory(self, msg: JointTrajectory) -> None:
        if self.p["expert"] or not msg.points:
            return
        with self.lock:
            if self.follower is None:
                return
            try:
                self.follower.replace(msg.joint_names, stamp_to_sec(msg.header.stamp),
                                      [duration_to_sec(pt.time_from_start) for pt in msg.points],
                                      [list(pt.positions) for pt in msg.points], self.now())
            except ValueError as exc:
                self.log("warn", "trajectory", f"trajectory ignored: {exc}")

    def _on_instruction(self, msg: String) -> None:
        task = parse_instruction(msg.data)
        if task is None:
            self.log("info", "instruction", f"instruction {msg.data!r} names no sim task: the success check "
                     "stays on the episode's")
            return
        with self.lock:
            self._retarget = task

    def _on_reset(self, request, response):
        self._reset_request.set()
        deadline = time.monotonic() + 10.0
        while self._reset_request.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        response.success = not self._reset_request.is_set()
        done = f"episode {self.episode}: {self.sim.task.instruction}"
        response.message = done if response.success else "reset timed out"
        return response

    # -- physics thread (owns MuJoCo and the EGL context) ---------------------------------------
    def _new_episode(self) -> None:
        p = self.p
        if self.closest is not None:   # how the last episode went, for whoever reads the log after an evaluation
            result = "no success" if self.succeeded_at is None else f"success after {self.succeeded_at:.1f} s"
            self.get_logger().info(f"episode {self.episode} ended ({result}): {self.closest.summary()}")
            self.result_pub.publish(String(data=json.dumps({
                "episode": self.episode, "seed": self.seed, "instruction": self.sim.task.instruction,
                "task": vars(self.sim.task), "success": self.succeeded_at is not None,
                "success_after_s": self.succeeded_at, "wrong_objects": self.sim.wrong_objects(),
                # the task the episode began with, when an instruction changed it (the swap control)
                "episode_task": vars(self.episode_task), "episode_task_success": self.episode_task_succeeded,
                **self.closest.summary()})))
        if self.sim is None:
            self.sim = ArmSim((p["image_height"], p["image_width"]), p["camera_names"])
        seed = self.seed = p["seed"] + self.episode
        task = self.episode_task = self.sim.reset(seed, p["task"])
        self.episode_task_succeeded = False
        with self.lock:
            self._retarget = None          # the episode's own instruction (published below) rules
            self.follower = TrajectoryFollower(ARM_JOINTS, self.sim.joint_positions())
            self.expert = ScriptedExpert(self.sim) if p["expert"] else None
            self.episode_start = self.now()
            self.success = False
        self.closest, self.succeeded_at = ClosestApproach(self.sim), None
        self.episode += 1
        if p["publish_instruction"]:
            self.instruction_pub.publish(String(data=task.instruction))
        self.success_pub.publish(Bool(data=False))
        self.wrong = ""
        self.wrong_pub.publish(String(data=""))
        self.get_logger().info(f"episode {self.episode} (seed {seed}): {task.instruction!r}")

    def _physics_loop(self) -> None:
        try:
            self._run_physics()
        except Exception:   # noqa: BLE001
            if self.context.ok():
                raise       # a real failure; at shutdown publishing simply stops working

    def _camera_loop(self) -> None:
        """Render and publish each snapshot the physics thread hands over. Rendering two cameras took 8 ms
        on an idle core and 50-200 ms on the loaded 2-core host; inside the physics loop that held back the
        joint states until the safety node latched joint_state_stall (no state for 0.25 s). At the process's
        priority, not below it: preempted while holding the GIL, a lower-priority camera thread stalled the
        physics thread for 0.25-0.45 s (priority inversion); rendering and JPEG release the GIL."""
        try:
            while not self._stop.is_set() and self.context.ok():
                if not self._frame_due.wait(timeout=0.1):
                    continue
                data, stamp = self._frame
                for cam, pub, compressed in zip(self.p["camera_names"], self.cam_pubs, self.compressed):
                    rgb = self.sim.render(cam, data)
                    h, w, _ = rgb.shape
                    # stamped with the physics state it shows (like a camera's exposure time), not the
                    # end of rendering: the policy pairs each frame with the joint state at its stamp
                    if compressed:
                        pub.publish(CompressedImage(header=Header(stamp=stamp), format="rgb8; jpeg compressed bgr8",
                                                    data=array.array("B", rgb_to_jpeg(rgb, self.p["jpeg_quality"]))))
                        continue
                    pub.publish(Image(header=Header(stamp=stamp), height=h, width=w,
                                      encoding="rgb8", step=w * 3,
                                      # array.array is taken as-is; bytes are checked element by element (6x slower)
                                      data=array.array("B", rgb.tobytes())))
                self._frame_due.clear()
        except Exception:   # noqa: BLE001
            if self.context.ok():
                raise
        finally:
            if self.sim is not None:
                self.sim.close()   # the renderer's GL context belongs to this thread

    def _run_physics(self) -> None:
        dt = 1.0 / self.p["joint_state_rate_hz"]
        cam_period = 1.0 / self.p["camera_rate_hz"]
        next_cam = 0.0
        # The ROS time the physics state stands for. Each loop steps the physics (0.1 ms a step) up to the
        # ROS clock, each step with the controller's setpoint of its own time. After a slow iteration
        # (rendering, a busy host) the arm is where a real arm would be: skipping time made the setpoint
        # jump ahead of the arm. Only past 0.2 s behind is the lost time skipped.
        # One joint state per iteration, the state just reached, stamped with its physics time — what a
        # real driver does after a late cycle: it reports where the arm is now, it does not replay the
        # samples it missed. Replaying them (one publish per catch-up step) cost more than the physics, so
        # on a busy host the catch-up itself fell further behind: iterations of 40+ steps took 0.2-0.3 s,
        # the samples reached the safety node over 0.25 s old (max_joint_state_age) and it latched
        # joint_state_stale / joint_state_stall. (Catch-up samples stamped with the wall clock a fraction of
        # dt apart implied speeds several times the real one: the stamp stays the physics time.)
        t_physics = self.now()
        while not self._stop.is_set() and self.context.ok():   # ends with rclpy shutdown too
            if self._reset_request.is_set():
                self._new_episode()
                self._reset_request.clear()
                self._ready.set()
                t_physics = self.now()
            behind = self.now() - t_physics
            if behind > 0.2:
                t_physics += behind - dt   # fell far behind (slow machine): skip, do not catch up
                behind = dt
            steps = max(1, int(behind / dt))
            for _ in range(steps):
                with self.lock:
                    if self.expert is not None:
                        target = self.expert.command(t_physics - self.episode_start)
                    else:
                        target = self.follower.setpoint(t_physics)
                self.sim.set_targets(target)
                self.sim.step(dt)
                t_physics += dt
            stamp = sec_to_stamp(t_physics)
            self.js_pub.publish(JointState(header=Header(stamp=stamp), name=ARM_JOINTS,
                                           position=self.sim.joint_positions().tolist(),
                                           velocity=self.sim.joint_velocities().tolist()))
            if self.expert is not None:
                self.leader_pub.publish(JointState(header=Header(stamp=stamp), name=ARM_JOINTS,
                                                   position=target.tolist()))
            if time.monotonic() >= next_cam:
                next_cam = time.monotonic() + cam_period
                if self._frame_due.is_set():
                    self.frames_dropped += 1   # the last frame is still rendering: a busy host drops this one
                else:   # the camera thread is idle: the buffer is free
                    self._frame_data = self.sim.snapshot(self._frame_data)
                    self._frame = (self._frame_data, stamp)
                    self._frame_due.set()
            with self.lock:
                retarget, self._retarget = self._retarget, None
            if retarget is not None and retarget != self.sim.task:
                self.sim.set_task(retarget)
                self.closest = ClosestApproach(self.sim)
                self.get_logger().info(f"instruction changed: the success check follows {retarget.instruction!r}")
            self.closest.update()
            wrong = ",".join(self.sim.wrong_objects())
            if wrong != self.wrong:
                self.wrong = wrong
                self.wrong_pub.publish(String(data=wrong))
            success = self.sim.success()
            if not self.episode_task_succeeded:
                self.episode_task_succeeded = bool(success if self.sim.task == self.episode_task else
                                                   self.sim.success(self.episode_task))
            if success != self.success:
                self.success = success
                if success and self.succeeded_at is None:
                    self.succeeded_at = self.now() - self.episode_start
                self.success_pub.publish(Bool(data=success))
            delay = t_physics - self.now()   # the next step is due when the ROS clock reaches it
            if delay > 0:
                time.sleep(delay)

    def _publish_diagnostics(self) -> None:
        if self.sim is None:
            return
        values = {"episode": self.episode, "task": self.sim.task.name, "cube": self.sim.task.cube,
                  "instruction": self.sim.task.instruction, "success": self.success,
                  "wrong_objects": ",".join(self.sim.wrong_objects()), "sim_time": f"{self.sim.time:.2f}",
                  "camera_frames_dropped": self.frames_dropped,
                  **(self.closest.summary() if self.closest else {})}
        self.diag_pub.publish(diagnostic_array(sec_to_stamp(self.now()), "twinbrain: sim_arm", self.get_name(),
                                               "ok", "success" if self.success else "running", values))

    def destroy_node(self):
        self._stop.set()
        for thread in (getattr(self, "thread", None), getattr(self, "camera_thread", None)):
            if thread is not None and thread.is_alive():
                thread.join(timeout=5.0)
        return super().destroy_node()


def main(args=None):
    from .spin import run_node
    run_node(SimArmNode, args)


if __name__ == "__main__":
    main()
