"""Underwater: wavelength-dependent attenuation plus blue-green backscatter.

Per channel c:  I_c = J_c * L_c * exp(-beta_c * d) + B_c * (1 - exp(-k * beta_c * d)),
where d is the scene range (metres), beta_c the attenuation coefficient (red > green > blue in
open water), L_c the colour of the downwelling light after the water column above the scene, and
B_c the veiling (backscatter) colour at infinity. Both domains mix open-ocean (blue) and coastal
(green) water and end with the camera's partial automatic white balance: real underwater photos
(the real-train set: median R/G 0.39, 10-90% 0.06-0.9; B/G 0.56-1.25) are far less red-starved than
the attenuation model alone makes them (R/G median 0.18), and a model trained on the latter learnt
a fixed red boost that paints real green-water scenes orange.
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
    size_scale,
    smooth_field,
    stamp,
    strength,
    uniform,
)


@dataclass(frozen=True)
class UnderwaterParams(RealismParams):
    """Ranges for underwater.

    distance: range of the farthest scene point in metres; the main strength (severity 0 -> first
        value, 1 -> second value).
    near: range of the nearest pixel as a fraction of ``distance``.
    beta_red / beta_green / beta_blue: attenuation coefficients per metre (red is absorbed
        fastest by water; blue travels farthest in clear oceanic water).
    water_depth: metres of water column above the scene that tint the light reaching it.
    veil_red / veil_green / veil_blue: backscatter (veiling light) colour at infinite range.
    backscatter_gain: backscatter coefficient relative to attenuation (scattering/turbidity).
    green_water_prob: chance of coastal green water (blue absorbed more than green).
    white_balance: strength of the camera's gray-world white balance (0 = none, 1 = full).
    turbidity_variation: (realistic) relative amplitude of spatially varying turbidity.
    torch_prob / torch: (realistic) chance and strength of an artificial light's hot spot.
    marine_snow: (realistic) density of suspended particles lit in front of the camera.
    """

    distance: tuple[float, float] = (1.0, 12.0)
    near: tuple[float, float] = (0.15, 0.45)
    beta_red: tuple[float, float] = (0.3, 0.6)
    beta_green: tuple[float, float] = (0.06, 0.14)
    beta_blue: tuple[float, float] = (0.03, 0.08)
    water_depth: tuple[float, float] = (0.0, 3.0)
    veil_red: tuple[float, float] = (0.0, 0.12)
    veil_green: tuple[float, float] = (0.35, 0.6)
    veil_blue: tuple[float, float] = (0.45, 0.75)
    backscatter_gain: tuple[float, float] = (1.5, 3.0)
    green_water_prob: float = 0.35
    white_balance: tuple[float, float] = (0.0, 1.0)
    turbidity_variation: tuple[float, float] = (0.2, 0.6)
    torch_prob: float = 0.4
    torch: tuple[float, float] = (0.2, 0.6)
    marine_snow: tuple[float, float] = (2e-4, 2e-3)


def _water(clean: Array, rng: np.random.Generator, severity: float | None, p: UnderwaterParams, rec: Record):
    n = clean.shape[0]
    distance = strength(rng, p.distance, n, severity)
    near = uniform(rng, p.near, n)
    beta = np.stack(
        [uniform(rng, p.beta_red, n), uniform(rng, p.beta_green, n), uniform(rng, p.beta_blue, n)], 1
    )
    veil = np.stack(
        [uniform(rng, p.veil_red, n), uniform(rng, p.veil_green, n), uniform(rng, p.veil_blue, n)], 1
    )
    # coastal (green) water: swap green/blue attenuation and tint the veil green-yellow
    green = bernoulli(rng, p.green_water_prob, n)
    beta = np.where(green[:, None], beta[:, [0, 2, 1]] * np.array([1.0, 1.0, 1.6], np.float32), beta)
    green_veil = veil[:, [0, 2, 1]] * np.array([1.3, 0.85, 0.6], np.float32)
    green_veil = 0.6 * green_veil + 0.4 * green_veil.mean(axis=1, keepdims=True)  # murky, not neon
    veil = np.where(green[:, None], green_veil, veil)
    water_depth = uniform(rng, p.water_depth, n)
    gain = uniform(rng, p.backscatter_gain, n)
    ds = depth_proxy(
        clean, rng, vertical_weight=(0.3, 0.8), luminance_weight=(0.0, 0.2), noise_weight=(0.2, 0.5)
    )
    d = distance[:, None, None] * (near[:, None, None] + (1.0 - near[:, None, None]) * ds.depth)
    rec.update(
        distance=distance,
        near=near,
        beta=beta,
        veil=veil,
        green_water=green,
        water_depth=water_depth,
        backscatter_gain=gain,
    )
    return beta, veil, water_depth, gain, d


def attenuate(clean: Array, d: Array, beta: Array, veil: Array, water_depth: Array, gain: Array) -> Array:
    """The image-formation model above; ``beta`` (N,3) or (N,H,W,3), ``d`` (N,H,W)."""
    b = beta[:, None, None, :] if beta.ndim == 2 else beta
    light = np.exp(-b * water_depth[:, None, None, None])
    direct = np.exp(-b * d[..., None])
    back = 1.0 - np.exp(-b * gain[:, None, None, None] * d[..., None])
    return (clean * light * direct + veil[:, None, None, :] * back).astype(np.float32)


def water_tint(beta: Array, water_depth: Array) -> Array:
    """(N,3) colour of the light after the water column above the scene: the illuminant a camera's
    white balance estimates (the range-dependent loss towards each object is not compensated)."""
    b = beta.reshape(beta.shape[0], -1, 3).mean(axis=1)
    return np.exp(-b * water_depth[:, None])


def white_balance(x: Array, tint: Array, strength: Array) -> Array:
    """The camera's white balance against the water's tint, partly applied (strength 0..1): a
    von Kries gain (max tint / tint_c) ** s per channel, which lifts the absorbed channels and
    keeps the scene's colours and the brightest channel's exposure."""
    gains = (tint.max(axis=1, keepdims=True) / np.maximum(tint, 1e-3)) ** strength[:, None]
    return np.clip(x * gains[:, None, None, :], 0.0, 1.0).astype(np.float32)


def synthetic(clean: Array, rng: np.random.Generator, severity: float | None, p: UnderwaterParams):
    """Clear homogeneous water: one set of coefficients per image over a smooth range map."""
    rec: Record = {}
    beta, veil, water_depth, gain, d = _water(clean, rng, severity, p, rec)
    wb = uniform(rng, p.white_balance, clean.shape[0])
    rec.update(white_balance=wb)
    x = np.clip(attenuate(clean, d, beta, veil, water_depth, gain), 0.0, 1.0)
    return white_balance(x, water_tint(beta, water_depth), wb), rec


def realistic(clean: Array, rng: np.random.Generator, severity: float | None, p: UnderwaterParams):
    """Turbid, variable water: patchy turbidity, a diver's torch hot spot, lit marine snow, then
    blur, white balance, cast, vignetting, sensor noise and JPEG."""
    n, h, w, _ = clean.shape
    rec: Record = {}
    beta, veil, water_depth, gain, d = _water(clean, rng, severity, p, rec)
    variation = uniform(rng, p.turbidity_variation, n)
    patches = smooth_field(rng, n, h, w, cells=3.0, octaves=3)
    use_torch = bernoulli(rng, p.torch_prob, n)
    torch_strength = np.where(use_torch, uniform(rng, p.torch, n), 0.0).astype(np.float32)
    tx, ty = uniform(rng, (0.3, 0.7), n), uniform(rng, (0.3, 0.7), n)
    snow_density = uniform(rng, p.marine_snow, n)
    snow_u = rng.random((n, h, w), dtype=np.float32)
    snow_b = rng.random((n, h, w), dtype=np.float32)
    wb = uniform(rng, p.white_balance, n)

    beta_map = beta[:, None, None, :] * (1.0 + variation[:, None, None, None] * (2 * patches[..., None] - 1))
    x = attenuate(clean, d, beta_map, veil, water_depth, gain)
    # artificial light: a broad warm-white hot spot that restores some red near the centre
    ys = np.linspace(0.0, 1.0, h, dtype=np.float32)[None, :, None]
    xs = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, None, :]
    spot = np.exp(-((xs - tx[:, None, None]) ** 2 + (ys - ty[:, None, None]) ** 2) / 0.08)
    x = x * (
        1.0 + torch_strength[:, None, None, None] * spot[..., None] * np.array([1.6, 1.1, 0.8], np.float32)
    )
    # marine snow: small bright suspended particles, some defocused
    seeds = np.where(snow_u < snow_density[:, None, None], 0.5 + 0.5 * snow_b, 0.0).astype(np.float32)
    sc = size_scale(h, w)
    particles = np.clip(stamp(seeds, [disc_kernel(1.2 * sc, soft=1.5) for _ in range(n)]), 0.0, 1.0)
    particles = gaussian_blur(particles, 0.6 * sc)
    x = x + 0.6 * particles[..., None] * (0.6 + 0.4 * veil[:, None, None, :])
    x = apply_blur(np.clip(x, 0.0, 1.0), rng, p, rec)
    x = apply_camera(white_balance(x, water_tint(beta, water_depth), wb), rng, p, rec)
    rec.update(
        white_balance=wb,
        turbidity_variation=variation,
        torch=torch_strength,
        marine_snow=snow_density,
    )
    return x, rec
