"""The node graph, described once: arm.launch.py and the pip-only runner (`twinbrain-ros up`) both
build their processes from ``nodes()`` and the same layered parameter files (``param_files``), so they
start exactly the same thing."""

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
    acts: bool = False     # commands the arm: not started while recording teleop (the operator drives)
    essential: bool = False   # the graph is unsafe or useless without it: its exit shuts the graph down
    host: str = "robot"       # where it runs when the graph is split across two hosts (gpu | robot)
    split_only: bool = False  # only in a split graph (the robot-side executor of the policy's chunks)


NODES = (
    NodeSpec("sim_arm", "sim_arm", "twinbrain_ros.nodes.sim_arm_node", sim_only=True),
    NodeSpec("policy_node", "policy_node", "twinbrain_ros.nodes.policy_node", acts=True, essential=True, host="gpu"),
    NodeSpec("chunk_runner", "chunk_runner", "twinbrain_ros.nodes.chunk_runner_node", acts=True, essential=True,
             split_only=True),
    NodeSpec("safety_node", "safety_node", "twinbrain_ros.nodes.safety_node", essential=True),
    NodeSpec("recorder_node", "recorder_node", "twinbrain_ros.nodes.recorder_node", record_only=True),
)


HOSTS = ("gpu", "robot")


def nodes(use_sim: bool, record: bool = False, host: str = "") -> list[NodeSpec]:
    """The nodes to start; ``host`` "gpu" or "robot": that host's share of the graph split across two hosts
    (policy_node on the GPU host; the chunk runner, the safety node and the drivers or sim on the robot)."""
    if host and host not in HOSTS:
        raise ValueError(f"host must be one of {HOSTS}, got {host!r}")
    return [n for n in NODES if (use_sim or not n.sim_only) and (record or not n.record_only)
            and not (record and n.acts) and (not host or n.host == host) and (host or not n.split_only)]


def config_dir() -> Path:
    """config/ of the source tree, else the installed share directory."""
    source = Path(__file__).resolve().parent.parent / "config"
    if (source / "defaults.yaml").is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE)) / "config"
    except Exception:   # noqa: BLE001 - ament index absent outside a ROS install
        return source


def defaults_config() -> Path:
    """The package's defaults (node behaviour, topic names): always the first layer."""
    return config_dir() / "defaults.yaml"


def default_config() -> Path:
    """The default robot file: the simulated arm. ``config:=`` / ``--config`` replaces it."""
    return config_dir() / "arm.yaml"


def dds_environment(env) -> dict:
    """Environment variables every node of the graph gets on top of ``env``: config/fastdds.xml, whose
    shared-memory segment carries full camera frames (Fast DDS's default one does not, and best-effort
    640x480 frames are then lost by the quarter). Nothing where the user chose a profile or a transport
    set (the two-host bench forces UDP), or another RMW."""
    rmw = env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    chosen = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")
    if rmw != "rmw_fastrtps_cpp" or any(env.get(k) for k in chosen):
        return {}
    return {"FASTDDS_DEFAULT_PROFILES_FILE": str(config_dir() / "fastdds.xml")}


def two_hosts_config() -> Path:
    """The split graph's layer: what crosses the link and how the robot side judges it (config/two_hosts.yaml)."""
    return config_dir() / "two_hosts.yaml"


def param_files(robot: str | Path | None = None, split: bool = False) -> list[Path]:
    """The parameter files every node gets, in order (later ones win): defaults, the two-host layer when
    the graph is split, then the robot file."""
    return [defaults_config(), *([two_hosts_config()] if split else []),
            Path(robot).expanduser() if robot else default_config()]


def _key(section: str) -> str:
    """YAML section keys as the nodes match them: ``/**`` or ``/**/<node>`` (any namespace)."""
    name = section.split("/")[-1]
    return "/**" if name in ("**", "") else f"/**/{name}"


def load_config(robot: str | Path | None = None, split: bool = False) -> dict:
    """The layered configuration as one dict (sections ``/**`` and ``/**/<node>``), for tools and tests
    that need what the nodes get without running them; ``yaml.safe_dump`` of it is a valid robot file."""
    import yaml

    merged: dict = {}
    for path in param_files(robot, split):
        for section, body in (yaml.safe_load(Path(path).read_text()) or {}).items():
            section_params(merged, section).update((body or {}).get("ros__parameters", {}))
    return merged


def section_params(config: dict, node: str) -> dict:
    """The ``ros__parameters`` of one section (``"/**"`` or a node name), created if missing."""
    return config.setdefault(_key(node), {}).setdefault("ros__parameters", {})


def node_params(config: dict, node: str) -> dict:
    """What a node of that name reads from ``config``: the shared section, then its own."""
    return {**config.get("/**", {}).get("ros__parameters", {}),
            **config.get(_key(node), {}).get("ros__parameters", {})}


def overrides(spec: NodeSpec, checkpoint: str = "", device: str = "", use_sim: bool = False,
              record: bool = False) -> dict:
    """Launch-argument overrides on top of the YAML, per node. Recording in sim: the scripted expert
    drives the arm and plays the leader arm the recorder reads."""
    params: dict = {}
    if spec.name == "sim_arm" and record:
        params["expert"] = True
    if spec.name == "policy_node":
        if checkpoint:
            params["checkpoint"] = checkpoint
        if device:
            params["device"] = device
    return params
