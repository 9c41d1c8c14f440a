"""Scripted expert: inverse kinematics on the MuJoCo model + per-task waypoints.

It plays the teleoperator: ``ScriptedExpert.command(t)`` is the leader-arm joint target at time t
(seconds since the episode start), smooth (cosine-interpolated between waypoints), which the sim node
publishes like a leader arm and the recorder records.
"""

from __future__ import annotations

import numpy as np

from .arm_sim import ArmSim, mujoco
from .tasks import DIRECTIONS

OPEN, CLOSED = 0.04, 0.0
DOWN_YAW0 = np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]], float)   # tool z down, fingers along world y


def _rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def solve_ik(sim: ArmSim, target_pos: np.ndarray, target_rot: np.ndarray, q0: np.ndarray,
             iterations: int = 200, damping: float = 1e-3) -> np.ndarray:
    """Damped least squares on the 6 arm joints for TCP position + orientation (gripper untouched)."""
    model = sim.model
    data = mujoco.MjData(model)
    data.qpos[:] = sim.data.qpos
    q = q0.copy()
    jacp, jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
    dofs = sim.qvel_idx[:6]
    for _ in range(iterations):
        data.qpos[sim.qpos_idx] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        pos = data.site_xpos[sim.tcp]
        rot = data.site_xmat[sim.tcp].reshape(3, 3)
        err_p = target_pos - pos
        err_r_mat = target_rot @ rot.T
        err_r = 0.5 * np.array([err_r_mat[2, 1] - err_r_mat[1, 2], err_r_mat[0, 2] - err_r_mat[2, 0],
                                err_r_mat[1, 0] - err_r_mat[0, 1]])
        err = np.concatenate([err_p, 0.5 * err_r])
        if np.linalg.norm(err_p) < 1e-4 and np.linalg.norm(err_r) < 1e-3:
            break
        mujoco.mj_jacSite(model, data, jacp, jacr, sim.tcp)
        jac = np.vstack([jacp[:, dofs], 0.5 * jacr[:, dofs]])
        dq = jac.T @ np.linalg.solve(jac @ jac.T + damping * np.eye(6), err)
        q[:6] = np.clip(q[:6] + dq, sim.lower[:6], sim.upper[:6])
    return q


class ScriptedExpert:
    def __init__(self, sim: ArmSim, hold: float = 0.5):
        """``hold``: seconds the episode goes on at the final pose. Demonstrations that end the moment the
        task is done teach nothing about what to do after it, and a policy run on past that point drifts."""
        self.sim = sim
        self.waypoints = self._plan()
        self.times = np.cumsum([0.0] + [w[0] for w in self.waypoints[1:]])
        self.duration = float(self.times[-1]) + hold

    def _pose(self, q_seed, pos, yaw, grip):
        rot = _rot_z(yaw) @ DOWN_YAW0
        q = solve_ik(self.sim, np.asarray(pos, float), rot, q_seed)
        q[6] = grip
        return q

    def _plan(self) -> list[tuple[float, np.ndarray]]:
        sim, task = self.sim, self.sim.task
        cube = sim.cube_pos(task.cube)
        quat = sim.data.body(f"{task.cube}_cube").xquat
        yaw = 2 * np.arctan2(quat[3], quat[0])
        yaw = (yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4            # cube symmetry: nearest grasp yaw
        q = sim.joint_positions()
        plan = [(0.0, q.copy())]

        def go(duration, pos, grip, yaw_=yaw):
            plan.append((duration, self._pose(plan[-1][1], pos, yaw_, grip)))

        x, y, z = cube
        if task.name == "pick":
            go(1.5, [x, y, z + 0.12], OPEN)
            go(1.0, [x, y, z + 0.005], OPEN)
            plan.append((0.7, plan[-1][1].copy()))
            plan[-1][1][6] = CLOSED
            go(1.2, [x, y, z + 0.16], CLOSED)
        elif task.name == "push":       # from behind the cube, along +y (left) or -y (right)
            d = DIRECTIONS[task.direction or "left"]
            go(1.5, [x, y - d * 0.09, z + 0.10], CLOSED, 0.0)
            go(1.0, [x, y - d * 0.07, z + 0.0], CLOSED, 0.0)
            go(2.0, [x, y + d * 0.12, z + 0.0], CLOSED, 0.0)
            go(0.8, [x, y + d * 0.12, z + 0.12], CLOSED, 0.0)
        else:   # touch
            go(1.5, [x, y, z + 0.12], CLOSED)
            go(1.2, [x, y, z + 0.034], CLOSED)   # fingertips reach ~2 mm into the cube top
            plan.append((0.8, plan[-1][1].copy()))
        return plan

    def command(self, t: float) -> np.ndarray:
        """Leader-arm joint target at time t: cosine easing between waypoints, held at the end."""
        if t >= self.times[-1]:
            return self.waypoints[-1][1].copy()
        k = int(np.searchsorted(self.times, t, side="right")) - 1
        span = self.times[k + 1] - self.times[k]
        s = 0.5 - 0.5 * np.cos(np.pi * (t - self.times[k]) / span)
        return (1 - s) * self.waypoints[k][1] + s * self.waypoints[k + 1][1]


def run_episode(sim: ArmSim, seed: int, task: str | None = None, control_dt: float = 0.01) -> bool:
    """Reset, let the expert drive the arm directly, return success (used by the bench and tests)."""
    sim.reset(seed, task)
    expert = ScriptedExpert(sim)
    t = 0.0
    while t < expert.duration:
        sim.set_targets(expert.command(t))
        sim.step(control_dt)
        t += control_dt
        if sim.task.name != "pick" and sim.success():
            return True
    return sim.success()
