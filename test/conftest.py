import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Keep the test graph to this machine and away from any other ROS graph running here.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))

BACKBONES = ["qwen3_vl", "qwen2_5_vl"]


@pytest.fixture(scope="session")
def tiny_base_dirs(tmp_path_factory):
    """Tiny random base VLMs of both architectures, written once per session like real checkpoints."""
    from twinbrain_ros.model import make_tiny_base

    root = tmp_path_factory.mktemp("bases")
    return {kind: make_tiny_base(root / kind, kind) for kind in BACKBONES}


@pytest.fixture(scope="session")
def make_policy(tiny_base_dirs):
    from twinbrain_ros.model import TwinBrainPolicy, load_base, tiny_config

    def factory(kind="qwen3_vl", **overrides):
        base = load_base(tiny_base_dirs[kind])
        return TwinBrainPolicy.from_base(base, tiny_config(kind, str(tiny_base_dirs[kind]), **overrides))

    return factory


def random_image(seed, h=48, w=64):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
