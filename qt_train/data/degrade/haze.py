"""Haze / fog: the atmospheric scattering model I = J*t + A*(1 - t), t = exp(-beta * d)."""

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
    smooth_field,
    strength,
    uniform,
)


@dataclass(frozen=True)
class HazeParams(RealismParams):
    """Ranges for haze.

    beta: scattering coefficient times the scene's depth span; the main strength (severity 0 ->
        first value, 1 -> second).  t at the farthest point is exp(-beta).
    near: depth of the nearest pixel as a fraction of the farthest (the foreground is hazed too).
    airlight: brightness of the atmospheric light A (grey-white sky radiance).
    airlight_tint: max per-channel deviation of A from grey (slightly warm or bluish fog).
    vertical_weight / luminance_weight / noise_weight: mixing weights of the depth proxy's terms
        (vertical ramp, bright low-frequency regions, smooth noise).
    beta_variation: (realistic) relative amplitude of the spatially varying beta (patchy fog).
    airlight_gradient: (realistic) how much brighter A is at the top than at the bottom.
    """

    beta: tuple[float, float] = (0.5, 2.6)
    near: tuple[float, float] = (0.1, 0.35)
    airlight: tuple[float, float] = (0.7, 0.95)
    airlight_tint: float = 0.04
    vertical_weight: tuple[float, float] = (0.5, 1.0)
    luminance_weight: tuple[float, float] = (0.0, 0.35)
    noise_weight: tuple[float, float] = (0.1, 0.4)
    beta_variation: tuple[float, float] = (0.3, 0.8)
    airlight_gradient: tuple[float, float] = (0.0, 0.12)


def _airlight(rng: np.random.Generator, n: int, p: HazeParams) -> Array:
    """(N,3) slightly coloured grey-white atmospheric light."""
    a = uniform(rng, p.airlight, n)[:, None]
    tint = uniform(rng, (-p.airlight_tint, p.airlight_tint), (n, 3))
    return np.clip(a + tint, 0.0, 1.0).astype(np.float32)


def _scene(clean: Array, rng: np.random.Generator, severity: float | None, p: HazeParams, rec: Record):
    n = clean.shape[0]
    beta = strength(rng, p.beta, n, severity)
    near = uniform(rng, p.near, n)
    airlight = _airlight(rng, n, p)
    ds = depth_proxy(clean, rng, p.vertical_weight, p.luminance_weight, p.noise_weight)
    depth = near[:, None, None] + (1.0 - near[:, None, None]) * ds.depth
    rec.update(
        beta=beta,
        near=near,
        airlight=airlight,
        depth_vertical_weight=ds.vertical_weight,
        depth_luminance_weight=ds.luminance_weight,
        depth_noise_weight=ds.noise_weight,
    )
    return beta, airlight, depth


def scatter(clean: Array, t: Array, airlight: Array) -> Array:
    """Koschmieder's model with a per-pixel transmission (N,H,W) and airlight (N,3) or (N,H,W,3)."""
    a = airlight[:, None, None, :] if airlight.ndim == 2 else airlight
    return (clean * t[..., None] + a * (1.0 - t[..., None])).astype(np.float32)


def synthetic(clean: Array, rng: np.random.Generator, severity: float | None, p: HazeParams):
    """Homogeneous haze: one beta and one airlight per image, smooth depth proxy."""
    rec: Record = {}
    beta, airlight, depth = _scene(clean, rng, severity, p, rec)
    t = np.exp(-beta[:, None, None] * depth)
    return np.clip(scatter(clean, t, airlight), 0.0, 1.0), rec


def realistic(clean: Array, rng: np.random.Generator, severity: float | None, p: HazeParams):
    """Non-homogeneous, patchy fog with a sky-bright airlight gradient, shot by a real camera.

    Adds what the synthetic pairs lack: spatially varying beta, airlight that is not constant,
    blur, colour cast, vignetting, sensor noise and JPEG.
    """
    n, h, w, _ = clean.shape
    rec: Record = {}
    beta, airlight, depth = _scene(clean, rng, severity, p, rec)
    variation = uniform(rng, p.beta_variation, n)
    patches = smooth_field(rng, n, h, w, cells=3.0, octaves=3)
    beta_map = beta[:, None, None] * (1.0 + variation[:, None, None] * (2.0 * patches - 1.0))
    grad = uniform(rng, p.airlight_gradient, n)
    ys = np.linspace(0.5, -0.5, h, dtype=np.float32)[None, :, None, None]
    a_map = np.clip(airlight[:, None, None, :] * (1.0 + grad[:, None, None, None] * ys), 0.0, 1.0)

    t = np.exp(-np.maximum(beta_map, 0.0) * depth)
    x = scatter(clean, t, a_map)
    x = apply_blur(np.clip(x, 0.0, 1.0), rng, p, rec)
    x = apply_camera(x, rng, p, rec)
    rec.update(beta_variation=variation, airlight_gradient=grad)
    return x, rec
