"""Shared building blocks of the degradation engine.

Everything here works on a batch of float32 RGB images shaped (N, H, W, 3) in [0, 1] and draws
randomness only from the ``np.random.Generator`` it is handed, so the synthesizers stay
bit-reproducible.  OpenCV filters are applied to the whole batch at once by stacking images as
channels (``(N, H, W, C) -> (H, W, N*C)``); only operations that need a per-image kernel or codec
(streak kernels, JPEG) loop over the (small) batch.

A rule every synthesizer follows so that ``severity`` is monotone for a fixed seed: the number and
order of random draws never depends on parameter *values*; the main strength is always drawn and
then, if a severity is given, overridden.  Stochastic structures (streak seeds, flakes, noise) are
made from a fixed random field that is thresholded or scaled by the strength, so a stronger
setting contains the weaker one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from qt_core.pixels import to_uint8

Array = np.ndarray
Record = dict[str, Array]
"""Per-batch sampled parameters: name -> array of shape (N,) or (N, k)."""

# OpenCV's channel limit per Mat: 512 in 4.x, 128 in 5.x (filters fail on more with "m->dims <= 2").
_CV_MAX_CHANNELS = 128


# --------------------------------------------------------------------------------------------- rng, ranges


def as_rng(rng: np.random.Generator | int) -> np.random.Generator:
    """Accept a Generator (used as is) or an integer seed; nothing else (no global RNG state)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator or an int seed, got {type(rng).__name__}")


def check_severity(severity: float | None) -> float | None:
    if severity is None:
        return None
    s = float(severity)
    if not 0.0 <= s <= 1.0 or not np.isfinite(s):
        raise ValueError(f"severity must be in [0, 1], got {severity!r}")
    return s


def uniform(rng: np.random.Generator, lo_hi: tuple[float, float], size: int | tuple[int, ...]) -> Array:
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    return (lo + (hi - lo) * rng.random(size)).astype(np.float32)


def log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float], size: int | tuple[int, ...]) -> Array:
    lo, hi = np.log(float(lo_hi[0])), np.log(float(lo_hi[1]))
    return np.exp(lo + (hi - lo) * rng.random(size)).astype(np.float32)


def strength(
    rng: np.random.Generator,
    lo_hi: tuple[float, float],
    n: int,
    severity: float | None,
    log: bool = False,
) -> Array:
    """The task's main strength, (N,): sampled from the range, or fixed by ``severity``.

    The uniform draw is consumed even when severity is given so that every other parameter sees
    the same random stream at every severity (pairs differ only in strength).  Severity maps
    linearly (or log-linearly) from ``lo_hi[0]`` (mild, 0) to ``lo_hi[1]`` (severe, 1); a range
    given high-to-low (e.g. exposure) is therefore simply written (mild, severe).
    """
    u = rng.random(n)
    if severity is not None:
        u = np.full(n, severity)
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    if log:
        return np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * u).astype(np.float32)
    return (lo + (hi - lo) * u).astype(np.float32)


def bernoulli(rng: np.random.Generator, p: float, n: int) -> Array:
    return rng.random(n) < float(p)


def size_scale(h: int, w: int) -> float:
    """Pixel sizes in the params are given for a 256-px short side; scale them to this image."""
    return max(min(h, w) / 256.0, 0.25)


# --------------------------------------------------------------------------------------------- batch plumbing


def as_batch(img: Array) -> tuple[Array, bool]:
    """(H,W,3) or (N,H,W,3) -> float32 (N,H,W,3) clipped to [0,1], and whether a batch was given."""
    a = np.asarray(img)
    if a.ndim not in (3, 4) or a.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H,W,3) or batch (N,H,W,3), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"expected a float image in [0,1], got dtype {a.dtype}")
    batched = a.ndim == 4
    a = a if batched else a[None]
    if a.shape[1] < 16 or a.shape[2] < 16:
        raise ValueError(f"images must be at least 16x16, got {a.shape[1]}x{a.shape[2]}")
    return np.clip(a.astype(np.float32, copy=False), 0.0, 1.0), batched


