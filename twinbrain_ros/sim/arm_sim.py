"""The simulated arm (MuJoCo, no ROS): physics, cameras, three randomized cubes, the success check of the
task the instruction names (sim/tasks.py) and whether another cube was touched or moved.

Deterministic given a seed. Rendering is offscreen (MUJOCO_GL=egl) with shadows, reflections and
multisampling off, which is what makes 30 Hz x 2 cameras affordable on a laptop CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")
import mujoco  # noqa: E402 - MUJOCO_GL must be set before the import

ASSET = Path(__file__).resolve().parent / "assets" / "arm.xml"
from .tasks import COLOURS as CUBES  # noqa: E402
from .tasks import DIRECTIONS, SINGLE, Task, draw  # noqa: E402

ARM_JOINTS = ["joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper"]
MOVED_M = 0.02      # a cube displaced this far from where the episode put it was moved
HOME = np.array([0.0, -0.3, 1.9, 1.2, 0.0, 0.0, 0.04])   # above the table, gripper open, looking down


TASKS = {verb: draw(verb, np.random.default_rng(0)) for verb in SINGLE}   # the single tasks, by verb


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
        # ids looked up once: contacts are checked after every physics step
        self._finger_bodies = np.array([self.model.body(n).id for n in ("finger_left", "finger_right")])
        self._cube_bodies = {self.model.body(f"{c}_cube").id: c for c in CUBES}
        # the right finger mirrors the left through an equality constraint; it is not a commanded joint
        self.mirror_qpos = self.model.jnt_qposadr[self.model.joint("gripper_mirror").id]
        self.task = TASKS["pick"]
        self.start_cube_pos = {}
        self.touched: set[str] = set()      # cubes the fingers have touched this episode
        self._unstepped = 0.0   # requested time not yet simulated (less than one physics step)
        self.reset(seed)

    # -- episode ----------------------------------------------------------------------------
    def reset(self, seed: int, task: str | None = None, start_spread: float = 0.0,
              start: np.ndarray | None = None, cube: str | None = None) -> Task:
        """New episode: arm at home, the three cubes at random non-overlapping poses on the table, the task
        drawn for ``task`` (a spec of sim/tasks.py; None: the mixture) from the same seed.
        ``start_spread`` > 0: the arm joints start up to that many radians from home (uniform, its own
        random stream, so a seed's scene is the same with or without it) - demonstrations from many
        starts teach a policy to work from wherever the robot happens to be. ``start``: the arm joints
        start there instead of home (e.g. where the last episode ended: a robot nobody re-homes; the
        spread then applies around it); the gripper still opens. ``cube``: name this cube instead of
        the drawn one; a touch scene is then the same as the seed's with any cube named."""
        rng = np.random.default_rng(seed)
        mujoco.mj_resetData(self.model, self.data)
        self.task = draw(task or "mixture", rng)
        if cube is not None:
            if cube not in CUBES:
                raise ValueError(f"cube {cube!r}: expected one of {', '.join(CUBES)}")
            self.task = self.task.with_cube(cube)
        start = HOME.copy() if start is None else np.concatenate(
            [np.clip(np.asarray(start, float)[:6], self.lower[:6], self.upper[:6]), HOME[6:]])
        if start_spread > 0:
            offset = np.random.default_rng([seed, 1]).uniform(-start_spread, start_spread, 6)
            start[:6] = np.clip(start[:6] + offset, self.lower[:6], self.upper[:6])
        self.data.qpos[self.qpos_idx] = start
        self.data.qpos[self.mirror_qpos] = start[6]   # else the constraint drags both fingers shut while settling
        self.data.ctrl[:] = start
        placed = {}
        for cube in CUBES:
            for _ in range(100):
                xy = np.array([rng.uniform(0.32, 0.48), rng.uniform(-0.16, 0.16)])   # well inside reach
                if all(np.linalg.norm(xy - p) > 0.09 and self._clear_of_push(cube, xy, other, p)
                       for other, p in placed.items()):
                    break
            placed[cube] = xy
            adr = self.model.jnt_qposadr[self.model.joint(f"{cube}_cube").id]
            yaw = rng.uniform(-0.6, 0.6)
            self.data.qpos[adr:adr + 7] = [xy[0], xy[1], 0.02, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        mujoco.mj_forward(self.model, self.data)
        for _ in range(50):                               # settle contacts
            mujoco.mj_step(self.model, self.data)
        self._unstepped = 0.0
        self.start_cube_pos = {c: self.cube_pos(c).copy() for c in CUBES}
        self.touched = set()
        return self.task

    def _clear_of_push(self, cube: str, xy: np.ndarray, other: str, other_xy: np.ndarray) -> bool:
        """A push task keeps the other cubes out of its cube's path (from the pusher's start behind it to
        where it ends), so the demonstrations never shove a second cube along."""
        task = self.task
        if task.name != "push" or task.cube not in (cube, other):
            return True
        target, rest = (xy, other_xy) if task.cube == cube else (other_xy, xy)
        along = DIRECTIONS[task.direction or "left"] * (rest[1] - target[1])
        return abs(rest[0] - target[0]) > 0.075 or not -0.13 < along < 0.26

    def set_task(self, task: Task) -> None:
        """Another instruction for the scene as it is (the operator changed their mind): the success check
        follows it."""
        self.task = task

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
            if self.data.ncon:
                self.touched |= self._cubes_in_finger_contact()

    def cube_pos(self, cube: str) -> np.ndarray:
        return self.data.body(f"{cube}_cube").xpos.copy()

    def tcp_pos(self) -> np.ndarray:
        return self.data.site_xpos[self.tcp].copy()

    def success(self, task: Task | None = None) -> bool:
        """Whether ``task`` (default: the episode's) is done: its cube lifted, pushed 8 cm its way, or touched."""
        task = task or self.task
        cube = self.cube_pos(task.cube)
        start = self.start_cube_pos[task.cube]
        if task.name == "pick":
            return bool(cube[2] > 0.07)
        if task.name == "push":
            return bool(DIRECTIONS[task.direction or "left"] * (cube[1] - start[1]) > 0.08 and cube[2] < 0.04)
        return self.fingers_touch(task.cube)   # touch

    def fingers_touch(self, cube: str) -> bool:
        return cube in self._cubes_in_finger_contact()

    def _cubes_in_finger_contact(self) -> set[str]:
        ncon = self.data.ncon
        if not ncon:
            return set()
        bodies = self.model.geom_bodyid[np.stack([self.data.contact.geom1[:ncon], self.data.contact.geom2[:ncon]])]
        finger = np.isin(bodies, self._finger_bodies)
        pairs = bodies[::-1][finger]            # the body each finger contact touches
        return {cube for body, cube in self._cube_bodies.items() if (pairs == body).any()}

    def wrong_objects(self, task: Task | None = None) -> list[str]:
        """Cubes other than ``task``'s (default: the episode's) that the fingers touched or that moved."""
        target = (task or self.task).cube
        moved = {c for c in CUBES if np.linalg.norm(self.cube_pos(c) - self.start_cube_pos[c]) > MOVED_M}
        return sorted((self.touched | moved) - {target})

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
