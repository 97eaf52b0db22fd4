"""Loading backbone weights with an error that says what went wrong.

Why: ``load_state_dict(strict=True)`` on the wrong architecture dumps hundreds of keys; the user
needs to know "this checkpoint is a nafnet, the model is an edge_unet" and the first key that
differs.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


class CheckpointMismatchError(ValueError):
    """A state dict that does not fit the model it is loaded into."""


def arch_of(model: nn.Module) -> str:
    """Registry name of a backbone instance (its class attribute ``arch``)."""
    arch = getattr(model, "arch", "")
    if not arch:
        raise ValueError(f"{type(model).__name__} is not a registered backbone (no 'arch')")
    return arch


def first_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """Describe the first key (in the model's order, then the checkpoint's) that does not fit."""
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            return f"key '{key}' is missing from the checkpoint"
        other = state[key]
        if tuple(other.shape) != tuple(value.shape):
            return f"key '{key}' has shape {tuple(other.shape)} in the checkpoint, {tuple(value.shape)} in the model"
    for key in state:
        if key not in own:
            return f"key '{key}' is in the checkpoint but not in the model"
    return None


def load_state_dict_checked(model: nn.Module, state: Mapping[str, torch.Tensor], arch_name: str) -> None:
    """Load ``state`` (saved from architecture ``arch_name``) into ``model`` strictly.

    Raises :class:`CheckpointMismatchError` naming both architectures when they differ or any key
    or shape does not fit, with the first mismatching key.
    """
    model_arch = arch_of(model)
    problem = first_mismatch(model, state)
    if arch_name != model_arch:
        detail = f"; first mismatch: {problem}" if problem else ""
        raise CheckpointMismatchError(
            f"checkpoint is for architecture '{arch_name}' but the model is '{model_arch}'{detail}"
        )
    if problem is not None:
        raise CheckpointMismatchError(
            f"checkpoint (architecture '{arch_name}') does not fit the model (architecture '{model_arch}', "
            f"config {getattr(model, 'config', '?')}): {problem}"
        )
    model.load_state_dict(dict(state), strict=True)
