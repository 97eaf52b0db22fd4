"""The backbone registry: one explicit line per backbone, no folder scanning (docs/design.md).

To add a backbone: write a :class:`QualityConditioned` subclass with a frozen config dataclass,
then add one line to ``BACKBONES``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .conditioning import QualityConditioned
from .edge_guided import EdgeGuided, EdgeGuidedConfig
from .edge_unet import EdgeUNet, EdgeUNetConfig
from .nafnet import NAFNet, NAFNetConfig


@dataclass(frozen=True)
class BackboneEntry:
    model_cls: type[QualityConditioned]
    config_cls: type


BACKBONES: dict[str, BackboneEntry] = {
    "edge_unet": BackboneEntry(EdgeUNet, EdgeUNetConfig),
    "edge_guided": BackboneEntry(EdgeGuided, EdgeGuidedConfig),
    "nafnet": BackboneEntry(NAFNet, NAFNetConfig),
}

DEFAULT_BACKBONE = "edge_unet"


def _entry(name: str) -> BackboneEntry:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; valid: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]


def backbone_config_class(name: str) -> type:
    """The frozen config dataclass of a backbone (for the YAML loader)."""
    return _entry(name).config_cls


def build_backbone(name: str, config: Any = None, **kwargs: Any) -> QualityConditioned:
    """Build a backbone from its registry name and either a config instance or config fields.

    ``build_backbone("edge_unet", widths=(8, 16, 32))`` or
    ``build_backbone("nafnet", config=NAFNetConfig(width=16))``; unknown names and unknown
    fields raise ValueError / TypeError naming what is valid.
    """
    entry = _entry(name)
    if config is not None and kwargs:
        raise ValueError("pass either a config instance or config fields, not both")
    if config is None:
        valid = {f.name for f in dataclasses.fields(entry.config_cls)}
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise ValueError(
                f"unknown {name} config field(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
            )
        config = entry.config_cls(**kwargs)
    elif not isinstance(config, entry.config_cls):
        raise TypeError(f"{name} needs a {entry.config_cls.__name__}, got {type(config).__name__}")
    return entry.model_cls(config)
