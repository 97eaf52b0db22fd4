"""Quality-conditioned restoration backbones and their registry.

Public API: ``BACKBONES``, ``build_backbone``, ``backbone_config_class``, the configs
``EdgeUNetConfig`` / ``EdgeGuidedConfig`` / ``NAFNetConfig``, ``load_state_dict_checked`` and the export views
``FoldedQuality`` / ``QualityInput``. See :mod:`.conditioning` for the quality contract.
"""

from .conditioning import Quality, QualityConditioned, QualityEmbedding
from .edge_guided import HEADS, EdgeGuided, EdgeGuidedConfig
from .edge_unet import EdgeUNet, EdgeUNetConfig
from .loading import CheckpointMismatchError, arch_of, load_state_dict_checked
from .nafnet import NAFNet, NAFNetConfig
from .registry import BACKBONES, DEFAULT_BACKBONE, BackboneEntry, backbone_config_class, build_backbone
from .views import FoldedQuality, QualityInput

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "BackboneEntry",
    "CheckpointMismatchError",
    "EdgeGuided",
    "EdgeGuidedConfig",
    "EdgeUNet",
    "EdgeUNetConfig",
    "FoldedQuality",
    "HEADS",
    "NAFNet",
    "NAFNetConfig",
    "Quality",
    "QualityConditioned",
    "QualityEmbedding",
    "QualityInput",
    "arch_of",
    "backbone_config_class",
    "build_backbone",
    "load_state_dict_checked",
]