def cv_batch(x: Array, fn: Callable[[Array], Array]) -> Array:
    """Apply a shape-preserving cv2 filter to every image/channel of (N,H,W[,C]) in few calls."""
    squeeze = x.ndim == 3
    a = x[..., None] if squeeze else x
    n, h, w, c = a.shape
    stacked = np.ascontiguousarray(a.transpose(1, 2, 0, 3).reshape(h, w, n * c))
    parts = []
    for s in range(0, n * c, _CV_MAX_CHANNELS):
        chunk = np.ascontiguousarray(stacked[:, :, s : s + _CV_MAX_CHANNELS])
        out = fn(chunk)
        parts.append(out.reshape(h, w, -1))
    out = np.concatenate(parts, axis=2).reshape(h, w, n, c).transpose(2, 0, 1, 3)
    out = np.ascontiguousarray(out, dtype=np.float32)
    return out[..., 0] if squeeze else out


def gaussian_blur(x: Array, sigma: float) -> Array:
    """Gaussian blur of (N,H,W[,C]) with one sigma for the batch."""
    if sigma <= 0:
        return x.astype(np.float32, copy=True)
    return cv_batch(
        x, lambda a: cv2.GaussianBlur(a, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)
    )


def resize_batch(x: Array, h: int, w: int, interp: int = cv2.INTER_CUBIC) -> Array:
    """Resize every map of (N,h0,w0[,C]) to (h, w) (cv2 takes dsize as (w, h))."""
    squeeze = x.ndim == 3
    a = x[..., None] if squeeze else x
    n, h0, w0, c = a.shape
    stacked = np.ascontiguousarray(a.transpose(1, 2, 0, 3).reshape(h0, w0, n * c), dtype=np.float32)
    parts = [
        cv2.resize(
            np.ascontiguousarray(stacked[:, :, s : s + _CV_MAX_CHANNELS]), (w, h), interpolation=interp
        ).reshape(h, w, -1)
        for s in range(0, n * c, _CV_MAX_CHANNELS)
    ]
    out = np.concatenate(parts, axis=2).reshape(h, w, n, c).transpose(2, 0, 1, 3)
    out = np.ascontiguousarray(out, dtype=np.float32)
    return out[..., 0] if squeeze else out


def luminance(x: Array) -> Array:
    return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]).astype(np.float32)


def normalise01(m: Array) -> Array:
    """Min-max normalise each map of (N,H,W) to [0,1] (constant maps become 0.5)."""
    lo = m.min(axis=(1, 2), keepdims=True)
    hi = m.max(axis=(1, 2), keepdims=True)
    span = hi - lo
    return np.where(span > 1e-8, (m - lo) / np.maximum(span, 1e-8), 0.5).astype(np.float32)


def to_linear(x: Array) -> Array:
    """sRGB -> linear light, where sensor noise and exposure are physical."""
    x = np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4)).astype(np.float32)


def to_display(x: Array) -> Array:
    """Linear light -> sRGB; the curve's linear toe (slope 12.92) keeps dark noise bounded."""
    x = np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(np.float32)


# --------------------------------------------------------------------------------------------- fields, depth


def smooth_field(
    rng: np.random.Generator, n: int, h: int, w: int, cells: float = 3.0, octaves: int = 3
) -> Array:
    """Low-frequency fractal noise, (N,H,W) normalised to [0,1] per image.

    Random grids are bicubically upsampled (value noise); octaves double the frequency and halve
    the amplitude.  ``cells`` is the number of cells across the long side, so the field looks the
    same at any resolution.
    """
    total = np.zeros((n, h, w), np.float32)
    amp = 1.0
    for o in range(octaves):
        c = cells * (2**o)
        gh = int(np.ceil(c * h / max(h, w))) + 2
        gw = int(np.ceil(c * w / max(h, w))) + 2
        grid = rng.standard_normal((n, gh, gw)).astype(np.float32)
        total += amp * resize_batch(grid, h, w, cv2.INTER_CUBIC)
        amp *= 0.5
    return normalise01(total)


@dataclass(frozen=True)
class DepthSample:
    depth: Array  # (N,H,W) in [0,1], 1 = far
    vertical_weight: Array
    luminance_weight: Array
    noise_weight: Array


