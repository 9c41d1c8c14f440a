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
]


def _plain(value):
    return list(value) if isinstance(value, (tuple, list, array.array)) else value   # rclpy: array.array


def declare(node, specs: list[Param]) -> dict:
    """Declare ``specs`` on ``node`` and return their values; raise ParameterError listing every problem
    (missing required keys first, by name)."""
    values, problems = {}, []
    for spec in specs:
        descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
        required = isinstance(spec.default, Required)
        node.declare_parameter(spec.name, spec.default.type if required else spec.default, descriptor)
        try:
            values[spec.name] = _plain(node.get_parameter(spec.name).value)
        except ParameterUninitializedException:
            problems.append(f"{spec.name}: missing (required, no default: set it in the robot file)")
    problems += _check(specs, values)
    _raise_if(problems, node.get_name())
    return values


def resolve(specs: list[Param], given: dict, node_name: str) -> dict:
    """The values a node declaring ``specs`` would get from ``given`` (its YAML parameters), with the
    node's defaults, required keys and checks: for tools and tests."""
    values, problems = {}, []
    for spec in specs:
        if spec.name in given:
            values[spec.name] = _plain(given[spec.name])
        elif isinstance(spec.default, Required):
            problems.append(f"{spec.name}: missing (required, no default: set it in the robot file)")
        else:
            values[spec.name] = spec.default
    _raise_if(problems + _check(specs, values), node_name)
    return values


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
