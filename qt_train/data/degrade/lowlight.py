"""Low light: exposure drop in linear light, Poisson-Gaussian sensor noise, white-balance shift,
display gamma and 8-bit quantisation (which bands the now-narrow tonal range)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .common import (
    Array,
    RealismParams,
    Record,
    apply_blur,
    apply_camera,
    cast_gains,
    poisson_gaussian,
    quantise,
    smooth_field,
    strength,
    to_display,
    to_linear,
    uniform,
)


@dataclass(frozen=True)
class LowLightParams(RealismParams):
    """Ranges for low light.

    exposure: linear-light exposure factor relative to the clean image, log-sampled; the main
        strength together with the sensor noise (severity 0 -> first values, 1 -> second values).
    sensor_shot: Poisson shot-noise gain (variance = gain * linear signal): fewer photons -> more.
    sensor_read: Gaussian read-noise std in linear units.
    gamma: extra display gamma (> 1 crushes shadows further, as a dark JPEG tone curve does).
    wb_shift: strength of the white-balance error of auto-WB in the dark (relative gain spread).
    light_pools: (realistic) amplitude of non-uniform illumination (lamps, light pools), so the
        exposure varies across the frame by up to this factor.
    warm_cast: (realistic) strength of a warm (tungsten/sodium) cast.
    camera_noise_gain: (realistic) multiplier on the camera chain's noise (high ISO).
    blur_prob_dark: (realistic) chance of motion/defocus blur (long exposures), overrides blur_prob.
    """

    exposure: tuple[float, float] = (0.3, 0.03)
    sensor_shot: tuple[float, float] = (3e-4, 4e-3)
    sensor_read: tuple[float, float] = (1e-3, 6e-3)
    gamma: tuple[float, float] = (1.0, 1.3)
    wb_shift: tuple[float, float] = (0.0, 0.12)
    light_pools: tuple[float, float] = (0.3, 1.5)
    warm_cast: tuple[float, float] = (0.05, 0.25)
    camera_noise_gain: tuple[float, float] = (1.0, 2.5)
    blur_prob_dark: float = 0.5


def _core(
    clean: Array,
    rng: np.random.Generator,
    severity: float | None,
    p: LowLightParams,
    rec: Record,
    illumination: Array | None = None,
) -> Array:
    n, h, w, _ = clean.shape
    exposure = strength(rng, p.exposure, n, severity, log=True)
    shot = strength(rng, p.sensor_shot, n, severity, log=True)
    read = strength(rng, p.sensor_read, n, severity, log=True)
    gamma = uniform(rng, p.gamma, n)
    gains = cast_gains(rng, n, uniform(rng, p.wb_shift, n))
    z = rng.standard_normal((n, h, w, 3), dtype=np.float32)

    lin = to_linear(clean) * exposure[:, None, None, None]
    if illumination is not None:
        lin = lin * illumination[..., None]
    lin = lin * gains[:, None, None, :]
    lin = np.clip(poisson_gaussian(lin, shot, read, z), 0.0, 1.0)
    x = np.power(to_display(lin), gamma[:, None, None, None])
    rec.update(exposure=exposure, sensor_shot=shot, sensor_read=read, gamma=gamma, wb_gains=gains)
    return quantise(x)


def synthetic(clean: Array, rng: np.random.Generator, severity: float | None, p: LowLightParams):
    """Uniformly under-exposed frame with clean Poisson-Gaussian noise and 8-bit quantisation."""
    rec: Record = {}
    return _core(clean, rng, severity, p, rec), rec


def realistic(clean: Array, rng: np.random.Generator, severity: float | None, p: LowLightParams):
    """Night capture: uneven lighting (light pools), warm cast, long-exposure blur, high-ISO noise
    with row banding and colour blotches, vignetting and JPEG."""
    n, h, w, _ = clean.shape
    rec: Record = {}
    pools = uniform(rng, p.light_pools, n)
    field = smooth_field(rng, n, h, w, cells=2.0, octaves=2)
    # geometric mean ~1 so the mean exposure stays the one severity set; lamps up to `pools` x.
    illum = np.exp(np.log1p(pools)[:, None, None] * (field - 0.5) * 2.0).astype(np.float32)
    warm = uniform(rng, p.warm_cast, n)
    noise_gain = uniform(rng, p.camera_noise_gain, n)
    x = _core(clean, rng, severity, p, rec, illumination=illum)
    warm_gain = 1.0 + warm[:, None] * np.array([1.0, 0.1, -0.9], np.float32)
    x = np.clip(x * warm_gain[:, None, None, :], 0.0, 1.0)
    x = apply_blur(x, rng, p, rec, blur_prob=p.blur_prob_dark)
    x = apply_camera(x, rng, p, rec, noise_scale=noise_gain)
    rec.update(light_pools=pools, warm_cast=warm, camera_noise_gain=noise_gain)
    return x, rec
