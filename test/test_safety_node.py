"""safety_node under a safety reviewer's faults, with real rclpy and an arm behind a JTC-like follower:
the scenarios of `twinbrain-bench safety`, each asserted. Before this, a tracking error re-seeded the
output (steps of 0.5-2.5 rad in one tick), a release while moving was a dead stop, bad feedback was only
logged, commands were single points, end-effector targets passed straight through and one-shot trips
from fresh publishers were lost."""

import numpy as np
import pytest

from twinbrain_ros.bench import safety as bench

NO_VIOLATIONS = {"position": 0, "velocity": 0, "acceleration": 0}


def _held_by(result, fault):
    assert result["violations"] == NO_VIOLATIONS, result
    assert fault in result["faults"], result
    assert result["counters"][fault] == 1 and result["counters"].get("restart", 0) == 0, result
    assert result["counters"]["fault_active"] > 0, "commands after the fault must be refused"


def test_perfect_arm_tracks_within_limits():
    result = bench.SCENARIOS["perfect"]()
    assert result["violations"] == NO_VIOLATIONS and not result["faults"] and result["outputs"] > 100


@pytest.mark.parametrize("scenario, fault", [("encoder_glitch", "joint_state_jump"), ("stall", "joint_state_stall"),
                                             ("late_states", "joint_state_stale"), ("lagging_arm", "tracking_error")])
def test_feedback_faults_hold_without_a_jump(scenario, fault):
    _held_by(bench.SCENARIOS[scenario](), fault)


def test_blocked_arm_holds_instead_of_pushing_back_and_forth():
    result = bench.SCENARIOS["blocked_arm"]()
    _held_by(result, "tracking_error")
    # the output stops within the tracking bound plus its stopping distance of the obstacle, once
    assert 0.0 < result["output_past_obstacle_rad"] <= 0.5 + 0.25, result


def test_a_stall_before_the_first_command_starts_over_instead_of_latching():
    """Two fresh clones failed test_sim_graph's first test this way: the sim's joint states paused 0.25 s
    while the policy loaded its model, the node latched joint_state_stall, and nobody released it. Before
    any command nothing moves: the node waits for the arm at rest again, as at start-up. After a command
    a stall still latches (test_feedback_faults_hold_without_a_jump)."""
    result = bench.SCENARIOS["startup_stall"]()
    assert result["waited_for_rest"] and result["started_again"], result
    # one start-over for the freeze; any other stall a starved host adds before the first command starts over too
    assert not result["faults"] and result["start_overs_in_freeze"] == 1, result
    assert result["counters"]["joint_state_stall"] >= 1 and result["counters"]["start_over"] >= 1, result
    assert result["violations"] == NO_VIOLATIONS and result["outputs"] > 50, result


def test_release_while_moving_is_a_counted_noop():
    result = bench.SCENARIOS["release_while_moving"]()
    assert not result["latched_before_release"], result
    assert result["violations"] == NO_VIOLATIONS, result
    assert result["release_success"] is False and result["counters"]["release_noop"] == 1
    assert "restart" not in result["counters"]


def test_trip_release_races_stay_within_limits():
    result = bench.SCENARIOS["trip_release_race"]()
    assert result["violations"] == NO_VIOLATIONS, result
    assert result["counters"]["estop"] >= 5 and result["counters"]["release_refused"] >= 1, result
    # each granted release either resumed from the held output (the arm is there, up to a sample taken a tick
    # before the stop) or restarted from a measurement that differs
    assert result["releases_granted"] == result["counters"].get("restart", 0) + result["counters"]["resume"], result


def test_one_shot_trips_from_fresh_publishers_all_latch():
    result = bench.fresh_publisher_trips(trials=10)
    assert result["latched"] == result["trials"], result


def test_command_flood_keeps_output_within_limits():
    result = bench.flood(seconds=2.0)
    assert result["violations"] == NO_VIOLATIONS and result["flood_commands"] > 1000, result
    assert result["tick_error_p99_ms_per_second"], "no tick-error figure on /diagnostics"


def test_sigkill_leaves_the_controller_a_stop_within_limits():
    result = bench.SCENARIOS["sigkill"]()
    assert result["stop_points"] > 2, result
    assert result["violations"] == NO_VIOLATIONS, result
    assert result["speed_at_kill_of_limit"] > 0.3, "the arm was not moving when the node died"
    assert result["stop_velocity_violations"] == 0 and result["stop_acceleration_violations"] == 0, result
    assert result["at_rest_after_kill"] and result["stop_points"] > 2, result


def test_end_effector_jumps_are_limited():
    result = bench.end_effector_jumps()
    assert result["outputs"] > 50 and result["counters"]["workspace"] > 0, result
    assert result["violations"] == {"workspace": 0, "velocity": 0, "acceleration": 0, "angular_velocity": 0}, result
    assert result["max_step_m"] <= 0.25 * bench.DT + 1e-9


def test_violation_counter_sees_a_jump():
    """The oracle itself: a 0.5 rad step in one tick is counted."""
    rows = np.zeros((4, len(bench.JOINTS)))
    rows[2:, 0] = 0.5
    assert bench.violations(rows)["velocity"] == 1 and bench.violations(rows)["acceleration"] == 2


