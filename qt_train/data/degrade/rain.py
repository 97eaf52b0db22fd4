"""Rain: layers of oriented, motion-blurred streaks, screen-blended, plus a light rain veil.

A raindrop crossing the field of view during the exposure images as a thin, bright, tapered
streak along its fall direction.  Several depth layers are stacked: far rain is dense, short,
thin and faint; near rain is sparse, long, wide, bright and slightly defocused.
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
    bernoulli,
    depth_proxy,
    disc_kernel,
    gaussian_blur,
    line_kernel,
    screen,
    size_scale,
    smooth_field,
    stamp,
    strength,
    uniform,
)


@dataclass(frozen=True)
class RainParams(RealismParams):
    """Ranges for rain.

    density: fraction of pixels that seed a streak in the middle layer (log scale); together with
        ``opacity`` the main strength (severity 0 -> first values, 1 -> second values).
    opacity: peak opacity of the nearest streak layer (screen blend weight).
    layers: number of depth layers of streaks (far to near).
    length: streak length in px at a 256-px short side for the nearest layer (far layers shorter).
    width: streak half-width in px (anti-aliased) for the nearest layer.
    angle: fall direction in degrees from vertical (wind), shared by the layers.
    angle_jitter: per-layer deviation of the angle, degrees.
    brightness: per-streak peak brightness range.
    veil: strength of the rain veil (mist of unresolved far drops), scaled by depth.
    veil_brightness: brightness of the veil colour (light grey mist).
    overcast: (realistic) multiplier on the veil brightness: a darker, overcast grey mist.
    drop_prob / drops: (realistic) chance and density of out-of-focus drops on the lens.
    veil_variation: (realistic) relative amplitude of a patchy, non-homogeneous veil.
    """

    density: tuple[float, float] = (0.0015, 0.012)
    opacity: tuple[float, float] = (0.35, 0.9)
    layers: int = 3
    length: tuple[float, float] = (14.0, 40.0)
    width: tuple[float, float] = (0.7, 1.4)
    angle: tuple[float, float] = (-25.0, 25.0)
    angle_jitter: float = 4.0
    brightness: tuple[float, float] = (0.7, 1.0)
    veil: tuple[float, float] = (0.03, 0.2)
    veil_brightness: tuple[float, float] = (0.7, 0.9)
    overcast: tuple[float, float] = (0.65, 1.0)
    drop_prob: float = 0.3
    drops: tuple[float, float] = (2e-5, 1.5e-4)
    veil_variation: tuple[float, float] = (0.3, 0.8)


def _layer_scales(k: int, layers: int) -> tuple[float, float, float, float, float]:
    """(density, length, width, opacity, defocus sigma) multipliers of layer k, far (0) to near."""
    f = k / max(layers - 1, 1)
    return 2.5 - 2.1 * f, 0.45 + 0.55 * f, 0.6 + 0.4 * f, 0.45 + 0.55 * f, 0.2 + 0.6 * f


def streaks(
    n: int,
    h: int,
    w: int,
    rng: np.random.Generator,
    p: RainParams,
    density: Array,
    opacity: Array,
    angle: Array,
    jitter_scale: float = 1.0,
) -> tuple[Array, Record]:
    """The streak layers composited into one (N,H,W) screen layer (values = added light)."""
    sc = size_scale(h, w)
    length = uniform(rng, p.length, n) * sc
    width = uniform(rng, p.width, n) * max(sc, 0.6)
    total = np.zeros((n, h, w), np.float32)
    for k in range(int(p.layers)):
        fd, fl, fw, fo, fs = _layer_scales(k, int(p.layers))
        u = rng.random((n, h, w), dtype=np.float32)
        b = rng.random((n, h, w), dtype=np.float32)
        jit = rng.uniform(-1.0, 1.0, n) * p.angle_jitter * jitter_scale
        lo, hi = p.brightness
        seeds = np.where(u < (density * fd)[:, None, None], lo + (hi - lo) * b, 0.0).astype(np.float32)
        kernels = [line_kernel(length[i] * fl, float(angle[i] + jit[i]), width[i] * fw) for i in range(n)]
        layer = np.clip(stamp(seeds, kernels), 0.0, 1.0)
        layer = gaussian_blur(layer, fs * max(sc, 0.5))
        total = screen(total, layer * (opacity * fo)[:, None, None])
    return total, {"length": length, "width": width}


def _common(clean: Array, rng: np.random.Generator, severity: float | None, p: RainParams, rec: Record):
    n = clean.shape[0]
    density = strength(rng, p.density, n, severity, log=True)
    opacity = strength(rng, p.opacity, n, severity)
    angle = uniform(rng, p.angle, n)
    veil = strength(rng, p.veil, n, severity)
    veil_colour = uniform(rng, p.veil_brightness, n)[:, None] + uniform(rng, (-0.02, 0.02), (n, 3))
    depth = depth_proxy(clean, rng).depth
    rec.update(density=density, opacity=opacity, angle=angle, veil=veil, veil_colour=veil_colour)
    return density, opacity, angle, veil, veil_colour, depth


def _veil(x: Array, veil_map: Array, colour: Array) -> Array:
    v = np.clip(veil_map, 0.0, 1.0)[..., None]
    return x * (1.0 - v) + colour[:, None, None, :] * v


def synthetic(clean: Array, rng: np.random.Generator, severity: float | None, p: RainParams):
    """Homogeneous rain: straight streak layers at one wind angle and a light depth-scaled veil."""
    n, h, w, _ = clean.shape
    rec: Record = {}
    density, opacity, angle, veil, colour, depth = _common(clean, rng, severity, p, rec)
    x = _veil(clean, veil[:, None, None] * depth, colour)
    s, srec = streaks(n, h, w, rng, p, density, opacity, angle)
    rec.update(srec)
    return np.clip(screen(x, s[..., None]), 0.0, 1.0).astype(np.float32), rec


def realistic(clean: Array, rng: np.random.Generator, severity: float | None, p: RainParams):
    """Rain as shot outdoors: patchy mist (rain + haze), gusty angles, tinted streaks, lens drops,
    then blur, cast, vignetting, sensor noise and JPEG."""
    n, h, w, _ = clean.shape
    rec: Record = {}
    density, opacity, angle, veil, colour, depth = _common(clean, rng, severity, p, rec)
    overcast = uniform(rng, p.overcast, n)
    colour = colour * overcast[:, None]
    variation = uniform(rng, p.veil_variation, n)
    patches = smooth_field(rng, n, h, w, cells=3.0, octaves=3)
    veil_map = veil[:, None, None] * 1.8 * depth * (1.0 + variation[:, None, None] * (2 * patches - 1))
    tint = 1.0 + uniform(rng, (-0.08, 0.08), (n, 3))
    use_drops = bernoulli(rng, p.drop_prob, n)
    drop_density = uniform(rng, p.drops, n)
    drop_u = rng.random((n, h, w), dtype=np.float32)
    drop_r = uniform(rng, (4.0, 10.0), n) * size_scale(h, w)

    x = _veil(clean, veil_map, colour)
    s, srec = streaks(n, h, w, rng, p, density, opacity, angle, jitter_scale=3.0)
    rec.update(srec)
    x = screen(x, s[..., None] * tint[:, None, None, :])
    # out-of-focus drops on the lens: soft bright-ish discs that locally wash out the scene
    seeds = np.where(use_drops[:, None, None] & (drop_u < drop_density[:, None, None]), 1.0, 0.0)
    drops = np.clip(stamp(seeds.astype(np.float32), [disc_kernel(r, soft=r * 0.6) for r in drop_r]), 0, 1)
    x = x * (1.0 - 0.35 * drops[..., None]) + 0.35 * drops[..., None] * gaussian_blur(x, 3.0)
    x = apply_blur(np.clip(x, 0.0, 1.0), rng, p, rec)
    x = apply_camera(x, rng, p, rec)
    rec.update(
        overcast=overcast,
        veil_variation=variation,
        streak_tint=tint,
        lens_drops=np.where(use_drops, drop_density, 0.0),
    )
    return x, rec
