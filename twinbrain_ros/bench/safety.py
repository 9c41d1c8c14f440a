"""`twinbrain-bench safety`: the safety node as a safety reviewer tries it — real rclpy, the layered config,
an arm behind a JTC-like follower (bench/fake_arm.py) that can be perfect, lagging, blocked or glitchy,
feedback faults, release races, a fresh publisher's one-shot trip, a command flood, SIGKILL, and the
end-effector path. Per scenario: commands sent, outputs, violations of the position / velocity /
acceleration limits relative to the previous output, and what latched. One JSON line. The node tests
(test/test_safety_node.py) run the same scenarios and assert on them."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from std_msgs.msg import Bool
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..graph import param_files
from ..nodes.qos import LATCHED
from ..nodes.safety_node import SafetyNode
from ..nodes.safety_params import SafetyConfig
from .fake_arm import FakeArm
from .ros_graph import CONFIG, RosGraph
from .stats import emit

CFG = SafetyConfig.from_config()
LIMITS = CFG.limiter()
JOINTS, DT = LIMITS.names, CFG.period
CONTROLLER = "/arm_controller/joint_trajectory"   # the defaults' relative names, in the root namespace


def violations(rows, lim=LIMITS, dt=DT) -> dict:
    """Counts of outputs outside the position range, and of steps between consecutive outputs that need
    more than the velocity or acceleration limit (1e-6 relative tolerance for float rounding)."""
    q = np.asarray(rows, np.float64).reshape(-1, len(lim.names))
    v = np.diff(q, axis=0) / dt
    a = np.diff(v, axis=0) / dt
    return {"position": int(np.sum((q < lim.lower - 1e-9) | (q > lim.upper + 1e-9))),
            "velocity": int(np.sum(np.abs(v) > lim.vmax * (1 + 1e-6) + 1e-9)),
            "acceleration": int(np.sum(np.abs(a) > lim.amax * (1 + 1e-6) + 1e-6))}


def sweep(t: float, scale: float = 0.7) -> np.ndarray:
    """A command that moves every arm joint at up to ``scale`` x its velocity limit (0.5 Hz sine)."""
    amplitude = scale * LIMITS.vmax / np.pi
    q = amplitude * np.sin(np.pi * t)
    q[-1] = 0.02   # the gripper stays half open
    return q


class CommandStream:
    """A policy-like publisher on its own thread: ``command(t)`` at ``rate`` Hz until stopped."""

    def __init__(self, graph: RosGraph, command=sweep, rate: float = 100.0, topic="/twinbrain/joint_command",
                 namespace: str = ""):
        topic = f"/{namespace}{topic}" if namespace else topic
        self.pub = graph.io.create_publisher(JointTrajectory, topic, 10)
        self.command, self.rate, self.sent = command, rate, 0
        self.running, self.t0 = threading.Event(), None
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self, discovery_timeout: float = 20.0) -> "CommandStream":
        """Starts once the safety node's subscription has matched (on a loaded host discovery can take
        seconds, and commands published before it are lost, not late)."""
        end = time.monotonic() + discovery_timeout
        while self.pub.get_subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.01)
        self.running.set()
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def stop(self) -> None:
        self.running.clear()
        self.thread.join(timeout=2)

    def _loop(self) -> None:
        while self.running.is_set():
            q = self.command(time.monotonic() - self.t0)
            self.pub.publish(JointTrajectory(joint_names=JOINTS, points=[JointTrajectoryPoint(positions=q.tolist())]))
            self.sent += 1
            time.sleep(1.0 / self.rate)


class Rig:
    """A safety node (in process, or a subprocess for SIGKILL) with a FakeArm on the controller topic."""

    def __init__(self, overrides: dict | None = None, lag: float = 0.0, subprocess_node: bool = False,
                 namespace: str = "", wait_for_start: bool = True):
        self.graph = RosGraph()
        self.ns = f"/{namespace}" if namespace else ""
        self.arm = FakeArm(JOINTS, lag=lag)
        self.outputs = self.graph.record(JointTrajectory, self.ns + CONTROLLER)
        self.graph.start_feed(cameras=(), joint_hz=200.0, arm=self.arm, namespace=namespace)
        self.proc = self.node = None
        if subprocess_node:
            files = [a for path in param_files() for a in ("--params-file", str(path))]
            self.proc = subprocess.Popen([sys.executable, "-m", "twinbrain_ros.nodes.safety_node", "--ros-args",
                                          *files],
                                         env=dict(os.environ),
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            params = [Parameter(k, value=v) for k, v in (overrides or {}).items()]
            self.node = self.graph.add(SafetyNode(context=self.graph.context, parameter_overrides=params,
                                                  namespace=namespace))
            # the recorder must have discovered the controller publisher before anything moves (a loaded host
            # can take seconds), or the first outputs go unrecorded
            self.graph.wait_for(lambda: self.graph.io.count_publishers(self.ns + CONTROLLER) > 0, 10.0)
            if wait_for_start and not self.graph.wait_for(lambda: self.node.limiter.initialized, 10.0):
                raise RuntimeError("safety node did not start from the fake arm's joint states")
        for name in ("/safety_node/release", "/safety_node/estop"):
            self.graph.client(Trigger, self.ns + name)

    def positions(self, since: int = 0) -> np.ndarray:
        return np.array([m.points[0].positions for m in self.outputs.messages[since:]])

    def release(self) -> tuple[bool, str]:
        r = self.graph.call(Trigger, self.ns + "/safety_node/release")
        return r.success, r.message

    def result(self, stream: CommandStream | None, **extra) -> dict:
        lim = self.node.limiter if self.node else None
        out = {"commands": stream.sent if stream else 0, "outputs": self.outputs.count(),
               "violations": violations(self.positions()) if self.outputs.count() else violations(np.zeros((0, 7)))}
        if lim is not None:
            out.update(faults=sorted(lim.faults), estop=lim.estopped,
                       counters={k: v for k, v in sorted(lim.counters.items()) if k not in ("limited",)})
        out.update(extra)
        return out

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self.graph.close()


def _run(overrides=None, lag=0.0, seconds=1.0, fault=None, after=1.5, command=sweep, report=None) -> dict:
    """Move for ``seconds``, apply ``fault(rig)``, keep commanding for ``after`` seconds; ``report(rig)``
    adds to the result."""
    rig = Rig(overrides, lag)
    try:
        stream = CommandStream(rig.graph, command).start()
        time.sleep(seconds)
        extra = (fault(rig) or {}) if fault else {}
        time.sleep(after)
        stream.stop()
        rig.graph.wait_for(lambda: rig.node.limiter.output_at_rest, 2.0)
        time.sleep(0.1)
        return rig.result(stream, **extra, **(report(rig) if report else {}))
    finally:
        rig.close()


def glitch(rig):
    rig.arm.glitch(1, 0.7)   # one +0.7 rad sample on joint_2


def stall(rig):
    rig.graph.feed.frozen_joints.set()


def late(rig):
    rig.graph.feed.stamp_delay = 0.4


def reach(t: float) -> np.ndarray:
    """joint_1 towards 1.2 rad at 0.8 rad/s, the rest still."""
    q = np.zeros(len(JOINTS))
    q[0], q[-1] = min(1.2, 0.8 * t), 0.02
    return q


def blocked(rig):
    """joint_1 hits an obstacle where it is: the command runs on, the tracking error grows."""
    rig.arm.blocked[0] = stuck = float(rig.arm.q[0])
    rig.obstacle = stuck


def blocked_result(rig) -> dict:
    if not rig.outputs.count():
        return {"obstacle_rad": rig.obstacle, "output_past_obstacle_rad": None, "restarts": None}
    final = rig.positions()[-1][0]
    return {"obstacle_rad": round(rig.obstacle, 3), "output_past_obstacle_rad": round(float(final - rig.obstacle), 3),
            "restarts": rig.node.limiter.counters["restart"]}


def release_while_moving(rig):
    lim = rig.node.limiter
    latched = sorted(lim.faults) + (["e-stop"] if lim.estopped else [])
    ok, message = rig.release()
    return {"release_success": ok, "release_message": message, "latched_before_release": latched}


def retry_if_starved(scenario, starved, tries: int = 3) -> dict:
    """Runs ``scenario()`` until ``starved(result)`` gives no reason, at most ``tries`` times. A starved
    host (CI's two cores) can pause this process's joint-state feed past joint_state_timeout, or hand the
    fake arm a message after its points were due: the node reacts rightly, but the scenario's premise is
    gone (nothing latched before the release; the last message reaching the follower in time). The result
    lists each discarded attempt's reason; a real fault repeats and fails on the last attempt."""
    discarded = []
    for _ in range(tries):
        result = scenario()
        reason = starved(result)
        if reason is None:
            break
        discarded.append(reason)
    result["discarded_attempts"] = discarded
    return result


def trip_release_race(rig):
    """E-stop and release alternating every 20-60 ms for 2 s, while the policy keeps commanding."""
    rng, granted = np.random.default_rng(0), 0
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        rig.graph.call(Trigger, "/safety_node/estop")
        time.sleep(rng.uniform(0.02, 0.06))
        granted += rig.release()[0]
        time.sleep(rng.uniform(0.02, 0.06))
    rig.release_granted = granted
    return {"releases_granted": granted}


def fresh_publisher_trips(trials: int = 28) -> dict:
    """Each trial: a new reliable + transient_local publisher publishes one True at once, before discovery
    can have completed, and goes away; a release in between. Counts the trips that latched."""
    rig = Rig()
    latched = 0
    try:
        for _ in range(trials):
            node = rig.graph.io
            pub = node.create_publisher(Bool, "/safety_node/estop", LATCHED)
            pub.publish(Bool(data=True))
            latched += rig.graph.wait_for(lambda: rig.node.limiter.estopped, 3.0)
            time.sleep(0.05)   # the arm is at rest: the release restarts from the joint state
            node.destroy_publisher(pub)
            rig.graph.wait_for(lambda: rig.release()[0], 3.0, poll=0.1)
        return {"trials": trials, "latched": latched, "counters": dict(rig.node.limiter.counters)}
    finally:
        rig.close()


FLOODER = """
import sys, time, rclpy
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
rclpy.init()
node = rclpy.create_node("flooder")
pub = node.create_publisher(JointTrajectory, "/twinbrain/joint_command", 10)
names = sys.argv[2].split(",")
msg = JointTrajectory(joint_names=names, points=[JointTrajectoryPoint(positions=[0.0] * (len(names) - 1) + [0.02])])
sent, end = 0, time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    pub.publish(msg)
    sent += 1
print(sent)
"""


def flood(seconds: float = 3.0) -> dict:
    """Another process publishes commands as fast as it can (a runaway node) on top of the policy's
    stream; the safety node runs in its own process, as deployed. Its ticks stay on time (tick-error p99
    per diagnostics period, from /diagnostics) and its output within limits."""
    rig = Rig(subprocess_node=True)
    try:
        diags = rig.graph.record(DiagnosticArray, "/diagnostics")
        stream = CommandStream(rig.graph).start()
        if not rig.graph.wait_for(lambda: rig.outputs.count() > 50, 30.0):
            raise RuntimeError("the safety node subprocess sent nothing")
        start = time.monotonic()
        flooder = subprocess.run([sys.executable, "-c", FLOODER, str(seconds), ",".join(JOINTS)], env=dict(os.environ),
                                 capture_output=True, text=True, timeout=seconds + 30)
        time.sleep(1.1)   # the diagnostics period that ends after the flood
        stream.stop()
        p99 = [float(kv.value) for m in diags.since(start + 1.0) for st in m.status if st.name == "twinbrain: safety"
               for kv in st.values if kv.key == "tick_error_p99_ms"]
        return {"commands": stream.sent, "outputs": rig.outputs.count(), "violations": violations(rig.positions()),
                "flood_commands": int(flooder.stdout.strip() or 0), "flood_seconds": seconds,
                "tick_error_p99_ms_per_second": p99, "tick_error_p99_ms_max": max(p99, default=None)}
    finally:
        rig.close()


def startup_stall() -> dict:
    """The joint states stall for 0.6 s after the start, before any command (a driver or a host starved
    while the policy loads its model): the node goes back to waiting for the arm at rest, starts again
    once they flow, and the commands then move the arm, with no release needed."""
    rig = Rig()
    counters = rig.node.limiter.counters
    try:
        # A starved host can stall the feed by itself (CI saw a 0.34 s gap): such a start-over is also correct,
        # so the scenario reports the one its own freeze caused apart from the totals.
        before = counters["start_over"]
        rig.graph.feed.frozen_joints.set()
        waited = rig.graph.wait_for(lambda: not rig.node.limiter.initialized, 5.0)
        time.sleep(0.6)
        in_freeze = counters["start_over"] - before
        rig.graph.feed.frozen_joints.clear()
        restarted = rig.graph.wait_for(lambda: rig.node.limiter.initialized, 10.0)
        stream = CommandStream(rig.graph).start()
        time.sleep(1.0)
        stream.stop()
        rig.graph.wait_for(lambda: rig.node.limiter.output_at_rest, 2.0)
        time.sleep(0.1)
        return rig.result(stream, waited_for_rest=waited, started_again=restarted, start_overs_in_freeze=in_freeze)
    finally:
        rig.close()


def sigkill() -> dict:
    """The safety node (a subprocess) is killed while the arm moves at speed: the follower executes the
    last message alone. Checks the follower's own trajectory knots: within limits, ending at rest."""
    rig = Rig(subprocess_node=True)
    try:
        stream = CommandStream(rig.graph, lambda t: sweep(t, 0.9)).start()
        if not rig.graph.wait_for(lambda: rig.outputs.count() > 100, 30.0):
            raise RuntimeError("the safety node subprocess sent nothing")
        # the sweep crosses zero at full speed on whole seconds of its own time: kill just after one
        rig.graph.wait_for(lambda: (time.monotonic() - stream.t0) % 1.0 < 0.02, 2.0, poll=0.002)
        rig.proc.send_signal(signal.SIGKILL)
        rig.proc.wait()
        killed_at = time.monotonic()
        time.sleep(0.6)
        stream.stop()
        with rig.arm.lock:
            times, knots = rig.arm.follower._times.copy(), rig.arm.follower._points.copy()
        # knot 0: where the follower was when the last message arrived (on the previous message's path,
        # mid-period); from knot 1 on: the last message's own points on the tick grid
        # (their spacing is DT by construction; differencing epoch-second floats would add ~1e-5 of noise)
        if len(knots) < 3:   # too late to measure a stop: every point but the last was due on arrival
            return {"outputs": rig.outputs.count(), "violations": violations(rig.positions()),
                    "stop_points": len(knots)}
        v = np.diff(knots[1:], axis=0) / DT
        speed_at_kill = np.abs(v[0]) / LIMITS.vmax
        a = np.diff(v, axis=0) / DT
        now = rig.graph.io.get_clock().now().nanoseconds * 1e-9
        return {"outputs": rig.outputs.count(), "violations": violations(rig.positions()),
                "speed_at_kill_of_limit": round(float(speed_at_kill.max()), 3),
                "stop_points": len(knots), "stop_duration_s": round(float(times[-1] - times[0]), 3),
                "stop_velocity_violations": int(np.sum(np.abs(v) > LIMITS.vmax * (1 + 1e-6))),
                "stop_acceleration_violations": int(np.sum(np.abs(a) > LIMITS.amax * (1 + 1e-6) + 1e-6)),
                # how long before its first point the last message reached the follower: the splice onto the
                # previous message is closed in that time (JTC semantics; a late message makes it short)
                "last_message_lead_ms": round(float(times[1] - times[0]) * 1e3, 2),
                "at_rest_after_kill": bool(times[-1] < now and time.monotonic() - killed_at > 0.5)}
    finally:
        rig.close()


def feed_starved(result: dict) -> str | None:
    host = [f for f in result["faults"] if f in ("joint_state_stall", "joint_state_stale")]
    return f"the host latched {host}" if host else None


def sigkill_starved(result: dict) -> str | None:
    if result["stop_points"] < 3:
        return f"the last message reached the follower with {result['stop_points'] - 1} point(s) still ahead"
    if result["speed_at_kill_of_limit"] <= 0.3:   # the node held (a stalled feed latched) before the kill
        return f"the arm moved at {result['speed_at_kill_of_limit']} of its limit when the node died"
    return None


def end_effector_jumps() -> dict:
    """EE mode: pose targets 2.5 m apart every 10 ms, then silence, then one far pose."""
    rig = Rig({"output_mode": "end_effector"})
    graph = rig.graph
    try:
        poses = graph.record(PoseStamped, "/servo_node/pose_target_cmds")
        ee = graph.io.create_publisher(PoseStamped, "/twinbrain/ee_pose", qos_profile_sensor_data)
        cmd = graph.io.create_publisher(PoseStamped, "/twinbrain/pose_command", 10)

        def pose(p, q=(0.0, 0.0, 0.0, 1.0)):
            m = PoseStamped()
            m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in p)
            m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w = q
            return m
        end = time.monotonic() + 5.0
        while not rig.node.pose.initialized and time.monotonic() < end:
            ee.publish(pose([0.3, 0.0, 0.4]))
            time.sleep(0.02)
        sent = 0
        for k in range(100):
            cmd.publish(pose([1.25, 1.25, 1.2] if k % 2 else [-1.25, -1.25, 0.0], (1.0, 0.0, 0.0, 0.0)))
            sent += 1
            time.sleep(0.01)
        time.sleep(1.5)
        cmd.publish(pose([0.8, -0.8, 0.1]))
        sent += 1
        time.sleep(1.0)
        p = np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z] for m in poses.messages])
        q = np.array([[m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w]
                      for m in poses.messages])
        steps = np.linalg.norm(np.diff(p, axis=0), axis=1)
        acc = np.linalg.norm(np.diff(p, 2, axis=0), axis=1) / DT**2
        rates = 2 * np.arccos(np.clip(np.abs(np.sum(q[1:] * q[:-1], axis=1)), 0, 1)) / DT
        box = rig.node.pose.box
        p_cfg = rig.node.p
        return {"commands": sent, "outputs": len(p), "max_step_m": round(float(steps.max(initial=0)), 5),
                "violations": {"workspace": int(np.sum((p < box.minimum - 1e-9) | (p > box.maximum + 1e-9))),
                               "velocity": int(np.sum(steps / DT > p_cfg["max_ee_velocity"] * (1 + 1e-6))),
                               "acceleration": int(np.sum(acc > p_cfg["max_ee_acceleration"] * (1 + 1e-6) + 1e-6)),
                               "angular_velocity": int(np.sum(rates > p_cfg["max_ee_angular_velocity"] * (1 + 1e-6)))},
                "counters": dict(rig.node.pose.counters)}
    finally:
        rig.close()


