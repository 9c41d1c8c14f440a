"""A rosbag2 recording of scripted-expert sim episodes, written with ``rosbags`` (no ROS install):
what a lab's ``ros2 bag record`` of the arm would hold, for testing and trying ``twinbrain-record bag``.

Topics: two cameras at ``camera_fps`` (sensor_msgs/Image rgb8, or CompressedImage JPEG with
``compressed``), /joint_states and the leader arm's /leader/joint_states at 100 Hz, the instruction
once per episode (std_msgs/String) and an /episode marker (std_msgs/String) at each episode start.
Stamps are sim time from 1000 s; the bag's receive times are a wall clock 1.7e9 s later, plus a
transport delay, as when a bag is recorded from a sim running with ``use_sim_time``. Faults a real
recording has: ``jitter`` (s) on camera stamps, and camera frames dropped by index (``drop``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .arm_sim import ARM_JOINTS, ArmSim
from .expert import ScriptedExpert

SIM_START = 1000.0
WALL_OFFSET = 1.7e9
TOPICS = {"front": "/camera/front/image_raw", "wrist": "/camera/wrist/image_raw"}


def write_sim_bag(path: str | Path, episodes: int = 1, storage: str = "mcap", camera_fps: int = 30,
                  image_size=(64, 64), compressed: bool = False, jitter: float = 0.0, drop: tuple = (),
                  task: str | None = "touch", first_seed: int = 0, gap: float = 2.0) -> dict:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    rng = np.random.default_rng(first_seed)
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    suffix = "/compressed" if compressed else ""
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"

    def header(t):
        sec = int(np.floor(t))
        return Header(stamp=Time(sec=sec, nanosec=int((t - sec) * 1e9)), frame_id="")

    def joint_state(t, q):
        return T["sensor_msgs/msg/JointState"](header=header(t), name=list(ARM_JOINTS),
                                               position=np.asarray(q, np.float64), velocity=np.zeros(0),
                                               effort=np.zeros(0))

    def image(t, rgb, camera):
        if compressed:
            ok, jpeg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            return T[image_type](header=header(t), format="rgb8; jpeg compressed bgr8", data=jpeg.ravel())
        h, w, _ = rgb.shape
        return T[image_type](header=header(t), height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                             data=np.ascontiguousarray(rgb).ravel())

    sim = ArmSim(image_size=tuple(image_size))
    frames, dropped = 0, 0
    t0 = SIM_START
    with Writer(Path(path), version=8, storage_plugin=plugin) as writer:
        conns = {name: writer.add_connection(topic + suffix, image_type, typestore=ts)
                 for name, topic in TOPICS.items()}
        conns["joints"] = writer.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=ts)
        conns["leader"] = writer.add_connection("/leader/joint_states", "sensor_msgs/msg/JointState", typestore=ts)
        conns["instruction"] = writer.add_connection("/instruction", "std_msgs/msg/String", typestore=ts)
        conns["episode"] = writer.add_connection("/episode", "std_msgs/msg/String", typestore=ts)

        def write(conn, t, msg, delay=0.002):
            writer.write(conns[conn], int((t + WALL_OFFSET + delay) * 1e9), ts.serialize_cdr(msg, msg.__msgtype__))

        for e in range(episodes):
            sim.reset(first_seed + e, task)
            expert = ScriptedExpert(sim)
            write("episode", t0, T["std_msgs/msg/String"](data=f"episode {e}"), 0.0)
            write("instruction", t0, T["std_msgs/msg/String"](data=sim.task.instruction), 0.0005)
            dt, next_frame, t = 0.01, 0.0, 0.0
            while t < expert.duration:
                command = expert.command(t)
                write("leader", t0 + t, joint_state(t0 + t, command))
                write("joints", t0 + t, joint_state(t0 + t, sim.joint_positions()))
                if t >= next_frame - 1e-9:
                    stamp = t0 + t + (rng.uniform(-jitter, jitter) if jitter else 0.0)
                    for cam in TOPICS:
                        if frames in drop:
                            continue
                        write(cam, stamp, image(stamp, sim.render(cam), cam), 0.01)
                    dropped += frames in drop
                    frames += 1
                    next_frame += 1.0 / camera_fps
                sim.set_targets(command)
                sim.step(dt)
                t += dt
            t0 += t + gap
    sim.close()
    return {"bag": str(path), "episodes": episodes, "camera_frames": frames, "dropped_frames": dropped}
