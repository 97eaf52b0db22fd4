"""Augmentations of the method: invertible geometric views for the teacher, pixel-aligned
photometric RandAugment for the student (docs/method.md §3, §6).

Why the strong augmentation never moves pixels: the student's target is a pseudo-label computed
on the weakly augmented image; any geometric op would misalign input and target.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- geometric views (teacher side)

_GEOMETRIC: dict[
    str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]
] = {
    "identity": (lambda x: x, lambda y: y),
    "hflip": (lambda x: torch.flip(x, [-1]), lambda y: torch.flip(y, [-1])),
    "vflip": (lambda x: torch.flip(x, [-2]), lambda y: torch.flip(y, [-2])),
    "rot90": (lambda x: torch.rot90(x, 1, [-2, -1]), lambda y: torch.rot90(y, -1, [-2, -1])),
    "rot180": (lambda x: torch.rot90(x, 2, [-2, -1]), lambda y: torch.rot90(y, -2, [-2, -1])),
    "rot270": (lambda x: torch.rot90(x, 3, [-2, -1]), lambda y: torch.rot90(y, -3, [-2, -1])),
}
GEOMETRIC_VIEWS: tuple[str, ...] = tuple(_GEOMETRIC)
DEFAULT_VIEWS: tuple[str, ...] = ("identity", "hflip", "vflip", "rot90")


def _view(name: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
    if name not in _GEOMETRIC:
        raise ValueError(f"unknown view '{name}'; valid: {', '.join(GEOMETRIC_VIEWS)}")
    return _GEOMETRIC[name]


def multi_augment(x: torch.Tensor, names: Sequence[str] = DEFAULT_VIEWS) -> list[tuple[str, torch.Tensor]]:
    """The geometric views of ``x`` (…, H, W) the teacher restores; rot90 swaps H and W."""
    return [(name, _view(name)[0](x)) for name in names]


def invert(name: str, y: torch.Tensor) -> torch.Tensor:
    """Undo view ``name`` on a result, so every PL candidate is aligned with the original image."""
    return _view(name)[1](y)


# ---------------------------------------------------------------- photometric ops (student side)
# Each op maps (n, C, H, W) in [0, 1] and a per-sample strength s (n,) in [0, 1] to (n, C, H, W).
# Random numbers come from a CPU torch.Generator and are moved to the data's device.

Op = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def _rand(n: int, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, generator=g).to(device=like.device, dtype=like.dtype)


def _sign(n: int, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.where(_rand(n, g, like) < 0.5, -1.0, 1.0).to(like.dtype)


def _col(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, 1, 1, 1)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance convention: factor 0 gives ``b``, 1 gives ``a``, >1 extrapolates."""
    return b + (a - b) * _col(factor)


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).reshape(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _enhance_factor(s: torch.Tensor, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    # 1 +- 0.9 s: at full strength 0.1 (almost flat) or 1.9 (strongly enhanced), as in RandAugment.
    return 1.0 + 0.9 * s * _sign(s.numel(), g, like)


def brightness(x: torch.Tensor, s: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x * _col(_enhance_factor(s, g, x))


def contrast(x: torch.Tensor, s: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    mean = _grey(x).mean((1, 2, 3), keepdim=True)
    return _blend(x, mean.expand_as(x), _enhance_factor(s, g, x))


def saturation(x: torch.Tensor, s: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return _blend(x, _grey(x).expand_as(x), _enhance_factor(s, g, x))


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH kernel (centre 5, ring 1, /13); symmetric, so nothing shifts."""
    k = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    k[1, 1] = 5.0
    k = (k / 13.0).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=x.shape[1])


def sharpness(x: torch.Tensor, s: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return _blend(x, _smooth(x), _enhance_factor(s, g, x))


def gamma(x: torch.Tensor, s: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    # gamma in [1/2.5, 2.5] at full strength.
    gam = torch.exp(_sign(s.numel(), g, x) * s * math.log(2.5))
    return x.clamp_min(0).pow(_col(gam))


def posterize(x: torch.Tensor, s: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    # 8 bits at strength 0 down to 4 bits at full strength (RandAugment's range).
    bits = 8.0 - torch.round(4.0 * s)
    step = _col(torch.pow(2.0, 8.0 - bits)) / 255.0
    return torch.floor(x.clamp(0, 1) * 255.0 / (step * 255.0) + 1e-6) * step


def solarize(x: torch.Tensor, s: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    # "light": the threshold only comes down to 0.7, so only highlights invert.
    thr = _col(1.0 - 0.3 * s)
    return torch.where(x >= thr, 1.0 - x, x)


def autocontrast(x: torch.Tensor, s: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    lo = x.amin((2, 3), keepdim=True)
    hi = x.amax((2, 3), keepdim=True)
    scale = torch.where(hi - lo > 1e-6, 1.0 / (hi - lo).clamp_min(1e-6), torch.ones_like(hi))
    stretched = torch.where(hi - lo > 1e-6, (x - lo) * scale, x)
    return _blend(stretched, x, s)


def equalize(x: torch.Tensor, s: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Per-channel histogram equalisation through the 256-bin CDF, blended in by strength."""
    n, c, h, w = x.shape
    idx = (x.clamp(0, 1) * 255.0).round().long().reshape(n * c, h * w)
    hist = torch.zeros(n * c, 256, device=x.device, dtype=x.dtype).scatter_add_(
        1, idx, torch.ones_like(idx, dtype=x.dtype)
    )
    cdf = hist.cumsum(1)
    cdf_min = torch.where(hist > 0, cdf, torch.full_like(cdf, float("inf"))).amin(1, keepdim=True)
    denom = (cdf[:, -1:] - cdf_min).clamp_min(1.0)
    lut = ((cdf - cdf_min) / denom).clamp(0, 1)
    eq = lut.gather(1, idx).reshape(n, c, h, w)
    return _blend(eq, x, s)


def noise(x: torch.Tensor, s: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    sigma = _col(0.08 * s)
    z = torch.randn(x.shape, generator=g).to(device=x.device, dtype=x.dtype)
    return x + sigma * z


def blur(x: torch.Tensor, s: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur, sigma up to 2 px, one sigma per sample (odd, centred kernel)."""
    sigma = 0.1 + 1.9 * s
    radius = 6
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)  # (n, 2r+1)
    n, c, h, w = x.shape
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="replicate")
    kk = k.repeat_interleave(c, 0)
    y = F.conv2d(y, kk[:, None, None, :], groups=n * c)
    y = F.conv2d(y, kk[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


PHOTOMETRIC_OPS: dict[str, Op] = {
    "brightness": brightness,
    "contrast": contrast,
    "saturation": saturation,
    "sharpness": sharpness,
    "gamma": gamma,
    "posterize": posterize,
    "solarize": solarize,
    "autocontrast": autocontrast,
    "equalize": equalize,
    "noise": noise,
    "blur": blur,
}


def strong_augment(
    x: torch.Tensor,
    generator: torch.Generator,
    n_ops: int = 2,
    magnitude: float = 10.0,
    ops: Sequence[str] = tuple(PHOTOMETRIC_OPS),
) -> torch.Tensor:
    """RandAugment(n_ops, magnitude) restricted to photometric ops; (N, C, H, W) in [0, 1] -> same.

    Every sample draws its own ``n_ops`` ops (with replacement) and, per op, a strength uniform in
    ``[0, magnitude / 10]`` — magnitude is on RandAugment's 0..10 scale, 10 being each op's
    maximum, and the strength is random below it as in FixMatch's RandAugment and the reference
    code. Deterministic given ``generator`` (a CPU ``torch.Generator``).
    """
    if x.dim() != 4:
        raise ValueError(f"strong_augment takes (N, C, H, W), got {tuple(x.shape)}")
    if not 0.0 <= magnitude <= 10.0:
        raise ValueError(f"magnitude must lie in [0, 10], got {magnitude}")
    if n_ops < 0:
        raise ValueError(f"n_ops must be >= 0, got {n_ops}")
    names = list(ops)
    unknown = [o for o in names if o not in PHOTOMETRIC_OPS]
    if unknown or not names:
        raise ValueError(f"unknown ops {unknown}; valid: {', '.join(PHOTOMETRIC_OPS)}")
    n = x.shape[0]
    y = x
    for _ in range(n_ops):
        choice = torch.randint(len(names), (n,), generator=generator)
        strength = torch.rand(n, generator=generator) * (magnitude / 10.0)
        out = y.clone()
        for j, name in enumerate(names):
            idx = (choice == j).nonzero().flatten()
            if idx.numel() == 0:
                continue
            s = strength[idx].to(device=x.device, dtype=x.dtype)
            dev_idx = idx.to(x.device)
            out[dev_idx] = PHOTOMETRIC_OPS[name](y[dev_idx], s, generator).clamp(0.0, 1.0)
        y = out
    return y
