"""TwinBrainVLA in pure torch + transformers (no ROS imports in this package)."""

from .backbone import BaseVLM, build_base, load_base, make_tiny_base
from .configuration_twinbrain import ActionExpertConfig, TwinBrainConfig, tiny_config
from .modeling_twinbrain import TwinBrainVLA
from .normalization import Normalization, RangeNormalizer
from .policy import Observation, TwinBrainPolicy

__all__ = ["ActionExpertConfig", "BaseVLM", "Normalization", "Observation", "RangeNormalizer", "TwinBrainConfig",
           "TwinBrainPolicy", "TwinBrainVLA", "build_base", "load_base", "make_tiny_base", "tiny_config"]
