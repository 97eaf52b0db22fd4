"""From a qt-train checkpoint to the torch module that gets exported.

Why a separate step: the checkpoint names its architecture; an unknown one (or weights that do
not fit) must be one clear error before ONNX/NNCF start, and the quality condition must be
resolved once (folded at a level, or kept as an input) so every format exports the same module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class QualityMode:
    """``folded`` at ``level`` (bias baked in) or ``input`` (``level`` is then the default).

    No default level: it is the run's ``method.top_level`` (``LoadedModel.top_level``) or ``--quality``.
    """

    mode: str
    level: float

    def __post_init__(self) -> None:
        if self.mode not in ("folded", "input"):
            raise ValueError(f"quality mode must be 'folded' or 'input', got {self.mode!r}")


@dataclass(frozen=True)
class LoadedModel:
    """The EMA backbone (eval mode) and what the manifest needs to know about it."""

    backbone: Any  # QualityConditioned; typed loosely so importing this module needs no torch
    arch: str
    arch_config: dict[str, Any]
    task: str
    levels: int
    pad_multiple: int
    int8_keep_fp: tuple[str, ...]  # the backbone's declared INT8 float-kept roles (the --keep-fp default)
    top_level: int  # the run's method.top_level: what --quality folds by default
    iqa_spec: dict | None = None  # the run's reward ensemble as a dict (None: the default)
    level_cuts: list[float] | None = None  # the run's quantile level cut points, when it used them


def _tuples(value: Any) -> Any:
    """YAML/JSON round trips turn tuples into lists; frozen configs want tuples back."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def load_model(path: str | Path) -> LoadedModel:
    """Build the checkpoint's backbone with its EMA weights (else its model weights), frozen.

    The backbone comes from :func:`qt_train.checkpoint.model_from_state`, the one checkpoint ->
    model path qt-eval and the claim benchmark use too, so an ``arch_config`` key this toolkit does
    not know is an error naming it rather than silently dropped (a checkpoint from another version
    could otherwise export a different network than the one that was trained).
    """
    from qt_train.checkpoint import load_checkpoint, model_from_state
    from qt_train.models import BACKBONES

    state = load_checkpoint(path)
    arch = state.get("arch")
    if arch is None:
        raise ValueError(
            f"checkpoint {path} does not name its architecture (a bare state dict); export needs a qt-train checkpoint")
    if arch not in BACKBONES:
        raise ValueError(
            f"checkpoint {path} is for architecture {arch!r}, which this toolkit does not know; "
            f"known: {', '.join(sorted(BACKBONES))}")
    if state.get("ema") is None and state.get("model") is None:
        raise ValueError(f"checkpoint {path} holds no model weights ('ema' or 'model')")
    model = model_from_state(state, str(path))
    for p in model.parameters():
        p.requires_grad_(False)
    arch_config = {k: _tuples(v) for k, v in dict(state.get("arch_config") or {}).items()}
    config = state.get("config") or {}
    task = str(state.get("task") or config.get("task") or "unknown")
    return LoadedModel(
        backbone=model, arch=arch, arch_config=arch_config, task=task,
        levels=int(model.quality_embed.levels), pad_multiple=int(model.pad_multiple),
        int8_keep_fp=tuple(model.int8_keep_fp),
        top_level=int((config.get("method") or {}).get("top_level", model.quality_embed.levels - 1)),
        iqa_spec=_run_spec(config, str(path)), level_cuts=state.get("level_cuts"),
    )


def _run_spec(config: dict, source: str) -> dict | None:
    """The reward ensemble the run trained with, as a dict (carried into the gate, the calibration
    frames and the manifest): from ``iqa.ensemble``, else None for the default."""
    from qt_train.iqa import spec_to_dict
    from qt_train.iqa.spec import reward_spec

    path = (config.get("iqa") or {}).get("ensemble")
    if not path:
        return None
    try:
        return spec_to_dict(reward_spec(path))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{source}: the run's IQA ensemble {path} cannot be read ({exc}); put it back or "
                         "re-export from a run with the default ensemble") from None


def export_view(loaded: LoadedModel, quality: QualityMode):  # -> nn.Module
    """The module to export: ``FoldedQuality`` (one input) or ``QualityInput`` (image + quality)."""
    from qt_train.models import FoldedQuality, QualityInput

    top = loaded.levels - 1
    if not 0 <= quality.level <= top:
        raise ValueError(f"--quality must lie in [0, {top}] for this model, got {quality.level:g}")
    if quality.mode == "folded":
        level: int | float = int(quality.level) if float(quality.level).is_integer() else float(quality.level)
        return FoldedQuality(loaded.backbone, level).eval()
    return QualityInput(loaded.backbone).eval()


def reference_fn(loaded: LoadedModel, quality: QualityMode):
    """FP32 PyTorch reference ``f(x) -> y`` at the artifact's default level, no grad."""
    import torch

    level = float(quality.level)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return loaded.backbone(x, quality=level)

    return run
