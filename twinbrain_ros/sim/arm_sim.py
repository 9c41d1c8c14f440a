"""The simulated arm (MuJoCo, no ROS): physics, cameras, tasks with randomized cubes, success checks.

Deterministic given a seed. Rendering is offscreen (MUJOCO_GL=egl) with shadows, reflections and
multisampling off, which is what makes 30 Hz x 2 cameras affordable on a laptop CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")
import mujoco  # noqa: E402 - MUJOCO_GL must be set before the import

ASSET = Path(__file__).resolve().parent / "assets" / "arm.xml"
ARM_JOINTS = ["joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper"]
CUBES = ("red", "green", "blue")
HOME = np.array([0.0, -0.3, 1.9, 1.2, 0.0, 0.0, 0.04])   # above the table, gripper open, looking down


@dataclass(frozen=True)
class Task:
    name: str          # pick | push | touch
    cube: str          # red | green | blue
    instruction: str


TASKS = {
    "pick": Task("pick", "red", "pick up the red cube"),
    "push": Task("push", "blue", "push the blue cube to the left"),
    "touch": Task("touch", "green", "touch the green cube"),
}


class ClosestApproach:
    """Where the gripper came closest to the episode's target cube: the first thing to look at when a
    policy fails (did it go to the right place at all? stop above the cube, or beside it?)."""

    def __init__(self, sim: "ArmSim"):
        self.sim, self.tcp, self.cube = sim, None, None

    def update(self) -> None:
        tcp, cube = self.sim.tcp_pos(), self.sim.cube_pos(self.sim.task.cube)
        if self.tcp is None or np.linalg.norm(tcp - cube) < np.linalg.norm(self.tcp - self.cube):
            self.tcp, self.cube = tcp, cube

    def summary(self) -> dict:
        """Horizontal error and height above the cube centre (m) at the closest approach."""
        if self.tcp is None:
            return {}
        return {"closest_xy_m": round(float(np.linalg.norm(self.tcp[:2] - self.cube[:2])), 4),
                "closest_height_m": round(float(self.tcp[2] - self.cube[2]), 4)}


class ArmSim:
    def __init__(self, image_size=(224, 224), cameras=("front", "wrist"), seed: int = 0):
        self.model = mujoco.MjModel.from_xml_path(str(ASSET))
        self.data = mujoco.MjData(self.model)
        self.cameras = list(cameras)
        self.height, self.width = image_size
        self._renderer = None
        self.joint_ids = [self.model.joint(n).id for n in ARM_JOINTS]
        self.qpos_idx = np.array([self.model.jnt_qposadr[j] for j in self.joint_ids])
        self.qvel_idx = np.array([self.model.jnt_dofadr[j] for j in self.joint_ids])
        self.lower = self.model.jnt_range[self.joint_ids, 0].copy()
        self.upper = self.model.jnt_range[self.joint_ids, 1].copy()
        self.tcp = self.model.site("tcp").id
        # the right finger mirrors the left through an equality constraint; it is not a commanded joint
        self.mirror_qpos = self.model.jnt_qposadr[self.model.joint("gripper_mirror").id]
        self.task = TASKS["pick"]
        self.start_cube_pos = {}
        self._unstepped = 0.0   # requested time not yet simulated (less than one physics step)
        self.reset(seed)

    # -- episode ----------------------------------------------------------------------------
    def reset(self, seed: int, task: str | None = None) -> Task:
        """New episode: arm at home, cubes at random non-overlapping poses on the table."""
        rng = np.random.default_rng(seed)
        mujoco.mj_resetData(self.model, self.data)
        self.task = TASKS[task] if task else TASKS[list(TASKS)[rng.integers(len(TASKS))]]
        self.data.qpos[self.qpos_idx] = HOME
        self.data.qpos[self.mirror_qpos] = HOME[6]   # else the constraint drags both fingers shut while settling
        self.data.ctrl[:] = HOME
        placed = []
        for cube in CUBES:
            for _ in range(100):
                xy = np.array([rng.uniform(0.32, 0.48), rng.uniform(-0.16, 0.16)])   # well inside reach
                if all(np.linalg.norm(xy - p) > 0.09 for p in placed):
                    break
            placed.append(xy)
            adr = self.model.jnt_qposadr[self.model.joint(f"{cube}_cube").id]
            yaw = rng.uniform(-0.6, 0.6)
            self.data.qpos[adr:adr + 7] = [xy[0], xy[1], 0.02, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        mujoco.mj_forward(self.model, self.data)
        for _ in range(50):                               # settle contacts
            mujoco.mj_step(self.model, self.data)
        self._unstepped = 0.0
        self.start_cube_pos = {c: self.cube_pos(c).copy() for c in CUBES}
        return self.task

    # -- state / control ----------------------------------------------------------------------
    @property
    def time(self) -> float:
        return float(self.data.time)

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self.qpos_idx].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self.qvel_idx].copy()

    def set_targets(self, q: np.ndarray) -> None:
        self.data.ctrl[:] = np.clip(q, self.lower, self.upper)

    def step(self, seconds: float) -> None:
        """Advance the physics by ``seconds``. A duration that is not a multiple of the 2 ms physics step is
        carried over to the next call, so simulated time keeps pace with the caller's clock: rounding 5 ms
        to two steps made a 200 Hz loop run the arm at 80 % speed."""
        self._unstepped += seconds
        steps = int(self._unstepped / self.model.opt.timestep + 1e-6)
        self._unstepped -= steps * self.model.opt.timestep
        for _ in range(steps):
            mujoco.mj_step(self.model, self.data)

    def cube_pos(self, cube: str) -> np.ndarray:
        return self.data.body(f"{cube}_cube").xpos.copy()

    def tcp_pos(self) -> np.ndarray:
        return self.data.site_xpos[self.tcp].copy()

    def success(self) -> bool:
        cube = self.cube_pos(self.task.cube)
        start = self.start_cube_pos[self.task.cube]
        if self.task.name == "pick":
            return cube[2] > 0.07
        if self.task.name == "push":
            return cube[1] - start[1] > 0.08 and cube[2] < 0.04
        return self.fingers_touch(self.task.cube)   # touch

    def fingers_touch(self, cube: str) -> bool:
        cube_geom = self.model.body(f"{cube}_cube").id
        fingers = {self.model.body("finger_left").id, self.model.body("finger_right").id}
        for contact in self.data.contact[: self.data.ncon]:
            bodies = {self.model.geom_bodyid[contact.geom1], self.model.geom_bodyid[contact.geom2]}
            if cube_geom in bodies and bodies & fingers:
                return True
        return False

    # -- cameras --------------------------------------------------------------------------------
    def snapshot(self, into: mujoco.MjData | None = None) -> mujoco.MjData:
        """A copy of the physics state (``into`` reused when given), to render from on another thread."""
        into = mujoco.MjData(self.model) if into is None else into
        mujoco.mj_copyData(into, self.model, self.data)
        return into

    def render(self, camera: str, data: mujoco.MjData | None = None) -> np.ndarray:
        """``camera``'s image of the current state, or of ``data`` (a snapshot). The renderer (its GL context)
        belongs to the thread that renders first: render, and close, from that thread only."""
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.height, self.width)
        self._renderer.update_scene(self.data if data is None else data, camera)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
