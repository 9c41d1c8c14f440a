"""The node graph, described once: arm.launch.py and the pip-only runner (`twinbrain-ros up`) both
build their processes from ``nodes()`` and the same YAML, so they start exactly the same thing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PACKAGE = "twinbrain_ros"


@dataclass(frozen=True)
class NodeSpec:
    name: str          # node name (matches the YAML section)
    executable: str    # console script installed by setup.py (ros2 run / launch_ros)
    module: str        # python -m target (pip-only runner)
    sim_only: bool = False
    record_only: bool = False


NODES = (
    NodeSpec("sim_arm", "sim_arm", "twinbrain_ros.nodes.sim_arm_node", sim_only=True),
    NodeSpec("policy_node", "policy_node", "twinbrain_ros.nodes.policy_node"),
    NodeSpec("safety_node", "safety_node", "twinbrain_ros.nodes.safety_node"),
    NodeSpec("recorder_node", "recorder_node", "twinbrain_ros.nodes.recorder_node", record_only=True),
)


def nodes(use_sim: bool, record: bool = False) -> list[NodeSpec]:
    return [n for n in NODES if (use_sim or not n.sim_only) and (record or not n.record_only)]


def default_config() -> Path:
    """config/arm.yaml from the source tree, else from the installed share directory."""
    source = Path(__file__).resolve().parent.parent / "config" / "arm.yaml"
    if source.is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE)) / "config" / "arm.yaml"
    except Exception:   # noqa: BLE001 - ament index absent outside a ROS install
        return source


def overrides(spec: NodeSpec, checkpoint: str = "", device: str = "", use_sim: bool = False) -> dict:
    """Launch-argument overrides on top of the YAML, per node."""
    params: dict = {}
    if spec.name == "policy_node":
        if checkpoint:
            params["checkpoint"] = checkpoint
        if device:
            params["device"] = device
    return params
