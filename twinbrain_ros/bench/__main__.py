"""`twinbrain-bench <name> [options]`: every benchmark prints one JSON line."""

from __future__ import annotations

import importlib
import sys

BENCHES = {"inference": "inference", "control": "control", "expert": "expert", "closed-loop": "closed_loop",
           "rollout": "rollout", "sensitivity": "sensitivity", "memory": "memory", "safety": "safety",
           "two-hosts": "two_hosts", "ruckig": "ruckig_compare", "recorder": "recorder", "chunking": "chunking"}


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in BENCHES:
        raise SystemExit(f"usage: twinbrain-bench {{{','.join(BENCHES)}}} [options]")
    module = importlib.import_module(f"twinbrain_ros.bench.{BENCHES[argv[0]]}")
    module.main(argv[1:])


if __name__ == "__main__":
    main()
