"""The simulated tasks, chosen by the instruction: touch / pick / push x red / green / blue (push to the
left or right), in a few phrasings each. All three cubes are always on the table, so only the words
say which one is meant.

Task specs (the ``--task`` / ``task`` parameter): ``touch:red``, ``push:blue:right``; a verb alone keeps
its historical single task (``touch`` = touch the green cube, ``pick`` = red, ``push`` = blue to the
left); ``touch:any`` draws the colour from the seed; ``mixture`` (or ``random``) draws verb, colour,
direction and phrasing. ``parse_instruction`` maps any phrasing back to its task, which is how the sim
follows an instruction someone else publishes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

COLOURS = ("red", "green", "blue")
VERBS = ("touch", "pick", "push")
DIRECTIONS = {"left": 1.0, "right": -1.0}      # push along +y (the robot's left) or -y
PHRASINGS = {
    "touch": ("touch the {c} cube", "tap the {c} cube", "put your fingers on the {c} cube"),
    "pick": ("pick up the {c} cube", "lift the {c} cube", "grab the {c} cube and lift it"),
    "push": ("push the {c} cube to the {d}", "slide the {c} cube to the {d}", "shove the {c} cube {d}"),
}
SINGLE = {"touch": ("green", ""), "pick": ("red", ""), "push": ("blue", "left")}   # a verb alone (older specs)
MIXTURES = ("mixture", "random")


@dataclass(frozen=True)
class Task:
    name: str            # touch | pick | push
    cube: str            # red | green | blue
    instruction: str
    direction: str = ""  # push: left | right

    def with_cube(self, cube: str) -> "Task":
        """The same task and phrasing with another colour (the instruction-swap control)."""
        return Task(self.name, cube, self.instruction.replace(self.cube, cube), self.direction)


def validate_spec(spec: str) -> str:
    """``spec`` if it names tasks, else ValueError saying what would."""
    if spec in MIXTURES:
        return spec
    parts = spec.split(":")
    ok = (parts[0] in VERBS and len(parts) <= (3 if parts[0] == "push" else 2)
          and (len(parts) < 2 or parts[1] in COLOURS + ("any",))
          and (len(parts) < 3 or parts[2] in DIRECTIONS))
    if not ok:
        raise ValueError(f"task {spec!r}: expected mixture, a verb ({', '.join(VERBS)}), verb:colour "
                         f"({'|'.join(COLOURS)}|any) or push:colour:{'|'.join(DIRECTIONS)}")
    return spec


def draw(spec: str, rng: np.random.Generator) -> Task:
    """The task of one episode for ``spec``; what is not fixed by the spec is drawn from ``rng``."""
    validate_spec(spec)
    if spec in MIXTURES:
        spec = str(rng.choice(VERBS)) + ":any"
    parts = spec.split(":")
    verb = parts[0]
    if len(parts) == 1:
        cube, direction = SINGLE[verb]
        return Task(verb, cube, PHRASINGS[verb][0].format(c=cube, d=direction), direction)
    cube = parts[1] if parts[1] != "any" else str(rng.choice(COLOURS))
    direction = ""
    if verb == "push":
        direction = parts[2] if len(parts) > 2 else str(rng.choice(list(DIRECTIONS)))
    phrasing = PHRASINGS[verb][int(rng.integers(len(PHRASINGS[verb])))]
    return Task(verb, cube, phrasing.format(c=cube, d=direction), direction)


def all_tasks() -> list[str]:
    """Every fixed verb:colour(:direction) spec."""
    return [f"{v}:{c}" + (f":{d}" if v == "push" else "") for v in VERBS for c in COLOURS
            for d in (DIRECTIONS if v == "push" else ("",))]


def _pattern(phrasing: str) -> re.Pattern:
    text = re.escape(phrasing).replace(r"\{c\}", "(?P<c>red|green|blue)").replace(r"\{d\}", "(?P<d>left|right)")
    return re.compile(rf"^\s*{text}\s*[.!]?\s*$", re.IGNORECASE)


_PATTERNS = [(verb, _pattern(p)) for verb, phrasings in PHRASINGS.items() for p in phrasings]


def parse_instruction(text: str) -> Task | None:
    """The task an instruction names (any of the phrasings, any case), or None."""
    for verb, pattern in _PATTERNS:
        m = pattern.match(text or "")
        if m:
            groups = m.groupdict()
            return Task(verb, groups["c"].lower(), text.strip(), (groups.get("d") or "").lower())
    return None
