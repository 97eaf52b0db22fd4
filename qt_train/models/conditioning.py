"""The quality condition: an ``nn.Embedding(levels, C)`` added as a per-channel bias at the bottleneck.

Why zero-initialised: a pretrained backbone starts exactly unchanged, and at initialisation the
conditioned student equals the unconditioned teacher (docs/method.md §2).

Quality forms accepted everywhere a ``quality`` is taken:

- ``None``: unconditioned, nothing is added (the teacher's mode).
- ``int`` or an integer tensor (N,) / (): a level in ``0..levels-1``; an embedding row.
- ``float`` or a floating tensor (N,) / (): linear interpolation between adjacent rows
  (6.5 is halfway between levels 6 and 7). Integer-valued floats give the row exactly.

Export design (for qt_export): the bias is a separate, exposed step.

- Folded: ``model.level_bias(7)`` is a constant (1, C, 1, 1); pass it as ``forward(x, bias=b)``
  (see :class:`qt_train.models.views.FoldedQuality`) and the graph holds one constant Add.
- Scalar input: :meth:`QualityEmbedding.forward` is written with Floor/Gather/Mul/Add only, so a
  float quality input exports too (:class:`qt_train.models.views.QualityInput`).
Range checks run eagerly; while tracing/exporting the value is clamped instead (a traced
graph cannot raise).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

Quality = int | float | torch.Tensor | None


def _tracing() -> bool:
    return bool(torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())


class QualityEmbedding(nn.Module):
    """Level embedding with linear interpolation for fractional levels; returns (N, C, 1, 1)."""

    def __init__(self, levels: int, channels: int) -> None:
        super().__init__()
        if levels < 2:
            raise ValueError(f"need at least 2 quality levels, got {levels}")
        self.levels = levels
        self.channels = channels
        self.embed = nn.Embedding(levels, channels)
        nn.init.zeros_(self.embed.weight)

    def forward(self, quality: int | float | torch.Tensor) -> torch.Tensor:
        weight = self.embed.weight
        if isinstance(quality, bool) or not isinstance(quality, (int, float, torch.Tensor)):
            raise TypeError(f"quality must be an int, float or tensor, got {type(quality).__name__}")
        if not isinstance(quality, torch.Tensor):
            dtype = torch.long if isinstance(quality, int) else torch.float32
            quality = torch.tensor([quality], dtype=dtype, device=weight.device)
        q = quality.to(weight.device).reshape(-1)
        top = self.levels - 1
        if not _tracing():
            if q.numel() == 0:
                raise ValueError("quality tensor is empty")
            if bool(((q < 0) | (q > top)).any()):
                raise ValueError(f"quality must lie in [0, {top}], got {q.tolist()}")
        if not q.is_floating_point():
            rows = weight[q.clamp(0, top)]
        else:
            qf = q.to(weight.dtype).clamp(0, top)
            lo = torch.floor(qf)
            frac = (qf - lo).unsqueeze(1)
            lo_i = lo.long()
            hi_i = (lo_i + 1).clamp(max=top)
            rows = weight[lo_i] * (1 - frac) + weight[hi_i] * frac
        return rows[:, :, None, None]


class QualityConditioned(nn.Module):
    """Base of every backbone: owns ``quality_embed`` and resolves ``quality`` / ``bias`` to one bias.

    Subclasses set ``arch`` (the registry name, checked when loading checkpoints) and
    ``pad_multiple``, and call
    :meth:`condition` once, adding its result to their lowest-resolution feature.
    """

    arch: ClassVar[str] = ""
    quality_embed: QualityEmbedding
    # Inputs are padded to a multiple of this (the network's total downsampling); exported into the
    # manifest so the runtime pads the same way. Subclasses set it (class or instance attribute).
    pad_multiple: int = 1
    # Layer roles INT8 export keeps in floating point unless told otherwise (qt_export/quantize.py
    # KEEP_FP_ROLES): what this backbone needs to pass the export gate. A backbone declares its own.
    int8_keep_fp: ClassVar[tuple[str, ...]] = ("first", "last")

    @property
    def bottleneck_channels(self) -> int:
        return self.quality_embed.channels

    def level_bias(self, quality: int | float | torch.Tensor) -> torch.Tensor:
        """The bottleneck bias (N, C, 1, 1) for a quality (N = 1 for a Python number)."""
        return self.quality_embed(quality)

    def condition(self, quality: Quality, bias: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """One (N or 1, C, 1, 1) bias from either ``quality`` or a precomputed ``bias``, or None."""
        if quality is not None and bias is not None:
            raise ValueError("pass either quality or a precomputed bias, not both")
        if quality is not None:
            bias = self.level_bias(quality)
        if bias is None:
            return None
        c = self.bottleneck_channels
        if bias.dim() == 1:
            bias = bias.reshape(1, -1, 1, 1)
        if not _tracing() and (
            bias.dim() != 4
            or bias.shape[1] != c
            or bias.shape[2:] != (1, 1)
            or bias.shape[0] not in (1, batch)
        ):
            raise ValueError(
                f"bias must be (1 or {batch}, {c}, 1, 1) for a batch of {batch}, got {tuple(bias.shape)}"
            )
        return bias
