"""EdgeGuided: a small network that predicts *smooth* maps at low resolution and applies them to the
full-resolution input, so the input's texture passes through by construction.

Why (measured on real fog, docs/results.md): ``edge_unet`` re-synthesises every output pixel from
1/4-1/8 features and paints dark, smeared blobs where trees are; a physics-based method only
estimates a smooth transmission and airlight and inverts the scattering model. Four of the five
degradations are smooth per-pixel maps of the scene:

- haze:        I = J t + A (1 - t)              ->  J = (I - A) / max(t, t_min) + A
- underwater:  I_c = J_c t_c + B_c (1 - t_c)    ->  the same, per channel, with a backscatter map B
- low light:   I = J / g (+ offset)             ->  J = g I + o
- rain, snow:  a residual layer R at full resolution (J = I - R), plus a veil for snow.

So the output is always a per-pixel affine map of the input, ``J = a * I + b``, with ``a, b``
computed from the head's physical parameters (``HEADS``). Those parameters are predicted by an
``edge_unet``-style trunk on an area-downsampled copy of the input (1/``scale``), then refined and
upsampled edge-aware with a fast guided filter (He et al. 2013; Wu et al. 2018): at low resolution
each map is refit locally as a linear function of a learned grey guide, and the refit coefficients
are upsampled bilinearly and applied to the full-resolution guide, so a jump in transmission
follows the input's edge instead of a 1/``scale`` grid. An optional thin *detail* branch at 1/2
resolution adds a residual (rain streaks, snowflakes, noise), fed by the trunk's features.

Everything at full resolution is cheap element-wise work (the guide, the last x2 upsampling of
the guided filter's coefficients, Mul/Add), held as 2x2 phases at half resolution (see
``forward``), plus, when enabled, the detail branch: the trunk costs ~1/scale^2 of ``edge_unet``.
The last convolutions are zero-initialised: a fresh model returns its input (gain, affine) or a
mild haze inversion (haze, water).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .common import Activation, make_act, pad_to_multiple
from .conditioning import Quality, QualityConditioned
from .edge_unet import _blocks, add_trunk, conv3, run_trunk

Head = Literal["haze", "water", "gain", "affine"]

# Luma weights (BT.601) for the guide's initialisation: the guide starts as the grey image.
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class EdgeGuidedConfig:
    """``scale``: the trunk runs on the input area-downsampled by this factor (coefficient maps live
    there); ``widths``/block counts as in ``EdgeUNetConfig`` but at 1/(2 scale) .. 1/(8 scale);
    ``head``: the physical parameterisation (``HEADS``); ``t_min``: the transmission floor (He et
    al.'s 0.1); ``gf_radius`` / ``gf_eps``: the guided filter's window radius (low-res pixels) and
    regulariser; ``detail_width`` 0 disables the full-resolution residual branch."""

    head: Head = "haze"
    # 2, not 4: at 4 the trunk's bottleneck is 1/32, a 4x4 grid on 128-px training patches where
    # every position touches the zero padding; such a model restored 128-px crops (21.8 dB) but
    # failed on 256-px images (7.3 dB). At 2 it is 8x8 and stable from 128 to 512 px.
    scale: int = 2
    widths: tuple[int, int, int] = (16, 32, 64)
    enc_blocks: tuple[int, int] = (0, 1)
    mid_blocks: int = 3
    dec_blocks: tuple[int, int] = (1, 0)
    act: Activation = "relu"
    t_min: float = 0.1
    gf_radius: int = 1
    gf_eps: float = 1e-3
    detail_width: int = 0
    detail_blocks: int = 0
    levels: int = 8

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"unknown head '{self.head}'; valid: {', '.join(sorted(HEADS))}")
        if self.scale not in (2, 4, 8):  # full resolution is held as 2x2 phases
            raise ValueError(f"scale must be 2, 4 or 8, got {self.scale}")
        if len(self.widths) != 3 or min(self.widths) < 1:
            raise ValueError(f"widths must be three positive ints, got {self.widths}")
        counts = (*self.enc_blocks, self.mid_blocks, *self.dec_blocks, self.detail_blocks)
        if len(self.enc_blocks) != 2 or len(self.dec_blocks) != 2 or min(counts) < 0:
            raise ValueError("enc_blocks and dec_blocks take two non-negative ints, mid/detail_blocks one")
        if not 0.0 < self.t_min < 1.0:
            raise ValueError(f"t_min must lie in (0, 1), got {self.t_min}")
        if self.gf_radius < 0 or self.gf_eps <= 0:
            raise ValueError("gf_radius must be >= 0 and gf_eps > 0")
        if self.detail_width < 0:
            raise ValueError(f"detail_width must be >= 0, got {self.detail_width}")


# --------------------------------------------------------------------------- physical heads
# Each head: the number of spatial maps it predicts, whether it also predicts a global colour
# (pooled over the image), and a pure function (maps, global) -> (a, b) with J = a * I + b.
# At zero input the gain and affine heads return the identity a = 1, b = 0; the scattering heads a
# mild inversion (t = 0.89): the sigmoid must not start saturated. With t = 0.98 at init (offset 4)
# its gradient was 1/6 of this and dense haze was never learnt in 3000 iterations (outputs far too
# bright: 15.2 dB held-out against edge_unet's 17.0, worst on the densest images).
_T_OFFSET = 2.0


def _haze(maps: torch.Tensor, glob: torch.Tensor | None, t_min: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One transmission map, one global airlight: J = (I - A) / t + A."""
    t = t_min + (1.0 - t_min) * torch.sigmoid(maps[:, :1] + _T_OFFSET)
    airlight = torch.sigmoid(glob + 1.0)
    a = 1.0 / t
    return a, airlight * (1.0 - a)


def _water(maps: torch.Tensor, glob: torch.Tensor | None, t_min: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel transmission and a backscatter map: J_c = (I_c - B_c (1 - t_c)) / t_c."""
    t = t_min + (1.0 - t_min) * torch.sigmoid(maps[:, :3] + _T_OFFSET)
    backscatter = torch.sigmoid(maps[:, 3:6])
    a = 1.0 / t
    return a, backscatter * (1.0 - a)


def _gain(maps: torch.Tensor, glob: torch.Tensor | None, t_min: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel gain (up to 1 / t_min, down to 1/4) and a small offset: J = g I + o."""
    g = torch.exp(maps[:, :3].clamp(-math.log(4.0), math.log(1.0 / t_min)))
    return g, 0.1 * torch.tanh(maps[:, 3:6])


def _affine(maps: torch.Tensor, glob: torch.Tensor | None, t_min: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A bounded generic per-channel affine map (rain: the veil; the streaks are the detail branch's)."""
    return torch.exp(0.7 * torch.tanh(maps[:, :3])), 0.3 * torch.tanh(maps[:, 3:6])


@dataclass(frozen=True)
class HeadEntry:
    maps: int
    global_colour: bool
    coefficients: Callable[[torch.Tensor, torch.Tensor | None, float], tuple[torch.Tensor, torch.Tensor]]


HEADS: dict[str, HeadEntry] = {
    "haze": HeadEntry(1, True, _haze),
    "water": HeadEntry(6, False, _water),
    "gain": HeadEntry(6, False, _gain),
    "affine": HeadEntry(6, False, _affine),
}


# --------------------------------------------------------------------------- guided upsampling
def box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window, renormalised at the borders (exports as one AveragePool)."""
    if radius == 0:
        return x
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def guided_coefficients(
    guide_lo: torch.Tensor, maps_lo: torch.Tensor, radius: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fast guided filter, low-resolution half: fit ``maps_lo ~ A * guide_lo + B`` in local windows
    and return the smoothed (A, B); the caller upsamples them and applies ``A * guide_hi + B``.

    Variances are computed from centred differences (not E[x^2] - E[x]^2), which keeps them
    accurate in float16/bfloat16 and when neighbouring layers run in INT8.
    """
    mean_g = box(guide_lo, radius)
    dg = guide_lo - mean_g
    var_g = box(dg * dg, radius)
    mean_m = box(maps_lo, radius)
    cov = box(dg * (maps_lo - mean_m), radius)
    coef_a = cov / (var_g + eps)
    coef_b = mean_m - coef_a * mean_g
    return box(coef_a, radius), box(coef_b, radius)


def _bilinear2x_weight(channels: int) -> torch.Tensor:
    """(4C, 1, 3, 3) kernels of the four output phases of a x2 bilinear upsampling (half-pixel
    centres): phase 0 takes 1/4 of the previous and 3/4 of the current pixel, phase 1 3/4 of the
    current and 1/4 of the next, per axis."""
    taps = torch.tensor([[0.25, 0.75, 0.0], [0.0, 0.75, 0.25]])
    phases = torch.stack([torch.outer(taps[i], taps[j]) for i in range(2) for j in range(2)])  # (4, 3, 3)
    return phases.repeat(channels, 1, 1).unsqueeze(1)


class Upsample2x(nn.Module):
    """Bilinear x2 upsampling (= ``F.interpolate(scale_factor=2, mode="bilinear")``) written as an
    edge pad, a fixed depthwise 3x3 convolution to four phases and a pixel shuffle. Why: OpenVINO's
    CPU Interpolate on few-channel full-resolution maps was the largest layer of the exported model
    (40 ms at 1280x720), while convolutions and DepthToSpace are among its fastest kernels.
    ``phases`` stops before the shuffle: (N, 4C, H, W), channel ``4c + 2i + j`` holding output
    pixel (2y + i, 2x + j) of channel c — the layout of ``nn.PixelUnshuffle(2)``. The kernel is a
    fixed, non-persistent buffer (not a weight: checkpoints do not carry it)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("weight", _bilinear2x_weight(channels), persistent=False)

    def phases(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), w, groups=self.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.phases(x), 2)


def _phase_mean_weight(channels: int) -> torch.Tensor:
    """(C, 4C, 1, 1): the mean of each channel's four phases (= a 2x2 average pooling)."""
    return (0.25 * torch.eye(channels).repeat_interleave(4, dim=1)).reshape(channels, 4 * channels, 1, 1)


class EdgeGuided(QualityConditioned):
    arch = "edge_guided"
    # The guided filter's and heads' element-wise maths (variances, 1/t) amplify any INT8 step and
    # are memory-bound on a CPU, so INT8 buys nothing there (docs/results.md, Export and INT8).
    int8_keep_fp = ("first", "last", "guided")

    def __init__(self, config: EdgeGuidedConfig | None = None) -> None:
        super().__init__()
        cfg = config or EdgeGuidedConfig()
        self.config = cfg
        self.pad_multiple = 8 * cfg.scale
        head = HEADS[cfg.head]
        self._coefficients = head.coefficients
        # The trunk: edge_unet's encoder-decoder on the 1/scale image, ending at 1/(2 scale).
        add_trunk(self, 12, cfg.widths, cfg.enc_blocks, cfg.mid_blocks, cfg.dec_blocks, cfg.act, cfg.levels)
        c1, c3 = cfg.widths[0], cfg.widths[2]
        # Parameter maps at 1/scale; zero-initialised so that the model starts at the identity.
        self.maps = nn.Sequential(make_act(cfg.act), conv3(c1, 4 * head.maps), nn.PixelShuffle(2))
        nn.init.zeros_(self.maps[1].weight)
        nn.init.zeros_(self.maps[1].bias)
        self.upsample_coef = Upsample2x(head.maps)
        self.register_buffer("phase_mean", _phase_mean_weight(3), persistent=False)
        self.colour = None
        if head.global_colour:
            self.colour = nn.Conv2d(c3, 3, 1)
            nn.init.zeros_(self.colour.weight)
            nn.init.zeros_(self.colour.bias)
        # The learned guide: a 1x1 conv of the input, initialised to luma.
        self.guide = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.guide.weight.copy_(torch.tensor(_LUMA).reshape(1, 3, 1, 1))
            self.guide.bias.zero_()
        self.detail = None
        if cfg.detail_width:
            w = cfg.detail_width
            self.detail_context = nn.Conv2d(c1, w, 1)
            self.detail_in = nn.Sequential(nn.PixelUnshuffle(2), conv3(12, w))
            self.upsample_context = Upsample2x(w)
            self.detail = nn.Sequential(make_act(cfg.act), _blocks(cfg.detail_blocks, w, cfg.act), conv3(w, 12))
            nn.init.zeros_(self.detail[2].weight)
            nn.init.zeros_(self.detail[2].bias)

    def forward(
        self, x: torch.Tensor, quality: Quality = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Restore ``x`` (N, 3, H, W) in [0, 1]; ``quality`` or a precomputed ``bias`` conditions it.

        Full resolution is held as its four 2x2 phases at half resolution (``PixelUnshuffle(2)``,
        12 channels) from the input to the last op, a ``PixelShuffle``: the same arithmetic as
        working on (N, 3, H, W), but OpenVINO's CPU kernels block channels by 8/16, and a
        3-channel full-resolution tensor in a 16-channel block spent its time in layout reorders
        (the input's reorder for AvgPool alone took 21 of 163 ms at 1280x720)."""
        cfg = self.config
        cond = self.condition(quality, bias, x.shape[0])
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        xp = pad_to_multiple(x, self.pad_multiple)
        x_ph = F.pixel_unshuffle(xp, 2)  # (N, 12, H/2, W/2)
        x_half = F.conv2d(x_ph, self.phase_mean.to(x.dtype))  # = avg_pool2d(xp, 2)
        x_lo = F.avg_pool2d(x_half, cfg.scale // 2) if cfg.scale > 2 else x_half
        feat, bottleneck = run_trunk(self, x_lo, cond)
        maps = self.maps(feat)
        guide_lo = self.guide(x_lo)  # = avg_pool(guide(xp)): a 1x1 conv commutes with the pooling
        coef_a, coef_b = guided_coefficients(guide_lo, maps, cfg.gf_radius, cfg.gf_eps)
        stages = cfg.scale.bit_length() - 1  # log2(scale)
        for _ in range(stages - 1):  # all but the last x2 step as images ...
            coef_a, coef_b = self.upsample_coef(coef_a), self.upsample_coef(coef_b)
        k = coef_a.shape[1]
        # ... and the last as phases: maps at full resolution = A * guide + B, phase by phase
        eye = torch.eye(4, dtype=x.dtype, device=x.device).reshape(4, 1, 4)
        phase_guide = (self.guide.weight.reshape(1, 3, 1) * eye).reshape(4, 12, 1, 1)  # [p, 4c + p] = w_c
        guide_ph = F.conv2d(x_ph, phase_guide) + self.guide.bias  # (N, 4, H/2, W/2)
        hh, ww = x_ph.shape[-2], x_ph.shape[-1]

        def phases(c: torch.Tensor) -> torch.Tensor:  # (N, k, 4, H/2, W/2)
            return self.upsample_coef.phases(c).reshape(n, k, 4, hh, ww)

        maps_ph = phases(coef_a) * guide_ph.unsqueeze(1) + phases(coef_b)
        glob = None
        if self.colour is not None:
            glob = self.colour(bottleneck.mean(dim=(2, 3), keepdim=True)).unsqueeze(2)  # (N, 3, 1, 1, 1)
        a, b = self._coefficients(maps_ph, glob, cfg.t_min)
        y = (a * x_ph.reshape(n, 3, 4, hh, ww) + b).reshape(n, 12, hh, ww)
        if self.detail is not None:
            context = self.detail_context(feat)
            for _ in range(stages):
                context = self.upsample_context(context)
            y = y + self.detail(self.detail_in[1](y) + context)
        return F.pixel_shuffle(y.clamp(0.0, 1.0), 2)[:, :, :h, :w]