def depth_proxy(
    clean: Array,
    rng: np.random.Generator,
    vertical_weight: tuple[float, float] = (0.5, 1.0),
    luminance_weight: tuple[float, float] = (0.0, 0.35),
    noise_weight: tuple[float, float] = (0.1, 0.4),
) -> DepthSample:
    """A plausible scene-depth map without a depth network, (N,H,W) in [0,1] (1 = far).

    Outdoor photos are mostly ground at the bottom and far scene/sky at the top, so the main term
    is a vertical ramp (with a random horizon curve); bright low-frequency regions (sky, distant
    haze) lean far; smooth noise breaks the ramp's regularity.  Coarse on purpose: only
    low-frequency depth is needed for scattering, and sharp depth edges would draw halos.
    """
    n, h, w, _ = clean.shape
    wv = uniform(rng, vertical_weight, n)
    wl = uniform(rng, luminance_weight, n)
    wn = uniform(rng, noise_weight, n)
    curve = uniform(rng, (0.6, 1.6), n)  # ramp exponent: where the "horizon" sits
    ys = np.linspace(1.0, 0.0, h, dtype=np.float32)[None, :, None]
    ramp = np.power(ys, curve[:, None, None]) * np.ones((1, 1, w), np.float32)
    small = max(8, min(h, w) // 8)
    lum = luminance(clean)
    lum_low = resize_batch(
        gaussian_blur(resize_batch(lum, small, max(8, small * w // h), cv2.INTER_AREA), small / 10.0),
        h,
        w,
        cv2.INTER_LINEAR,
    )
    noise = smooth_field(rng, n, h, w, cells=2.5, octaves=2)
    d = wv[:, None, None] * ramp + wl[:, None, None] * lum_low + wn[:, None, None] * noise
    return DepthSample(normalise01(d), wv, wl, wn)


# --------------------------------------------------------------------------------------------- kernels


def line_kernel(length: float, angle_deg: float, width: float = 1.0, taper: bool = True) -> Array:
    """Anti-aliased line segment kernel (peak ~1), built analytically (no RNG, no drawing).

    ``angle_deg`` is measured from the image's vertical axis (0 = straight down, positive leans
    right), which is how falling rain/snow is described.  ``taper`` fades the ends like a real
    streak whose drop enters and leaves the exposure.
    """
    length = max(float(length), 1.0)
    half = int(np.ceil(length / 2 + width + 1))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    th = np.deg2rad(angle_deg)
    dx, dy = np.sin(th), np.cos(th)
    along = xx * dx + yy * dy
    across = -xx * dy + yy * dx
    w_across = np.clip(1.0 - np.abs(across) / max(width, 0.5), 0.0, 1.0)
    t = along / (length / 2)
    w_along = np.clip(1.0 - np.abs(t), 0.0, 1.0) if taper else (np.abs(t) <= 1.0).astype(np.float32)
    if taper:
        w_along = np.sqrt(w_along)
    k = (w_across * w_along).astype(np.float32)
    return k / max(float(k.max()), 1e-8)


def motion_kernel(length: float, angle_deg: float) -> Array:
    """Camera-shake / object-motion blur kernel: an untapered line normalised to sum 1."""
    k = line_kernel(length, angle_deg, width=1.0, taper=False)
    return (k / k.sum()).astype(np.float32)


def disc_kernel(radius: float, soft: float = 1.0) -> Array:
    """Disc with a soft edge (peak 1): defocus PSF when normalised, or a snowflake stamp."""
    radius = max(float(radius), 0.5)
    half = int(np.ceil(radius + soft + 1))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    r = np.sqrt(xx**2 + yy**2)
    k = np.clip((radius + soft / 2 - r) / max(soft, 1e-3), 0.0, 1.0)
    return k.astype(np.float32)


def filter_map(m: Array, kernel: Array, constant_border: bool = True) -> Array:
    """Correlate one (H,W[,C]) map with a kernel (DFT-backed in cv2 for large kernels)."""
    border = cv2.BORDER_CONSTANT if constant_border else cv2.BORDER_REFLECT
    return cv2.filter2D(np.ascontiguousarray(m, dtype=np.float32), -1, kernel, borderType=border)


def stamp(seeds: Array, kernels: list[Array]) -> Array:
    """Spread sparse seed maps (N,H,W) with one kernel per image -> (N,H,W) structure layer."""
    return np.stack([filter_map(seeds[i], kernels[i]) for i in range(seeds.shape[0])]).astype(np.float32)


# --------------------------------------------------------------------------------------------- camera effects


def screen(base: Array, layer: Array) -> Array:
    """Screen blend: adds light the way a bright semi-transparent streak does, never exceeding 1."""
    return 1.0 - (1.0 - base) * (1.0 - np.clip(layer, 0.0, 1.0))


def vignette_map(rng: np.random.Generator, n: int, h: int, w: int, strength_: Array) -> Array:
    """Multiplicative lens fall-off (N,H,W,1): 1 at a jittered optical centre, 1-strength at corners."""
    cx = uniform(rng, (-0.15, 0.15), n)[:, None, None]
    cy = uniform(rng, (-0.15, 0.15), n)[:, None, None]
    ys = np.linspace(-1.0, 1.0, h, dtype=np.float32)[None, :, None]
    xs = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, None, :]
    r2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / 2.0
    v = 1.0 - strength_[:, None, None] * np.clip(r2, 0, 1.5) ** 1.5
    return np.clip(v, 0.0, 1.0)[..., None].astype(np.float32)


def cast_gains(rng: np.random.Generator, n: int, amount: Array) -> Array:
    """Per-channel white-balance gains (N,3) with a random hue, roughly luminance-preserving."""
    direction = rng.standard_normal((n, 3)).astype(np.float32)
    direction -= direction.mean(axis=1, keepdims=True)
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-6)
    return (1.0 + amount[:, None] * direction * 1.2).astype(np.float32)


def poisson_gaussian(
    x_lin: Array, shot: Array, read: Array, z: Array, row_offset: Array | None = None
) -> Array:
    """Signal-dependent sensor noise in linear space: var = shot*x + read^2 (Gaussian approx.).

    ``z`` is a standard-normal field of the image's shape: passing the same field at different
    strengths gives nested noise, which keeps severity ordering clean.  ``row_offset`` optionally
    adds a per-row offset (row/banding noise of real CMOS read-out).
    """
    sd = np.sqrt(np.maximum(shot[:, None, None, None] * x_lin, 0.0) + read[:, None, None, None] ** 2)
    out = x_lin + sd * z
    if row_offset is not None:
        out = out + row_offset
    return out.astype(np.float32)


def quantise(x: Array, levels: int = 255) -> Array:
    return (np.round(np.clip(x, 0.0, 1.0) * levels) / levels).astype(np.float32)


def jpeg_roundtrip(img: Array, quality: int) -> Array:
    """Encode/decode one (H,W,3) RGB float image as JPEG (4:2:0 chroma): blocking, ringing, bleed."""
    u8 = to_uint8(img)
    ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:  # pragma: no cover - cv2 always encodes a valid uint8 image
        raise RuntimeError("JPEG encoding failed")
    dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return (dec[..., ::-1].astype(np.float32) / 255.0).copy()


def blur_one(img: Array, kind: str, radius: float, length: float, angle: float) -> Array:
    if kind == "defocus":
        k = disc_kernel(radius, soft=1.0)
        k = k / k.sum()
    elif kind == "motion":
        k = motion_kernel(length, angle)
    else:
        return img
    return filter_map(img, k, constant_border=False)


# --------------------------------------------------------------------------------------------- realism


@dataclass(frozen=True)
class RealismParams:
    """Camera-side nuisances of the ``realistic`` domain (shared by every task).

    blur_prob: chance of a blurred capture; half defocus (disc PSF of ``defocus_radius`` px at a
        256-px short side), half motion (line PSF of ``motion_length`` px, any angle).
    cast: strength of a colour cast (white-balance error) as a relative per-channel gain spread.
    vignette_prob / vignette: chance and corner darkening (fraction) of lens vignetting.
    shot_noise: Poisson shot-noise gain in linear units (variance = gain * signal), log-sampled.
    read_noise: Gaussian read-noise std in linear units, log-sampled.
    row_noise: std of per-row offsets relative to read noise (CMOS banding).
    chroma_noise: amplitude of low-frequency colour-correlated noise blotches (display units).
    jpeg_prob / jpeg_quality: chance and quality range of a JPEG round trip.
    """

    blur_prob: float = 0.35
    defocus_radius: tuple[float, float] = (0.8, 2.5)
    motion_length: tuple[float, float] = (3.0, 9.0)
    cast: tuple[float, float] = (0.02, 0.12)
    vignette_prob: float = 0.5
    vignette: tuple[float, float] = (0.1, 0.45)
    shot_noise: tuple[float, float] = (1e-4, 2e-3)
    read_noise: tuple[float, float] = (5e-4, 3e-3)
    row_noise: tuple[float, float] = (0.0, 0.35)
    chroma_noise: tuple[float, float] = (0.0, 0.02)
    jpeg_prob: float = 0.9
    jpeg_quality: tuple[int, int] = (30, 85)


def apply_blur(
    x: Array, rng: np.random.Generator, p: RealismParams, rec: Record, blur_prob: float | None = None
) -> Array:
    """Random defocus/motion blur per image (draws always consumed); ``blur_prob`` overrides p's."""
    n, h, w, _ = x.shape
    sc = size_scale(h, w)
    use = bernoulli(rng, p.blur_prob if blur_prob is None else blur_prob, n)
    is_motion = rng.random(n) < 0.5
    radius = uniform(rng, p.defocus_radius, n) * sc
    length = uniform(rng, p.motion_length, n) * sc
    angle = uniform(rng, (-90.0, 90.0), n)
    kinds = np.where(use, np.where(is_motion, "motion", "defocus"), "none")
    out = np.stack([blur_one(x[i], str(kinds[i]), radius[i], length[i], angle[i]) for i in range(n)])
    rec["blur"] = kinds
    rec["blur_radius"] = np.where(kinds == "defocus", radius, 0.0)
    rec["blur_length"] = np.where(kinds == "motion", length, 0.0)
    rec["blur_angle"] = np.where(kinds == "motion", angle, 0.0)
    return out.astype(np.float32)


def apply_camera(
    x: Array, rng: np.random.Generator, p: RealismParams, rec: Record, noise_scale: Array | None = None
) -> Array:
    """The shared realistic capture chain: cast -> vignette -> sensor noise -> 8-bit -> JPEG.

    Order follows a camera: optics (vignetting), sensor (noise in linear light, white balance
    applied to the raw-ish signal), then the ISP's quantisation and codec.  ``noise_scale``
    (N,) lets a task raise the noise (e.g. a dark scene with gain).
    """
    n, h, w, _ = x.shape
    # colour cast (white-balance error)
    amount = uniform(rng, p.cast, n)
    gains = cast_gains(rng, n, amount)
    # vignetting
    use_vig = bernoulli(rng, p.vignette_prob, n)
    vig_strength = np.where(use_vig, uniform(rng, p.vignette, n), 0.0).astype(np.float32)
    vig = vignette_map(rng, n, h, w, vig_strength)
    # sensor noise
    shot = log_uniform(rng, p.shot_noise, n)
    read = log_uniform(rng, p.read_noise, n)
    row_rel = uniform(rng, p.row_noise, n)
    chroma = uniform(rng, p.chroma_noise, n)
    z = rng.standard_normal((n, h, w, 3), dtype=np.float32)
    z_row = rng.standard_normal((n, h, 1, 1), dtype=np.float32)
    chroma_field = np.stack([smooth_field(rng, n, h, w, cells=24.0, octaves=1) for _ in range(3)], axis=-1)
    # JPEG
    use_jpeg = bernoulli(rng, p.jpeg_prob, n)
    quality = rng.integers(int(p.jpeg_quality[0]), int(p.jpeg_quality[1]) + 1, size=n)

    if noise_scale is not None:
        shot = shot * noise_scale
        read = read * noise_scale
    lin = to_linear(x) * vig * gains[:, None, None, :]
    row = z_row * (row_rel * read)[:, None, None, None]
    lin = poisson_gaussian(lin, shot, read, z, row)
    out = to_display(lin)
    out = out + (chroma_field - 0.5) * 2.0 * chroma[:, None, None, None]
    out = quantise(out)
    out = np.stack([jpeg_roundtrip(out[i], int(quality[i])) if use_jpeg[i] else out[i] for i in range(n)])

    rec["cast_gains"] = gains
    rec["vignette"] = vig_strength
    rec["shot_noise"] = shot
    rec["read_noise"] = read
    rec["row_noise"] = row_rel * read
    rec["chroma_noise"] = chroma
    rec["jpeg_quality"] = np.where(use_jpeg, quality, 0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------- records


def _plain(v: object) -> object:
    if isinstance(v, np.ndarray):
        return [_plain(e) for e in v.tolist()] if v.ndim else _plain(v.item())
    if isinstance(v, (np.floating, float)):
        return round(float(v), 6)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, np.str_):
        return str(v)
    if isinstance(v, list):
        return [_plain(e) for e in v]
    return v


def to_records(n: int, rec: Mapping[str, Array], base: Mapping[str, object]) -> list[dict]:
    """Split per-batch parameter arrays into one JSON-serialisable dict per image."""
    out = []
    for i in range(n):
        d: dict = dict(base)
        for k, v in rec.items():
            d[k] = _plain(np.asarray(v)[i])
        out.append(d)
    return out
