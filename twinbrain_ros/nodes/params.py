"""Parameter declaration for every node: each parameter has a default, a description and a check,
declared up front (ros2_controllers style); all problems are reported at start-up in one clear error.

Shared robot parameters (joint names and limits) are declared by every node that needs them and set
once in the YAML under ``/**: ros__parameters`` (config/arm.yaml), so the robot is described once.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any, Callable

from rcl_interfaces.msg import ParameterDescriptor

from ..runtime.joint_limits import JointLimit


class ParameterError(ValueError):
    pass


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    check: Callable[[Any], str | None] | None = None


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
    Param("joint_names", ["joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper"],
          "Controlled joints in action/state order (the gripper is a joint of the arm controller).", non_empty),
    Param("joint_lower", [-3.14] * 7, "Lower position limit per joint (rad or m)."),
    Param("joint_upper", [3.14] * 7, "Upper position limit per joint (rad or m)."),
    Param("max_velocity", [1.0] * 7, "Velocity limit per joint (per second)."),
    Param("max_acceleration", [5.0] * 7, "Acceleration limit per joint (per second squared)."),
    Param("max_jerk", [0.0] * 7, "Jerk limit per joint; 0 disables it."),
    Param("control_rate_hz", 100.0, "Rate of setpoints to the controller.", positive),
]


def declare(node, specs: list[Param]) -> dict:
    """Declare ``specs`` on ``node`` and return their values; raise ParameterError listing every problem."""
    values, problems = {}, []
    for spec in specs:
        node.declare_parameter(spec.name, spec.default, ParameterDescriptor(description=spec.description))
        value = node.get_parameter(spec.name).value
        if isinstance(value, (tuple, list, array.array)):
            value = list(value)      # rclpy hands numeric arrays back as array.array
        if spec.check is not None:
            problem = spec.check(value)
            if problem:
                problems.append(f"{spec.name}={value!r}: {problem}")
        values[spec.name] = value
    _raise_if(problems, node.get_name())
    return values


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
