"""NAFNet-style desktop backbone (Chen et al., ECCV 2022): LayerNorm2d, SimpleGate and simplified
channel attention in every block, a 4-level U-Net, global residual.

Why it exists next to EdgeUNet: it is the larger, stronger student for desktop GPUs and for
distilling into the edge model; its ops (LayerNorm, depthwise convs, global pooling) are the
kind that quantise poorly, so it is not the INT8 default. The quality embedding is added to the
lowest-resolution feature before the middle blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .common import pad_to_multiple
from .conditioning import Quality, QualityConditioned, QualityEmbedding


@dataclass(frozen=True)
class NAFNetConfig:
    """``enc_blocks`` has one entry per level (each followed by a 2x downsampling);
    ``dec_blocks`` must have the same length."""

    width: int = 32
    enc_blocks: tuple[int, ...] = (1, 1, 2, 4)
    mid_blocks: int = 4
    dec_blocks: tuple[int, ...] = (1, 1, 1, 1)
    dw_expand: int = 2
    ffn_expand: int = 2
    levels: int = 8
    in_channels: int = 3

    def __post_init__(self) -> None:
        if not 1 <= len(self.enc_blocks) <= 5 or len(self.enc_blocks) != len(self.dec_blocks):
            raise ValueError(
                f"enc_blocks and dec_blocks need the same length (1..5), got {self.enc_blocks} / {self.dec_blocks}"
            )
        if self.width < 1 or min((*self.enc_blocks, *self.dec_blocks, self.mid_blocks)) < 0:
            raise ValueError("width must be positive and block counts non-negative")


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dim of an NCHW tensor, written with plain ops so it exports."""

    def __init__(self, c: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return y * self.weight[None, :, None, None] + self.bias[None, :, None, None]


class SimpleGate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """Mixer (1x1 -> depthwise 3x3 -> gate -> SCA -> 1x1) and gated FFN, each with a zero-initialised
    residual scale, so a fresh block is the identity."""

    def __init__(self, c: int, dw_expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        dw = c * dw_expand
        ffn = c * ffn_expand
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.gate = SimpleGate()
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gate(self.conv2(self.conv1(self.norm1(x))))
        y = self.conv3(y * self.sca(y))
        x = x + y * self.beta
        y = self.conv5(self.gate(self.conv4(self.norm2(x))))
        return x + y * self.gamma


class NAFNet(QualityConditioned):
    arch = "nafnet"

    def __init__(self, config: NAFNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or NAFNetConfig()
        self.config = cfg
        self.pad_multiple = 2 ** len(cfg.enc_blocks)
        c = cfg.width
        self.intro = nn.Conv2d(cfg.in_channels, c, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        for n in cfg.enc_blocks:
            self.encoders.append(
                nn.Sequential(*[NAFBlock(c, cfg.dw_expand, cfg.ffn_expand) for _ in range(n)])
            )
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.quality_embed = QualityEmbedding(cfg.levels, c)
        self.middle = nn.Sequential(
            *[NAFBlock(c, cfg.dw_expand, cfg.ffn_expand) for _ in range(cfg.mid_blocks)]
        )
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for n in cfg.dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(
                nn.Sequential(*[NAFBlock(c, cfg.dw_expand, cfg.ffn_expand) for _ in range(n)])
            )
        self.ending = nn.Conv2d(c, cfg.in_channels, 3, padding=1)

    def forward(
        self, x: torch.Tensor, quality: Quality = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Restore ``x`` (N, 3, H, W) in [0, 1]; ``quality`` or a precomputed ``bias`` conditions it."""
        cond = self.condition(quality, bias, x.shape[0])
        h, w = x.shape[-2], x.shape[-1]
        xp = pad_to_multiple(x, self.pad_multiple)
        f = self.intro(xp)
        skips = []
        for enc, down in zip(self.encoders, self.downs, strict=True):
            f = enc(f)
            skips.append(f)
            f = down(f)
        if cond is not None:
            f = f + cond.to(f.dtype)
        f = self.middle(f)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips), strict=True):
            f = dec(up(f) + skip)
        y = xp + self.ending(f)
        return y[:, :, :h, :w].clamp(0.0, 1.0)
