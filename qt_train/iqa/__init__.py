"""No-reference IQA ensemble: spec as data, pure mapping rules, offline scoring.

Importing this package loads neither torch nor pyiqa; ``Ensemble`` and ``EnsembleScores``
are loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .mapping import block_quality_map, combine, member_weights, normalise, to_level
from .spec import (
    EnsembleSpec,
    Member,
    default_spec,
    load_spec,
    member_from_dict,
    reference_spec,
    spec_from_dict,
    spec_to_dict,
)

if TYPE_CHECKING:
    from .ensemble import Ensemble, EnsembleScores

__all__ = [
    "Ensemble",
    "EnsembleScores",
    "EnsembleSpec",
    "Member",
    "block_quality_map",
    "combine",
    "default_spec",
    "load_spec",
    "member_from_dict",
    "member_weights",
    "normalise",
    "reference_spec",
    "spec_from_dict",
    "spec_to_dict",
    "to_level",
]


def __getattr__(name: str) -> Any:
    if name in ("Ensemble", "EnsembleScores"):
        from . import ensemble

        return getattr(ensemble, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
