"""The graph split across two hosts — policy_node on "gpu", sim_arm + chunk_runner + safety_node on
"robot", two network namespaces joined by a faulty link (bench/netns.py) — under a 100 ms (± 20 ms) delay
and a 2 s partition: no limit violation, no setpoint from a chunk older than max_chunk_age, the arm brought
to rest while the link is cut, and motion again after it. The same run as `twinbrain-bench two-hosts
--conditions delay_100ms,partition_2s`, asserted. Skipped only where namespaces cannot be created."""

import os

import pytest

from twinbrain_ros.bench import two_hosts as bench
from twinbrain_ros.bench.netns import NamespacesUnavailable, TwoHosts

NO_VIOLATIONS = {"position": 0, "velocity": 0, "acceleration": 0}


@pytest.fixture
def namespaces():
    try:
        with TwoHosts(tag=f"t{os.getpid() % 100000}"):
            pass
    except NamespacesUnavailable as exc:
        pytest.skip(f"network namespaces cannot be created here: {exc}")


def test_split_graph_under_delay_and_partition(namespaces, tmp_path):
    result = bench.run(["delay_100ms", "partition_2s"], seconds=4.0, settle=3.0, workdir=tmp_path)
    delay, cut = result["conditions"]["delay_100ms"], result["conditions"]["partition_2s"]
    for name, r in result["conditions"].items():
        assert r["violations"] == NO_VIOLATIONS, (name, r)
        assert r["stale_setpoints"] == 0, (name, r)
        # the robot side's own feedback never crosses the link: no fault may hold the arm in either window
        # (a fault hold also stops the arm, but it refuses every setpoint and hides the watchdog)
        si = r["safety_interventions"]
        assert si["fault_latches"] == 0 and not si["held_by_fault_at_start"], (name, si)
    assert delay["setpoints"] > 0 and delay["chunks_per_s"]["arrived_at_robot"] > 0, delay
    # the chunks were executed, not just sent: without this, "0 violations" held for a safety node that
    # refused every setpoint (a joint-state fault latched on the robot side holds the arm through the window)
    assert delay["outputs"] > 0, delay["safety_interventions"]
    assert delay["safety_interventions"]["rejected_commands"] == 0, delay["safety_interventions"]
    assert delay["link_MBps"]["robot->gpu"] > 0, "the cameras did not cross the link"
    p = cut["partition"]
    info = (p, cut["safety_interventions"])
    assert p["setpoints_while_cut_after_bound"] == 0, info   # the runner stopped: nothing fresh to execute
    # the watchdog is the hold the cut must cause (a latched fault holds without arming it: excluded above)
    assert p["watchdog_active_while_cut"] and p["at_rest_before_link_back"], info
    assert p["resumed"] and p["outputs_after_link_back"] > 0, info   # streaming again, and the arm follows
