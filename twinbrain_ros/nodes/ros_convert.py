"""Conversions between ROS messages and the runtime's plain arrays (the only place that knows both)."""

from __future__ import annotations

import array
import math

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import PoseStamped
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..msg import ActionChunk
from ..runtime.images import compressed_to_rgb, image_to_rgb


def stamp_to_sec(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def sec_to_stamp(t: float) -> Time:
    sec = math.floor(t)
    return Time(sec=int(sec), nanosec=min(int(round((t - sec) * 1e9)), 999_999_999))


def sec_to_duration(t: float) -> Duration:
    sec = math.floor(t)
    return Duration(sec=int(sec), nanosec=min(int(round((t - sec) * 1e9)), 999_999_999))


def duration_to_sec(d: Duration) -> float:
    return d.sec + d.nanosec * 1e-9


def image_msg_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage -> RGB uint8 (raises ValueError for bad payloads)."""
    if hasattr(msg, "encoding"):
        return image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data)
    return compressed_to_rgb(msg.format, msg.data)


def joint_trajectory(names, positions_rows, stamp: Time, step_period: float, first_offset: float,
                     velocity_rows=None) -> JointTrajectory:
    """A JointTrajectory whose point k is reached at first_offset + k * step_period after ``stamp``
    (with the velocities of ``velocity_rows`` where given)."""
    msg = JointTrajectory()
    msg.header.stamp = stamp
    msg.joint_names = list(names)
    positions_rows = np.atleast_2d(positions_rows)
    velocity_rows = [None] * len(positions_rows) if velocity_rows is None else np.atleast_2d(velocity_rows)
    for k, (row, vel) in enumerate(zip(positions_rows, velocity_rows)):
        # array.array('d') is taken as is; a list is type-checked element by element (the bulk of the cost)
        point = JointTrajectoryPoint(positions=array.array("d", np.asarray(row, np.float64).tobytes()),
                                     time_from_start=sec_to_duration(first_offset + k * step_period))
        if vel is not None:
            point.velocities = array.array("d", np.asarray(vel, np.float64).tobytes())
        msg.points.append(point)
    return msg


EE_DIMENSIONS = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]


def action_chunk(chunk: np.ndarray, stamp: Time, names, step_period: float, latency: float, instruction: str,
                 frame_id: str = "") -> ActionChunk:
    """An (H, D) chunk as twinbrain_ros/ActionChunk; ``frame_id`` set means end-effector actions."""
    chunk = np.asarray(chunk, np.float64)
    msg = ActionChunk(mode=ActionChunk.MODE_END_EFFECTOR if frame_id else ActionChunk.MODE_JOINT_POSITION,
                      joint_names=list(names), step_period=sec_to_duration(step_period),
                      inference_latency=sec_to_duration(latency), instruction=instruction or "",
                      horizon=chunk.shape[0], action_dim=chunk.shape[1], actions=chunk.reshape(-1).tolist())
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    return msg


def action_chunk_array(msg: ActionChunk) -> np.ndarray:
    return np.asarray(msg.actions, np.float64).reshape(msg.horizon, msg.action_dim)


def euler_to_quaternion(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy)


def pose_stamped(frame: str, stamp: Time, xyz, rpy) -> PoseStamped:
    msg = PoseStamped()
    msg.header.frame_id, msg.header.stamp = frame, stamp
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in xyz)
    q = euler_to_quaternion(*(float(v) for v in rpy))
    msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z, msg.pose.orientation.w = q
    return msg