SCENARIOS = {
    "perfect": lambda: retry_if_starved(lambda: _run(seconds=2.0, after=0.0), feed_starved),
    "encoder_glitch": lambda: _run(fault=glitch),
    "stall": lambda: _run(fault=stall),
    "late_states": lambda: _run(fault=late),
    "lagging_arm": lambda: _run(lag=0.5, command=lambda t: sweep(t, 0.95)),
    "blocked_arm": lambda: _run(fault=blocked, seconds=0.5, after=2.0, command=reach, report=blocked_result),
    "release_while_moving": lambda: retry_if_starved(
        lambda: _run(fault=release_while_moving),
        lambda r: f"the host latched {r['latched_before_release']} first" if r["latched_before_release"] else None),
    "trip_release_race": lambda: _run(fault=trip_release_race, after=0.5),
    "startup_stall": startup_stall,
    "fresh_publisher_trip": fresh_publisher_trips,
    "command_flood": flood,
    "sigkill": lambda: retry_if_starved(sigkill, sigkill_starved),
    "end_effector_jumps": end_effector_jumps,
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="twinbrain-bench safety", description=__doc__)
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset")
    args = p.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    results = {name: SCENARIOS[name]() for name in args.scenarios.split(",")}
    total = sum(sum(r.get("violations", {}).values()) for r in results.values())
    emit({"bench": "safety", "config": str(CONFIG), "total_violations": total, "scenarios": results})


if __name__ == "__main__":
    main()