def test_dry_run_heartbeat_and_a_restarted_node_relatches_the_last_trip():
    from std_msgs.msg import Bool
    from trajectory_msgs.msg import JointTrajectory

    from twinbrain_ros.nodes.qos import LATCHED
    from twinbrain_ros.nodes.safety_node import SafetyNode

    rig = bench.Rig({"dry_run": True, "estop_heartbeat_timeout": 0.3})
    graph = rig.graph
    try:
        dry = graph.record(JointTrajectory, "/safety_node/dry_run/joint_trajectory")
        beat = graph.io.create_publisher(Bool, "/safety_node/heartbeat", 10)
        assert graph.wait_for(lambda: rig.node.limiter.estopped, 20.0), "a silent heartbeat must trip the e-stop"
        timer = graph.io.create_timer(0.05, lambda: beat.publish(Bool(data=True)))
        assert graph.wait_for(lambda: rig.release()[0], 20.0, poll=0.1)
        stream = bench.CommandStream(graph).start()
        assert graph.wait_for(lambda: dry.count() > 50, 20.0), "dry run publishes on ~/dry_run/joint_trajectory"
        assert rig.outputs.count() == 0, "dry run must never reach the controller topic"
        assert bench.violations([m.points[0].positions for m in dry.messages]) == NO_VIOLATIONS
        graph.io.destroy_timer(timer)      # the e-stop device goes quiet: trip
        assert graph.wait_for(lambda: rig.node.limiter.estopped, 20.0)
        stream.stop()

        # a trip on the latched topic, then the node restarts: the new node latches it at once (fail-safe)
        trip = graph.io.create_publisher(Bool, "/safety_node/estop", LATCHED)
        trip.publish(Bool(data=True))
        graph.remove(rig.node)
        rig.node = graph.add(SafetyNode(context=graph.context))
        assert graph.wait_for(lambda: rig.node.limiter.estopped, 20.0), "a restarted node must re-latch the last trip"
    finally:
        rig.close()


def test_two_robots_in_two_namespaces_never_cross_talk():
    """One ROS domain, two safety nodes under /robot1 and /robot2 with the same config (its /**/safety_node
    keys apply under any namespace): each is commanded and e-stopped on its own."""
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory

    from twinbrain_ros.nodes.safety_params import PARAMS
    r1, r2 = bench.Rig(namespace="robot1"), bench.Rig(namespace="robot2")
    try:
        limits = {p.name: r1.node.p[p.name] for p in PARAMS}
        assert limits["position_margin"][0] == 0.01 and limits["workspace_max"] == [0.8, 0.8, 1.2]   # the YAML's
        stray = r1.graph.record(JointTrajectory, "/arm_controller/joint_trajectory")   # the un-namespaced topic
        s1 = bench.CommandStream(r1.graph, namespace="robot1").start()
        assert r1.graph.wait_for(lambda: r1.outputs.count() > 50, 20.0), (
            r1.outputs.count(), s1.sent, dict(r1.node.limiter.counters), r1.node.limiter.initialized)
        assert r2.outputs.count() == 0, "robot2 moved on robot1's commands"
        r2.graph.call(Trigger, "/robot2/safety_node/estop")
        assert r2.node.limiter.estopped and not r1.node.limiter.estopped
        n = r1.outputs.count()
        assert r1.graph.wait_for(lambda: r1.outputs.count() > n + 20, 20.0), "robot1 stopped on robot2's e-stop"
        s1.stop()
        assert stray.count() == 0
        # the CLI reaches a namespaced robot: `twinbrain-ros --namespace robot2 release`, then robot1's e-stop
        import os
        import subprocess
        import sys
        cli = [sys.executable, "-m", "twinbrain_ros.cli"]
        run = lambda *a: subprocess.run(cli + list(a), env=dict(os.environ), capture_output=True, text=True,  # noqa: E731
                                        timeout=60)
        assert run("--namespace", "robot2", "release").returncode == 0 and not r2.node.limiter.estopped
        assert run("--namespace", "robot1", "estop").returncode == 0
        assert r1.graph.wait_for(lambda: r1.node.limiter.estopped, 20.0) and not r2.node.limiter.estopped
    finally:
        r1.close()
        r2.close()


def test_lifecycle_no_motion_before_activate_deactivate_holds_cleanup_frees():
    from rclpy.lifecycle import TransitionCallbackReturn as Result

    rig = bench.Rig({"autostart": False}, wait_for_start=False)
    graph = rig.graph
    node = rig.node
    try:
        assert not hasattr(node, "limiter") and node.control is None      # unconfigured: nothing built
        assert node.trigger_configure() == Result.SUCCESS
        assert graph.wait_for(lambda: node.limiter.initialized, 20.0)
        stream = bench.CommandStream(graph).start()
        import time
        time.sleep(0.5)
        assert rig.outputs.count() == 0 and node.limiter.counters["inactive"] > 0, "motion before activate"
        assert node.trigger_activate() == Result.SUCCESS
        assert graph.wait_for(lambda: rig.outputs.count() > 30, 20.0)
        assert node.trigger_deactivate() == Result.SUCCESS      # while moving: decelerate within limits, hold
        assert graph.wait_for(lambda: node.limiter.output_at_rest, 20.0)
        time.sleep(0.1)                                      # the standstill sample goes out once
        n = rig.outputs.count()
        time.sleep(0.3)
        assert rig.outputs.count() == n, "a deactivated node kept commanding"
        assert bench.violations(rig.positions()) == NO_VIOLATIONS
        assert node.trigger_activate() == Result.SUCCESS
        assert graph.wait_for(lambda: rig.outputs.count() > n + 20, 20.0), "motion did not resume on activate"
        stream.stop()
        assert node.trigger_deactivate() == Result.SUCCESS
        assert graph.wait_for(lambda: node.limiter.output_at_rest, 20.0)
        assert node.trigger_cleanup() == Result.SUCCESS
        assert not node.control.is_alive() and not node._entities
        assert bench.violations(rig.positions()) == NO_VIOLATIONS
    finally:
        rig.close()
