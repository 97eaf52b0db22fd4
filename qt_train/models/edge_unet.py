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


def add_trunk(
    m: nn.Module, in_channels: int, widths: tuple[int, int, int], enc_blocks: tuple[int, int], mid_blocks: int,
    dec_blocks: tuple[int, int], act: Activation, levels: int,
) -> None:
    """Give ``m`` the encoder-decoder both edge backbones share (pixel-unshuffle stem to 1/2,
    strided convs to 1/4 and 1/8, the quality embedding, residual blocks, pixel-shuffle decoder
    with additive skips), as attributes, so checkpoints keep the same keys in both."""
    c1, c2, c3 = widths
    m.stem = nn.Sequential(nn.PixelUnshuffle(2), conv3(in_channels, c1), make_act(act))
    m.enc1 = _blocks(enc_blocks[0], c1, act)
    m.down2 = nn.Sequential(conv3(c1, c2, stride=2), make_act(act))
    m.enc2 = _blocks(enc_blocks[1], c2, act)
    m.down3 = nn.Sequential(conv3(c2, c3, stride=2), make_act(act))
    m.quality_embed = QualityEmbedding(levels, c3)
    m.mid = _blocks(mid_blocks, c3, act)
    m.up2 = nn.Sequential(nn.Conv2d(c3, 4 * c2, 1), nn.PixelShuffle(2))
    m.dec2 = _blocks(dec_blocks[0], c2, act)
    m.up1 = nn.Sequential(nn.Conv2d(c2, 4 * c1, 1), nn.PixelShuffle(2))
    m.dec1 = _blocks(dec_blocks[1], c1, act)


def run_trunk(m: nn.Module, x: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The trunk of :func:`add_trunk` on ``x``: (features at 1/2, bottleneck at 1/8); ``cond`` is
    the quality bias added right after the last downsampling."""
    f1 = m.enc1(m.stem(x))
    f2 = m.enc2(m.down2(f1))
    f3 = m.down3(f2)
    if cond is not None:
        f3 = f3 + cond.to(f3.dtype)
    f3 = m.mid(f3)
    u2 = m.dec2(m.up2(f3) + f2)
    return m.dec1(m.up1(u2) + f1), f3


class EdgeUNet(QualityConditioned):
    arch = "edge_unet"
    pad_multiple = 8

    def __init__(self, config: EdgeUNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or EdgeUNetConfig()
        self.config = cfg
        add_trunk(self, 4 * cfg.in_channels, cfg.widths, cfg.enc_blocks, cfg.mid_blocks, cfg.dec_blocks,
                  cfg.act, cfg.levels)
        c1 = cfg.widths[0]
        cin = cfg.in_channels
        self.tail = nn.Sequential(make_act(cfg.act), conv3(c1, 4 * cin), nn.PixelShuffle(2))

    def forward(
        self, x: torch.Tensor, quality: Quality = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Restore ``x`` (N, 3, H, W) in [0, 1]; ``quality`` or a precomputed ``bias`` conditions it."""
        cond = self.condition(quality, bias, x.shape[0])
        h, w = x.shape[-2], x.shape[-1]
        xp = pad_to_multiple(x, self.pad_multiple)
        u1, _ = run_trunk(self, xp, cond)
        y = xp + self.tail(u1)
        return y[:, :, :h, :w].clamp(0.0, 1.0)
