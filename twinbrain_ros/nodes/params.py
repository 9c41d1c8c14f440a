"""Parameter declaration for every node: each parameter has a default (or is REQUIRED), a description,
a check and whether it may change at run time, declared up front (ros2_controllers style); all problems
are reported at start-up in one clear error. The same spec resolves values for tools and tests
(``resolve``), so nothing reads the YAML by other rules.

Read-only unless a node says otherwise: the nodes read their parameters once at start-up, so
``ros2 param set`` is refused ("parameter is read-only") instead of succeeding and doing nothing.

Shared robot parameters (joint names and limits) are declared by every node that needs them and set
once in the robot file under ``/**`` (config/arm.yaml for the simulated arm). They are REQUIRED: a
robot file that lacks a limit fails at start-up with the key named, never falls back to a default.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any, Callable

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter

from ..runtime.chunk_executor import INTERPOLATIONS
from ..runtime.joint_limits import JointLimit


class ParameterError(ValueError):
    pass


@dataclass(frozen=True)
class Required:
    """No default: the value must come from a parameter file (``type`` is rclpy's Parameter.Type)."""
    type: Parameter.Type


REQUIRED_FLOATS = Required(Parameter.Type.DOUBLE_ARRAY)
REQUIRED = Required(Parameter.Type.DOUBLE)


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    check: Callable[[Any], str | None] | None = None
    read_only: bool = True


def positive(value) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(value) -> str | None:
    return None if value >= 0 else "must be >= 0"


def all_non_negative(values) -> str | None:
    return None if all(v >= 0 for v in values) else "must all be >= 0"


def one_of(*choices) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"must be one of {list(choices)}"


def non_empty(value) -> str | None:
    return None if len(value) and all(str(v).strip() for v in value) else "must be a non-empty list of names"


ROBOT = [
    Param("joint_names", Required(Parameter.Type.STRING_ARRAY),
          "Controlled joints in action/state order (the gripper is a joint of the arm controller).", non_empty),
    Param("joint_lower", REQUIRED_FLOATS, "Lower position limit per joint (rad or m)."),
    Param("joint_upper", REQUIRED_FLOATS, "Upper position limit per joint (rad or m)."),
    Param("max_velocity", REQUIRED_FLOATS, "Velocity limit per joint (per second)."),
    Param("max_acceleration", REQUIRED_FLOATS, "Acceleration limit per joint (per second squared)."),
    Param("max_jerk", REQUIRED_FLOATS, "Jerk limit per joint; 0 disables it for that joint."),
    Param("control_rate_hz", 100.0, "Rate of setpoints to the controller.", positive),
    Param("robot_description", "", "The robot's URDF (XML). Position and velocity limits the YAML does not set "
          "come from its joints' <limit> (<safety_controller> soft limits where given); the YAML overrides."),
]

# Both nodes that execute chunks (policy_node, chunk_runner_node) interpolate them the same way.
INTERPOLATION = Param("interpolation", "pchip", "Between a chunk's actions: linear (velocity jumps at every "
                      "action) or pchip (monotone cubic: velocity continuous through actions and splices; "
                      "runtime/chunk_executor.py).", one_of(*INTERPOLATIONS))

# Parameters a URDF can stand in for, and how it gives them per joint.
URDF_LIMITS = {"joint_lower": "lower", "joint_upper": "upper", "max_velocity": "velocity"}


def urdf_limits(urdf_xml: str, joint_names: list[str]) -> dict[str, list[float]]:
    """Limits of ``joint_names`` from a URDF (urdfdom_py, the ROS URDF parser); ValueError naming a joint
    the URDF lacks or gives no limit for."""
    from urdf_parser_py.urdf import URDF

    try:
        robot = URDF.from_xml_string(urdf_xml)
    except Exception as exc:   # noqa: BLE001 - the parser raises assorted errors on bad XML
        raise ValueError(f"robot_description is not a readable URDF: {exc}") from None
    joints = {j.name: j for j in robot.joints}
    out: dict[str, list[float]] = {key: [] for key in URDF_LIMITS}
    for name in joint_names:
        joint = joints.get(name)
        if joint is None or joint.limit is None or joint.type == "continuous":
            raise ValueError(f"robot_description: joint {name!r} is missing or has no position limits")
        soft = joint.safety_controller
        lower = soft.soft_lower_limit if soft is not None and soft.soft_lower_limit is not None else joint.limit.lower
        upper = soft.soft_upper_limit if soft is not None and soft.soft_upper_limit is not None else joint.limit.upper
        for key, value in (("joint_lower", lower), ("joint_upper", upper), ("max_velocity", joint.limit.velocity)):
            out[key].append(float(value))
    return out


def _fill_from_urdf(values: dict, missing: list[str]) -> list[str]:
    """Missing URDF-given limits filled from ``robot_description``; returns what is still missing."""
    wanted = [key for key in missing if key in URDF_LIMITS]
    if not (wanted and values.get("robot_description") and values.get("joint_names")):
        return missing
    from_urdf = urdf_limits(values["robot_description"], values["joint_names"])
    for key in wanted:
        values[key] = from_urdf[key]
    return [key for key in missing if key not in wanted]


def _plain(value):
    return list(value) if isinstance(value, (tuple, list, array.array)) else value   # rclpy: array.array


def declare(node, specs: list[Param]) -> dict:
    """Declare ``specs`` on ``node`` and return their values; raise ParameterError listing every problem
    (missing required keys first, by name)."""
    values, missing = {}, []
    for spec in specs:
        descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
        required = isinstance(spec.default, Required)
        node.declare_parameter(spec.name, spec.default.type if required else spec.default, descriptor)
        try:
            values[spec.name] = _plain(node.get_parameter(spec.name).value)
        except ParameterUninitializedException:
            missing.append(spec.name)
    return _finish(specs, values, missing, node.get_name())


def _finish(specs: list[Param], values: dict, missing: list[str], node_name: str) -> dict:
    try:
        missing = _fill_from_urdf(values, missing)
    except ValueError as exc:
        _raise_if([str(exc)], node_name)
    problems = [f"{name}: missing (required, no default: set it in the robot file)" for name in missing]
    _raise_if(problems + _check(specs, values), node_name)
    return values


def resolve(specs: list[Param], given: dict, node_name: str) -> dict:
    """The values a node declaring ``specs`` would get from ``given`` (its YAML parameters), with the
    node's defaults, required keys and checks: for tools and tests."""
    values, missing = {}, []
    for spec in specs:
        if spec.name in given:
            values[spec.name] = _plain(given[spec.name])
        elif isinstance(spec.default, Required):
            missing.append(spec.name)
        else:
            values[spec.name] = spec.default
    return _finish(specs, values, missing, node_name)


def _check(specs: list[Param], values: dict) -> list[str]:
    problems = []
    for spec in specs:
        if spec.check is not None and spec.name in values:
            problem = spec.check(values[spec.name])
            if problem:
                problems.append(f"{spec.name}={values[spec.name]!r}: {problem}")
    return problems


def _raise_if(problems: list[str], node_name: str) -> None:
    if problems:
        raise ParameterError(f"{node_name}: invalid parameters:\n  - " + "\n  - ".join(problems))


def joint_limits(values: dict, node_name: str = "node") -> list[JointLimit]:
    """Build JointLimit objects from the shared robot parameters, checking the arrays line up."""
    names = values["joint_names"]
    problems = []
    for key in ("joint_lower", "joint_upper", "max_velocity", "max_acceleration", "max_jerk"):
        if len(values[key]) != len(names):
            problems.append(f"{key} has {len(values[key])} values for {len(names)} joints {names}")
    if len(set(names)) != len(names):
        problems.append(f"joint_names has duplicates: {names}")
    _raise_if(problems, node_name)
    try:
        return [JointLimit(n, float(lo), float(hi), float(v), float(a), float(j) if j > 0 else None)
                for n, lo, hi, v, a, j in zip(names, values["joint_lower"], values["joint_upper"],
                                              values["max_velocity"], values["max_acceleration"], values["max_jerk"])]
    except ValueError as exc:
        _raise_if([str(exc)], node_name)
