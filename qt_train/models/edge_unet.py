"""EdgeUNet: a small quality-conditioned restoration U-Net built to run in real time after INT8.

Why this shape (target: >= 30 FPS at 640x360 after OpenVINO INT8 on 2 AVX2 cores, and TensorRT
INT8 on a Jetson):

- Nothing but Conv (3x3 / 1x1), ReLU-family activations, Add, SpaceToDepth/DepthToSpace
  (pixel-unshuffle/shuffle), one Pad, one Slice and one Clip: ops every INT8 backend fuses and
  quantises well. No normalisation, attention, GELU or depthwise convs (depthwise INT8 is slow
  on CPUs without VNNI and gains little on TensorRT).
- No convolution at full resolution: a 2x pixel-unshuffle stem takes 3 -> 12 channels at 1/2;
  the output is 12 channels at 1/2 pixel-shuffled back to RGB. Most convolutions run at 1/4
  and 1/8, where the receptive field for global degradations (haze, low light) is cheap.
- Skips by addition (no concat: cheaper, and no requantisation of mixed-scale tensors).
- Global residual: output = clamp(input + delta, 0, 1), so the network learns a correction.
- Any H, W: the input is reflect-padded to a multiple of 8 and the output cropped back.

The quality embedding is added to the 1/8 feature right after the last downsampling, before
the middle blocks, so the condition passes through several non-linear layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .common import Activation, make_act, pad_to_multiple
from .conditioning import Quality, QualityConditioned, QualityEmbedding


@dataclass(frozen=True)
class EdgeUNetConfig:
    """Widths are the channels at 1/2, 1/4 and 1/8 resolution; block counts are residual blocks
    (two 3x3 convs each) at each place. Defaults: about 1.7 GMAC at 640x360 and 0.3 M parameters."""

    widths: tuple[int, int, int] = (16, 32, 64)
    enc_blocks: tuple[int, int] = (0, 1)  # at 1/2, 1/4
    mid_blocks: int = 3  # at 1/8
    dec_blocks: tuple[int, int] = (1, 0)  # at 1/4, 1/2
    act: Activation = "relu"
    levels: int = 8
    in_channels: int = 3

    def __post_init__(self) -> None:
        if len(self.widths) != 3 or min(self.widths) < 1:
            raise ValueError(f"widths must be three positive ints, got {self.widths}")
        counts = (*self.enc_blocks, self.mid_blocks, *self.dec_blocks)
        if len(self.enc_blocks) != 2 or len(self.dec_blocks) != 2 or min(counts) < 0:
            raise ValueError("enc_blocks and dec_blocks take two non-negative ints, mid_blocks one")


def conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ResBlock(nn.Module):
    """conv-act-conv plus identity (EDSR style: no activation after the add, no normalisation)."""

    def __init__(self, c: int, act: Activation) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3(c, c), make_act(act), conv3(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _blocks(n: int, c: int, act: Activation) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(c, act) for _ in range(n)])


class EdgeUNet(QualityConditioned):
    arch = "edge_unet"
    pad_multiple = 8

    def __init__(self, config: EdgeUNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or EdgeUNetConfig()
        self.config = cfg
        c1, c2, c3 = cfg.widths
        cin = cfg.in_channels
        self.stem = nn.Sequential(nn.PixelUnshuffle(2), conv3(4 * cin, c1), make_act(cfg.act))
        self.enc1 = _blocks(cfg.enc_blocks[0], c1, cfg.act)
        self.down2 = nn.Sequential(conv3(c1, c2, stride=2), make_act(cfg.act))
        self.enc2 = _blocks(cfg.enc_blocks[1], c2, cfg.act)
        self.down3 = nn.Sequential(conv3(c2, c3, stride=2), make_act(cfg.act))
        self.quality_embed = QualityEmbedding(cfg.levels, c3)
        self.mid = _blocks(cfg.mid_blocks, c3, cfg.act)
        self.up2 = nn.Sequential(nn.Conv2d(c3, 4 * c2, 1), nn.PixelShuffle(2))
        self.dec2 = _blocks(cfg.dec_blocks[0], c2, cfg.act)
        self.up1 = nn.Sequential(nn.Conv2d(c2, 4 * c1, 1), nn.PixelShuffle(2))
        self.dec1 = _blocks(cfg.dec_blocks[1], c1, cfg.act)
        self.tail = nn.Sequential(make_act(cfg.act), conv3(c1, 4 * cin), nn.PixelShuffle(2))

    def forward(
        self, x: torch.Tensor, quality: Quality = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Restore ``x`` (N, 3, H, W) in [0, 1]; ``quality`` or a precomputed ``bias`` conditions it."""
        cond = self.condition(quality, bias, x.shape[0])
        h, w = x.shape[-2], x.shape[-1]
        xp = pad_to_multiple(x, self.pad_multiple)
        f1 = self.enc1(self.stem(xp))
        f2 = self.enc2(self.down2(f1))
        f3 = self.down3(f2)
        if cond is not None:
            f3 = f3 + cond.to(f3.dtype)
        f3 = self.mid(f3)
        u2 = self.dec2(self.up2(f3) + f2)
        u1 = self.dec1(self.up1(u2) + f1)
        y = xp + self.tail(u1)
        return y[:, :, :h, :w].clamp(0.0, 1.0)
