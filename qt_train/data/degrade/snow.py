"""Snow: multi-scale opaque flakes (dense small blurred ones, sparse large soft blobs) + snow veil.

Unlike rain, flakes fall slowly and are nearly opaque and white, so they are alpha-composited
rather than screen-blended; small far flakes smear into short motion trails, near flakes are
large, soft (defocused) discs.  Falling snow also scatters light like fog (the veil).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .common import (
    Array,
    RealismParams,
    Record,
    apply_blur,
    apply_camera,
    depth_proxy,
    disc_kernel,
    gaussian_blur,
    line_kernel,
    size_scale,
    smooth_field,
    stamp,
    strength,
    uniform,
)


@dataclass(frozen=True)
class SnowParams(RealismParams):
    """Ranges for snow.

    density: fraction of pixels seeding a small flake (log scale); the main strength together with
        ``veil`` (severity 0 -> first values, 1 -> second values).  Larger flake layers get
        proportionally fewer seeds.
    veil: strength of the snow haze (scattering by falling snow), scaled by depth.
    small_radius: radius in px (at a 256-px short side) of the small, far flakes.
    large_radius: radius in px of the largest, nearest flakes.
    large_ratio: seeds of the large-flake layer relative to the small-flake layer.
    fall_angle: fall direction, degrees from vertical.
    trail: motion-trail length in px of the small flakes during the exposure.
    opacity: peak flake opacity.
    flake_colour: brightness of flakes (slightly grey in shadow, white in light).
    contrast_loss: (realistic) global contrast reduction of a flat, snowy overcast scene.
    cold_cast: (realistic) strength of a bluish cast from overcast snow light.
    veil_variation: (realistic) relative amplitude of a patchy, non-homogeneous veil.
    """

    density: tuple[float, float] = (0.002, 0.02)
    veil: tuple[float, float] = (0.05, 0.4)
    small_radius: tuple[float, float] = (0.6, 1.2)
    large_radius: tuple[float, float] = (2.5, 5.0)
    large_ratio: tuple[float, float] = (0.03, 0.1)
    fall_angle: tuple[float, float] = (-30.0, 30.0)
    trail: tuple[float, float] = (2.0, 8.0)
    opacity: tuple[float, float] = (0.75, 1.0)
    flake_colour: tuple[float, float] = (0.85, 1.0)
    contrast_loss: tuple[float, float] = (0.05, 0.3)
    cold_cast: tuple[float, float] = (0.0, 0.08)
    veil_variation: tuple[float, float] = (0.3, 0.8)


def flakes(
    n: int,
    h: int,
    w: int,
    rng: np.random.Generator,
    p: SnowParams,
    density: Array,
    defocus_large: float = 0.0,
) -> tuple[Array, Record]:
    """Opacity map (N,H,W) of three flake layers: small trails, medium dots, large soft blobs."""
    sc = size_scale(h, w)
    r_small = uniform(rng, p.small_radius, n) * sc
    r_large = uniform(rng, p.large_radius, n) * sc
    ratio = uniform(rng, p.large_ratio, n)
    angle = uniform(rng, p.fall_angle, n)
    trail = uniform(rng, p.trail, n) * sc
    opacity = uniform(rng, p.opacity, n)
    alpha = np.zeros((n, h, w), np.float32)
    # (density multiplier, radius per image, softness, trail?)
    r_mid = 0.5 * (r_small + r_large)
    mid_ratio = np.sqrt(ratio)
    specs = [
        (np.ones(n, np.float32), r_small, 0.6, True),
        (mid_ratio, r_mid, 1.0, False),
        (ratio, r_large, 1.6, False),
    ]
    for j, (mult, radius, soft, trails) in enumerate(specs):
        u = rng.random((n, h, w), dtype=np.float32)
        b = rng.random((n, h, w), dtype=np.float32)
        seeds = np.where(u < (density * mult)[:, None, None], 0.6 + 0.4 * b, 0.0).astype(np.float32)
        if trails:
            kernels = [
                line_kernel(max(trail[i], 1.0), float(angle[i]), width=radius[i] + 0.3) for i in range(n)
            ]
        else:
            kernels = [disc_kernel(radius[i], soft=soft * (1.0 + radius[i] * 0.3)) for i in range(n)]
        layer = np.clip(stamp(seeds, kernels), 0.0, 1.0)
        if j == 2 and defocus_large > 0:
            layer = np.clip(gaussian_blur(layer, defocus_large * sc) * 1.5, 0.0, 1.0)
        alpha = 1.0 - (1.0 - alpha) * (1.0 - layer)
    rec: Record = dict(
        small_radius=r_small,
        large_radius=r_large,
        large_ratio=ratio,
        fall_angle=angle,
        trail=trail,
        opacity=opacity,
    )
    return np.clip(alpha * opacity[:, None, None], 0.0, 1.0), rec


def _common(clean: Array, rng: np.random.Generator, severity: float | None, p: SnowParams, rec: Record):
    n = clean.shape[0]
    density = strength(rng, p.density, n, severity, log=True)
    veil = strength(rng, p.veil, n, severity)
    colour = uniform(rng, p.flake_colour, n)[:, None] * np.ones((1, 3), np.float32)
    veil_colour = uniform(rng, (0.8, 0.95), n)[:, None] + uniform(rng, (-0.02, 0.03), (n, 3))
    depth = depth_proxy(clean, rng).depth
    rec.update(density=density, veil=veil, flake_colour=colour[:, 0], veil_colour=veil_colour)
    return density, veil, colour, veil_colour, depth


def _composite(x: Array, veil_map: Array, veil_colour: Array, alpha: Array, colour: Array) -> Array:
    v = np.clip(veil_map, 0.0, 1.0)[..., None]
    x = x * (1.0 - v) + veil_colour[:, None, None, :] * v
    a = alpha[..., None]
    return x * (1.0 - a) + colour[:, None, None, :] * a


def synthetic(clean: Array, rng: np.random.Generator, severity: float | None, p: SnowParams):
    """Homogeneous snowfall: three flake scales and a depth-scaled white veil."""
    n, h, w, _ = clean.shape
    rec: Record = {}
    density, veil, colour, veil_colour, depth = _common(clean, rng, severity, p, rec)
    alpha, frec = flakes(n, h, w, rng, p, density)
    rec.update(frec)
    x = _composite(clean, veil[:, None, None] * (0.4 + 0.6 * depth), veil_colour, alpha, colour)
    return np.clip(x, 0.0, 1.0).astype(np.float32), rec


def realistic(clean: Array, rng: np.random.Generator, severity: float | None, p: SnowParams):
    """Snow as shot: flat low-contrast overcast light with a cold cast, patchy snow haze, heavily
    defocused near flakes, then blur, cast, vignetting, sensor noise and JPEG."""
    n, h, w, _ = clean.shape
    rec: Record = {}
    density, veil, colour, veil_colour, depth = _common(clean, rng, severity, p, rec)
    contrast = uniform(rng, p.contrast_loss, n)
    cold = uniform(rng, p.cold_cast, n)
    variation = uniform(rng, p.veil_variation, n)
    patches = smooth_field(rng, n, h, w, cells=3.0, octaves=3)
    alpha, frec = flakes(n, h, w, rng, p, density, defocus_large=2.0)
    rec.update(frec)

    mean = clean.mean(axis=(1, 2, 3), keepdims=True)
    x = mean + (clean - mean) * (1.0 - contrast[:, None, None, None])
    x = x * (1.0 + cold[:, None, None, None] * np.array([-1.0, 0.0, 1.0], np.float32))
    veil_map = (
        veil[:, None, None] * (0.4 + 0.6 * depth) * (1.0 + variation[:, None, None] * (2 * patches - 1))
    )
    x = _composite(x, veil_map, veil_colour, alpha, colour)
    x = apply_blur(np.clip(x, 0.0, 1.0), rng, p, rec)
    x = apply_camera(x, rng, p, rec)
    rec.update(contrast_loss=contrast, cold_cast=cold, veil_variation=variation)
    return x, rec
