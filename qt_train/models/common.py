"""Small shared pieces of the backbones: activation factory and pad-to-multiple / crop-back.

Why here: both backbones need the same "any H, W in, same H, W out" contract, and the export
code must know exactly what the graph does at the borders, so it lives in one place.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Activation = Literal["relu", "relu6", "leaky_relu"]


def make_act(name: Activation) -> nn.Module:
    """Activations that quantise cleanly in OpenVINO and TensorRT (fused into the conv)."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.1, inplace=True)
    raise ValueError(f"unknown activation '{name}'; valid: relu, relu6, leaky_relu")


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the bottom/right of an (N, C, H, W) tensor so H and W are multiples of ``multiple``.

    Reflect padding (no artificial dark border for the restoration to "fix"); replicate when the
    image is too small to reflect (reflect needs pad < size). Padding only bottom/right keeps the
    crop-back a plain slice starting at 0, which exports as one Slice.
    """
    h, w = x.shape[-2], x.shape[-1]
    ph = (multiple - h % multiple) % multiple
    pw = (multiple - w % multiple) % multiple
    if isinstance(ph, int) and ph == 0 and isinstance(pw, int) and pw == 0:
        return x
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        mode = "reflect"  # an exported graph needs H, W >= 8 (one fixed Pad mode)
    else:
        mode = "reflect" if (ph < h and pw < w) else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)
