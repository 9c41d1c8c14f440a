"""`twinbrain-record`: make LeRobot v3.0 datasets and check them.

  twinbrain-record sim --episodes N --out DIR        scripted-expert demonstrations from the simulated arm
  twinbrain-record bag BAG [BAG ...] --out DIR ...   import rosbag2 recordings (sqlite3 / MCAP)
  twinbrain-record check DIR                         what lerobot's tools would refuse (exit 1 if anything)
  twinbrain-record sim-bag OUT                       a rosbag2 of sim episodes, to try ``bag`` on

Live teleop recording is the ROS node: ``ros2 run twinbrain_ros recorder_node`` (README).
"""

from __future__ import annotations

import argparse
import json
import sys

from .data.bag_import import BagSpec, import_bags
from .data.lerobot_check import main as check_main
from .data.record_sim import record
from .sim.tasks import validate_spec


def _cameras(items: list[str]) -> dict:
    out = {}
    for item in items:
        name, sep, topic = item.partition("=")
        if not sep or not name or not topic:
            raise SystemExit(f"--camera takes NAME=TOPIC (e.g. front=/camera/front/image_raw), got {item!r}")
        out[name] = topic
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="twinbrain-record", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="source", required=True)
    s = sub.add_parser("sim", help="record scripted-expert episodes from the simulated arm")
    s.add_argument("--episodes", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--fps", type=int, default=10)
    s.add_argument("--task", type=validate_spec, default=None,
                   help="a task spec (touch:red, push:blue:right, touch:any, mixture, ...; sim/tasks.py); "
                        "default: the mixture, drawn per episode from the seed")
    s.add_argument("--first-seed", type=int, default=0)
    s.add_argument("--image-size", type=int, nargs=2, default=[96, 96], metavar=("H", "W"))
    s.add_argument("--codec", choices=["h264", "av1"], default="h264")
    s.add_argument("--keep-failures", action="store_true")
    s.add_argument("--start-spread", type=float, default=0.0, help="arm starts up to this many rad from home")
    s.add_argument("--chain", type=float, default=0.0,
                   help="share of episodes (0..1) that start where the last one ended instead of at home")
    s.add_argument("--hold", type=float, default=0.5, help="seconds recorded at the final pose")
    s.add_argument("--perturb", type=float, default=0.0,
                   help="std (rad) of a wandering offset the arm follows; the action stays the clean target")
    s.add_argument("--cubes-per-scene", type=int, default=1,
                   help="record each scene this many times (1-3), naming another cube each time (a task like "
                        "touch:any or mixture): only the words then tell the demonstrations apart")

    b = sub.add_parser("bag", help="import rosbag2 recordings into a LeRobot v3.0 dataset")
    b.add_argument("bags", nargs="+", help="rosbag2 folders (sqlite3 or MCAP) or .mcap files")
    b.add_argument("--out", required=True)
    b.add_argument("--camera", action="append", required=True, metavar="NAME=TOPIC",
                   help="one per camera, in order (Image or CompressedImage)")
    b.add_argument("--joint-states", default="/joint_states")
    b.add_argument("--command", default="/leader/joint_states", help="the action: JointState or JointTrajectory")
    b.add_argument("--joint-names", default=None, help="comma-separated; default: the first joint state's names")
    b.add_argument("--task", default=None, help="the episodes' task (else --instruction-topic)")
    b.add_argument("--instruction-topic", default=None, help="std_msgs/String with the instruction")
    b.add_argument("--split", default="gap:1.0", help="bag | topic:<name> | gap:<seconds> (default gap:1.0)")
    b.add_argument("--fps", type=int, default=10)
    b.add_argument("--image-size", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    b.add_argument("--sync-slop", type=float, default=0.02)
    b.add_argument("--max-repeat-age", type=float, default=0.3)
    b.add_argument("--codec", choices=["h264", "av1"], default="h264")
    b.add_argument("--robot-type", default="twinbrain_arm")

    c = sub.add_parser("check", help="check a dataset against what lerobot's tools expect")
    c.add_argument("dataset")

    g = sub.add_parser("sim-bag", help="write a rosbag2 of scripted-expert sim episodes")
    g.add_argument("out")
    g.add_argument("--episodes", type=int, default=2)
    g.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    g.add_argument("--compressed", action="store_true", help="cameras as CompressedImage (JPEG)")
    g.add_argument("--image-size", type=int, nargs=2, default=[96, 96], metavar=("H", "W"))
    g.add_argument("--jitter", type=float, default=0.0, help="camera stamp jitter, +- seconds")
    g.add_argument("--drop", type=int, nargs="*", default=[], help="camera frame indices left out")
    args = p.parse_args(argv)

    if args.source == "sim":
        result = record(args.out, args.episodes, args.fps, args.task, args.first_seed, tuple(args.image_size),
                        not args.keep_failures, args.codec, args.start_spread, args.hold, args.perturb,
                        args.chain, args.cubes_per_scene)
    elif args.source == "bag":
        spec = BagSpec(_cameras(args.camera), args.joint_states, args.command, args.out, args.fps,
                       tuple(args.image_size), args.joint_names.split(",") if args.joint_names else None, args.task,
                       args.instruction_topic, args.split, args.sync_slop, args.max_repeat_age, args.codec,
                       args.robot_type)
        result = import_bags(args.bags, spec)
    elif args.source == "check":
        sys.exit(check_main(args.dataset))
    else:
        from .sim.sim_bag import write_sim_bag
        result = write_sim_bag(args.out, args.episodes, args.storage, image_size=tuple(args.image_size),
                               compressed=args.compressed, jitter=args.jitter, drop=tuple(args.drop))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
