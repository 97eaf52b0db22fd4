"""Export views of a backbone: the two ways the quality condition can reach an exported graph.

- :class:`FoldedQuality`: a fixed level (usually the run's top level, the inference level) folded into a constant
  bias buffer; the graph's only input is the image. This is what INT8 deployment uses.
- :class:`QualityInput`: the level is a second float input of shape (1,) or (N,), interpolated
  in-graph (Floor/Gather/Mul/Add), for a runtime quality knob.
Both are thin ``nn.Module`` wrappers around the backbone's ``forward(x, quality=, bias=)``.
"""

from __future__ import annotations

import torch
from torch import nn

from .conditioning import QualityConditioned


class FoldedQuality(nn.Module):
    """``forward(x)`` = ``backbone(x, quality=level)``, with the level's bias stored as a buffer."""

    def __init__(self, backbone: QualityConditioned, level: int | float) -> None:
        super().__init__()
        self.backbone = backbone
        self.level = level
        with torch.no_grad():
            self.register_buffer("bias", backbone.level_bias(level).detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x, bias=self.bias)


class QualityInput(nn.Module):
    """``forward(x, quality)`` with ``quality`` a float tensor (1,) or (N,) in [0, levels-1]."""

    def __init__(self, backbone: QualityConditioned) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        return self.backbone(x, quality=quality.float())
