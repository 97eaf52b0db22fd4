"""Clean (ground-truth) images without any download.

Three sources, one explicit table (:data:`SOURCES`), one entry point (:func:`sample_clean`):

- ``dead_leaves`` -- procedural images from the dead-leaves model: occluding shapes with a
  power-law size distribution (p(r) ~ r^-3), each filled with a texture (shading gradient,
  grating, 1/f noise), with depth-of-field blur. They have natural-image statistics (about 1/f^2
  power spectra, sharp occlusion edges) and unlimited quantity. ``variant="horizon"`` adds a
  sky and ground perspective (far = top rows) for tasks like dehazing that need depth.
- ``package_photos`` -- photographs shipped inside installed Python packages, read straight
  from the package folders (never through a function that could fetch over the network):

  ======================  =====================  ==============================================
  name                    package                licence (as stated by the package)
  ======================  =====================  ==============================================
  astronaut               scikit-image           public domain (NASA; "no known copyright
                                                 restrictions, released into the public domain")
  chelsea                 scikit-image           CC0 (photographer Stefan van der Walt)
  coffee                  scikit-image           CC0 (photographer Rachel Michetti)
  rocket                  scikit-image           public domain (SpaceX release)
  china                   scikit-learn           CC BY 2.0, attribution: danielbuechele (Flickr)
  flower                  scikit-learn           CC BY 2.0, attribution: vultilion (Flickr)
  grace_hopper            matplotlib             public domain (U.S. Navy official photograph;
                                                 the installed README states no licence)
  ======================  =====================  ==============================================

  Left out on purpose: scikit-image's ``motorcycle_left/right`` (Middlebury stereo; no licence
  stated in the package), ``hubble_deep_field``, ``retina``, ``ihc``, ``cell`` (not natural
  scenes), and grayscale photos/textures (``camera``, ``grass``, ``gravel``, ``brick``...):
  replicated gray has no chroma and would teach colour restoration that gray is "clean".
- ``folder`` -- the user's own clean photos, read with :func:`qt_train.data.io.read_image`;
  unreadable files are skipped with one warning each.

``mixed`` (package photos + dead leaves, plus the folder if one is given) is the default.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from qt_train.data.io import ImageReadError, list_images, read_image

Size = int | tuple[int, int]
RngLike = np.random.Generator | int | None
Split = Literal["all", "train", "holdout"]

#: Package photos kept out of every fit (NIQE, the learned IQA member) and every training run,
#: so evaluations on them measure generalisation.
HOLDOUT_PHOTOS: tuple[str, ...] = ("chelsea", "grace_hopper")


@dataclass(frozen=True)
class Photo:
    """One clean photograph and where it came from."""

    name: str
    image: np.ndarray  # (H, W, 3) float32 RGB in [0, 1]
    source: str
    licence: str


# --------------------------------------------------------------------------------------------
# dead leaves
# --------------------------------------------------------------------------------------------

# Hue prototypes (HSV hue in [0, 1]) and their weights: earth, foliage, sky, water, stone --
# roughly what fills outdoor photographs; saturated magentas are rare in nature.
_HUES = np.array([0.03, 0.08, 0.12, 0.18, 0.27, 0.33, 0.45, 0.56, 0.60, 0.66, 0.85, 0.95])
_HUE_W = np.array([0.08, 0.14, 0.12, 0.08, 0.12, 0.12, 0.05, 0.1, 0.08, 0.05, 0.02, 0.04])
_HUE_W = _HUE_W / _HUE_W.sum()
_DOF_PROB = 0.35  # share of images with depth-of-field blur
_BLUR_MAX = 0.3  # largest global Gaussian blur sigma (output pixels)


def dead_leaves(
    n: int,
    size: Size,
    rng: RngLike = None,
    variant: str = "plain",
    rmin: float | None = None,
    rmax: float | None = None,
    supersample: int = 2,
) -> np.ndarray:
    """``n`` dead-leaves images, float32 (n, H, W, 3) in [0, 1].

    ``rmin``/``rmax`` bound the leaf radius in output pixels (defaults: ``rmin`` log-uniform in
    [1, 4] per image -- from fine clutter to smooth scenes -- and ``rmax`` = 0.6 x the longer
    side); ``variant`` is ``"plain"`` or ``"horizon"``. Rendering happens at
    ``supersample`` x resolution and is area-downsampled, so edges are sharp but anti-aliased.
    """
    if variant not in ("plain", "horizon"):
        raise ValueError(f"variant must be 'plain' or 'horizon', got {variant!r}")
    h, w = _hw(size)
    rng = np.random.default_rng(rng)
    out = np.empty((n, h, w, 3), np.float32)
    for i in range(n):
        out[i] = _dead_leaves_one(h, w, rng, variant, rmin, rmax, supersample)
    return out


def _dead_leaves_one(h: int, w: int, rng: np.random.Generator, variant: str,
                     rmin: float | None, rmax: float | None, ss: int) -> np.ndarray:
    hs, ws = h * ss, w * ss
    rmin = float(np.exp(rng.uniform(np.log(1.0), np.log(4.0)))) if rmin is None else rmin
    rmax = 0.6 * max(h, w) if rmax is None else rmax
    horizon = variant == "horizon"
    y_h = rng.uniform(0.25, 0.5) * hs if horizon else 0.0

    # --- leaves: radii from p(r) ~ r^-3 on [rmin, rmax] (inverse CDF), until covered 4x ---
    kmax = 60000
    u = rng.random(kmax)
    a2, b2 = rmin ** -2.0, rmax ** -2.0
    r = (a2 - u * (a2 - b2)) ** -0.5 * ss
    cx = rng.uniform(-0.05, 1.05, kmax) * ws
    if horizon:
        cy = rng.uniform(y_h, 1.05 * hs, kmax)
        persp = np.clip((cy - y_h) / (hs - y_h), 0.03, 1.0)  # far (near horizon) = small
        r = np.maximum(r * persp, 0.7 * ss)  # sub-pixel leaves would only cost time
        area_target = 4.0 * ws * (hs - y_h)
    else:
        cy = rng.uniform(-0.05, 1.05, kmax) * hs
        area_target = 4.0 * ws * hs
    k = int(np.searchsorted(np.cumsum(np.pi * r * r), area_target)) + 1
    k = min(k, kmax)
    r, cx, cy = r[:k], cx[:k], cy[:k]
    order = np.argsort(cy + rng.normal(0, 0.08 * hs, k)) if horizon else np.arange(k)
    r, cx, cy = r[order], cx[order], cy[order]

    labels = np.zeros((hs, ws), np.int32)  # 0 = background (sky or a large smooth leaf)
    if horizon:
        # Ground plane as leaf 1 below a gently wavy horizon, so the sky never shows through
        # the sparse, tiny far-away leaves; leaves proper start at label 2.
        xs = np.linspace(0, ws, 9)
        ys = y_h + np.cumsum(rng.normal(0, 0.01 * hs, 9))
        poly = np.concatenate([np.stack([xs, ys], 1), [[ws, hs], [0, hs]]])
        cv2.fillPoly(labels, [np.round(poly * 16).astype(np.int32)], (1,), cv2.LINE_8, 4)
        r = np.concatenate([[hs - y_h], r])
        cx = np.concatenate([[ws / 2], cx])
        cy = np.concatenate([[hs], cy])
    first = 1 if horizon else 0  # leaf j is drawn with label j + 1
    k = len(r)
    shape = rng.choice(3, size=k, p=[0.6, 0.2, 0.2])
    aspect = rng.uniform(0.35, 1.0, k)
    angle = rng.uniform(0, 180, k)
    for j in range(first, k):
        lab = (j + 1,)
        c = (int(cx[j] * 16), int(cy[j] * 16))
        if shape[j] == 0:
            cv2.circle(labels, c, max(1, int(r[j] * 16)), lab, -1, cv2.LINE_8, 4)
        elif shape[j] == 1:
            axes = (max(1, int(r[j] * 16)), max(1, int(r[j] * aspect[j] * 16)))
            cv2.ellipse(labels, c, axes, angle[j], 0, 360, lab, -1, cv2.LINE_8, 4)
        else:  # rectangle-ish polygons: straight edges and corners as in man-made scenes
            box = cv2.boxPoints(((cx[j], cy[j]), (2 * r[j], 2 * r[j] * aspect[j]), angle[j]))
            cv2.fillPoly(labels, [np.round(box * 16).astype(np.int32)], lab, cv2.LINE_8, 4)

    # --- per-leaf appearance, gathered per pixel through the label map ---
    nl = k + 1
    base = _leaf_colours(nl, rng)
    lr = np.concatenate([[max(hs, ws) * 0.7], r]).astype(np.float32)
    lcx = np.concatenate([[ws / 2], cx]).astype(np.float32)
    lcy = np.concatenate([[hs / 2], cy]).astype(np.float32)
    g_th = rng.uniform(0, 2 * np.pi, nl)
    g_amp = rng.uniform(0.0, 0.35, nl)
    gr_on = rng.random(nl) < 0.2
    gr_f = np.exp(rng.uniform(np.log(0.03), np.log(0.3), nl)) / ss * 2 * np.pi
    gr_th = rng.uniform(0, np.pi, nl)
    gr_ph = rng.uniform(0, 2 * np.pi, nl)
    gr_amp = np.where(gr_on, rng.uniform(0.04, 0.2, nl), 0.0)
    nz_amp = np.where(rng.random(nl) < 0.6, rng.uniform(0.02, 0.15, nl), 0.0)
    if horizon:  # the ground: textured, never a grating
        nz_amp[1], gr_amp[1] = rng.uniform(0.1, 0.25), 0.0

    yy, xx = np.mgrid[0:hs, 0:ws].astype(np.float32)
    dx, dy = xx - lcx[labels], yy - lcy[labels]
    proj = (dx * np.cos(g_th).astype(np.float32)[labels]
            + dy * np.sin(g_th).astype(np.float32)[labels]) / lr[labels]
    shade = 1.0 + g_amp.astype(np.float32)[labels] * np.clip(proj, -1.0, 1.0)
    phase = gr_f[labels] * (xx * np.cos(gr_th)[labels] + yy * np.sin(gr_th)[labels]) + gr_ph[labels]
    shade += (gr_amp[labels] * np.sin(phase)).astype(np.float32)
    shade += nz_amp.astype(np.float32)[labels] * _pink_noise(hs, ws, rng)
    img = base[labels] * shade[..., None]

    depth = np.concatenate([[0.0], (np.arange(k) + 1) / k]).astype(np.float32)
    if horizon:
        img, depth_px = _sky_and_perspective(img, labels, y_h, rng)
    else:
        depth_px = depth[labels]
    img = _depth_of_field(np.clip(img, 0, 1).astype(np.float32), depth_px, ss, rng)
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    sigma = rng.uniform(0.0, _BLUR_MAX)  # mild optical blur, varies per image
    if sigma > 0.1:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    return np.clip(img, 0.0, 1.0)


def _leaf_colours(nl: int, rng: np.random.Generator) -> np.ndarray:
    """Colours from a per-image palette of natural hues: scenes look colour-coherent."""
    n_pal = int(rng.integers(3, 7))
    hue = rng.choice(_HUES, size=n_pal, p=_HUE_W) + rng.normal(0, 0.02, n_pal)
    sat = rng.beta(1.3, 2.5, n_pal) * 0.75
    val = rng.beta(2.2, 2.0, n_pal) * 0.85 + 0.1
    pick = rng.choice(n_pal, size=nl)
    h = (hue[pick] + rng.normal(0, 0.025, nl)) % 1.0
    s = np.clip(sat[pick] * rng.uniform(0.6, 1.4, nl), 0, 1)
    v = np.clip(val[pick] * np.exp(rng.normal(0, 0.3, nl)), 0.02, 1)
    return _hsv_to_rgb(h, s, v).astype(np.float32)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([
        np.stack([v, t, p], -1), np.stack([q, v, p], -1), np.stack([p, v, t], -1),
        np.stack([p, q, v], -1), np.stack([t, p, v], -1), np.stack([v, p, q], -1),
    ])
    return table[i, np.arange(len(h))]


def _pink_noise(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std noise with a 1/f amplitude (1/f^2 power) spectrum."""
    spec = np.fft.rfft2(rng.standard_normal((h, w)))
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = np.inf
    field = np.fft.irfft2(spec / f, s=(h, w))
    return ((field - field.mean()) / (field.std() + 1e-12)).astype(np.float32)


def _depth_of_field(img: np.ndarray, depth: np.ndarray, ss: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Blur each pixel by how far its leaf is from a random focus depth (half the images)."""
    if rng.random() >= _DOF_PROB:
        return img
    focus = rng.uniform(0.4, 1.0)
    strength = rng.uniform(1.0, 3.5) * ss
    sig = np.clip(np.abs(depth - focus) * strength, 0, None)
    levels = [0.0, 0.5 * ss, 1.2 * ss, 2.5 * ss, 4.0 * ss]
    stack = [img] + [cv2.GaussianBlur(img, (0, 0), s) for s in levels[1:]]
    out = np.zeros_like(img)
    idx = np.interp(sig, levels, np.arange(len(levels))).astype(np.float32)
    for j in range(len(levels)):
        wgt = np.clip(1.0 - np.abs(idx - j), 0, 1)[..., None]
        out += wgt * stack[j]
    return out


def _sky_and_perspective(img: np.ndarray, labels: np.ndarray, y_h: float,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paint a sky on the background and add mild aerial perspective; return pixel depth."""
    hs, ws = labels.shape
    yy = np.arange(hs, dtype=np.float32)[:, None]
    t = np.clip(yy / max(y_h, 1.0), 0, 1)  # 0 at top, 1 at horizon
    zenith = _hsv_to_rgb(np.array([rng.uniform(0.55, 0.63)]), np.array([rng.uniform(0.3, 0.7)]),
                         np.array([rng.uniform(0.55, 0.85)]))[0]
    horizon_c = np.clip(zenith + rng.uniform(0.15, 0.35), 0, 1)
    sky = (zenith[None, None] * (1 - t[..., None]) + horizon_c[None, None] * t[..., None])
    clouds = np.clip(_pink_noise(hs, ws, rng) * 0.5 + rng.uniform(-0.6, 0.2), 0, 1)
    sky = sky + clouds[..., None] * rng.uniform(0.1, 0.4) * (1 - sky)
    sky = np.broadcast_to(sky, img.shape).astype(np.float32)
    is_sky = (labels == 0)[..., None]
    img = np.where(is_sky, sky, img)
    # Depth: 1 = nearest (bottom row), 0 = horizon/sky.
    depth = np.clip((yy - y_h) / (hs - y_h), 0, 1) * np.ones((1, ws), np.float32)
    depth = np.where(labels == 0, 0.0, depth).astype(np.float32)
    aerial = 0.15 * (1 - depth)[..., None] * (~is_sky)
    img = img * (1 - aerial) + horizon_c[None, None].astype(np.float32) * aerial
    return img.astype(np.float32), depth


# --------------------------------------------------------------------------------------------
# package photos
# --------------------------------------------------------------------------------------------

# (name, package, path inside the package, licence). Read as files: never via skimage.data
# functions, some of which fetch with pooch.
_PACKAGE_PHOTOS: tuple[tuple[str, str, str, str], ...] = (
    ("astronaut", "skimage", "data/astronaut.png",
     "public domain (NASA; no known copyright restrictions)"),
    ("chelsea", "skimage", "data/chelsea.png", "CC0 (photographer Stefan van der Walt)"),
    ("coffee", "skimage", "data/coffee.png", "CC0 (photographer Rachel Michetti)"),
    ("rocket", "skimage", "data/rocket.jpg", "public domain (released by SpaceX)"),
    ("china", "sklearn", "datasets/images/china.jpg",
     "CC BY 2.0, attribution: danielbuechele (Flickr)"),
    ("flower", "sklearn", "datasets/images/flower.jpg",
     "CC BY 2.0, attribution: vultilion (Flickr)"),
    ("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
     "public domain (U.S. Navy official photograph)"),
)


def _package_dir(package: str) -> Path | None:
    """Folder of an installed package without importing it (no import-time side effects)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.lru_cache(maxsize=1)
def _package_photos_cached() -> tuple[Photo, ...]:
    photos = []
    for name, package, rel, licence in _PACKAGE_PHOTOS:
        root = _package_dir(package)
        if root is None or not (root / rel).is_file():
            continue  # package not installed or file not shipped: simply not available
        try:
            img = read_image(root / rel)
        except ImageReadError as exc:
            warnings.warn(f"skipping package photo {name}: {exc}", stacklevel=3)
            continue
        img.setflags(write=False)  # shared through the cache
        photos.append(Photo(name=name, image=img, source=f"{package}:{rel}", licence=licence))
    return tuple(photos)


def package_photos() -> list[Photo]:
    """Colour photographs shipped by installed packages (see the module docstring).

    Loaded once per process and cached; images are read-only (copy before editing).
    """
    return list(_package_photos_cached())


def folder_photos(folder: str | os.PathLike, recursive: bool = False,
                  max_side: int | None = 4096) -> list[Photo]:
    """All readable images in ``folder``; each unreadable file is skipped with one warning."""
    photos = []
    for path in list_images(folder, recursive=recursive):
        try:
            img = read_image(path, max_side=max_side)
        except ImageReadError as exc:
            warnings.warn(f"skipping {exc}", stacklevel=2)
            continue
        photos.append(Photo(name=path.stem, image=img, source=str(path), licence="user data"))
    return photos


# --------------------------------------------------------------------------------------------
# sampling crops
# --------------------------------------------------------------------------------------------


def random_scene_crop(img: np.ndarray, size: Size, rng: np.random.Generator,
                      zoom_range: float = 4.0, max_scale: float = 0.75,
                      hflip: bool = True) -> np.ndarray:
    """A crop that shows a *scene*: rescale first, then crop, then maybe flip horizontally.

    The scale is log-uniform between ``fit`` (the short side just covers the crop) and
    ``min(fit * zoom_range, max(fit, max_scale))``. Photos are never upscaled beyond ``fit``;
    scales below 1 also average away sensor noise and JPEG artefacts, which clean targets
    should not contain. Vertical flips are not used: upside-down scenes are unnatural.
    """
    ch, cw = _hw(size)
    h, w = img.shape[:2]
    fit = max(ch / h, cw / w)
    hi = min(fit * zoom_range, max(fit, max_scale))
    scale = float(np.exp(rng.uniform(np.log(fit), np.log(hi)))) if hi > fit else fit
    nh, nw = max(ch, math.ceil(h * scale)), max(cw, math.ceil(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    scaled = cv2.resize(np.ascontiguousarray(img), (nw, nh), interpolation=interp)
    y = int(rng.integers(0, nh - ch + 1))
    x = int(rng.integers(0, nw - cw + 1))
    crop = scaled[y:y + ch, x:x + cw]
    if hflip and rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.clip(crop, 0.0, 1.0).astype(np.float32)


def photo_crops(photos: list[Photo], n: int, size: Size, rng: np.random.Generator,
                what: str) -> np.ndarray:
    """``n`` scene crops (see :func:`random_scene_crop`) of photos drawn uniformly from ``photos``."""
    if not photos:
        raise ImageReadError(what, "no readable photos available")
    h, w = _hw(size)
    out = np.empty((n, h, w, 3), np.float32)
    for i in range(n):
        out[i] = random_scene_crop(photos[int(rng.integers(len(photos)))].image, (h, w), rng)
    return out


def _sample_dead_leaves(n: int, size: Size, rng: np.random.Generator,
                        folder: Path | None, split: Split = "all") -> np.ndarray:
    # Procedural images never repeat: a different rng stream is already a held-out image.
    h, w = _hw(size)
    out = np.empty((n, h, w, 3), np.float32)
    for i in range(n):
        variant = "horizon" if rng.random() < 0.3 else "plain"
        out[i] = dead_leaves(1, (h, w), rng, variant=variant)[0]
    return out


def split_photos(photos: list[Photo], split: Split) -> list[Photo]:
    """The photos of one split: HOLDOUT_PHOTOS are kept out of every fit and training run."""
    if split == "all":
        return photos
    if split == "holdout":
        return [p for p in photos if p.name in HOLDOUT_PHOTOS]
    return [p for p in photos if p.name not in HOLDOUT_PHOTOS]


def _sample_package(n: int, size: Size, rng: np.random.Generator,
                    folder: Path | None, split: Split = "all") -> np.ndarray:
    return photo_crops(split_photos(package_photos(), split), n, size, rng, f"package photos ({split})")


def _sample_folder(n: int, size: Size, rng: np.random.Generator,
                   folder: Path | None, split: Split = "all") -> np.ndarray:
    """Read only the files that are drawn; a bad file is warned about once and redrawn.

    Splits: every tenth file (in sorted order) is held out, the rest is for training.
    """
    if folder is None:
        raise ValueError("source 'folder' needs folder=<path to clean photos>")
    paths = list_images(folder, recursive=True)
    if split != "all":
        keep = [(i % 10 == 0) == (split == "holdout") for i in range(len(paths))]
        paths = [p for p, k in zip(paths, keep, strict=True) if k] or paths
    h, w = _hw(size)
    out = np.empty((n, h, w, 3), np.float32)
    bad: set[int] = set()
    i = 0
    while i < n:
        if len(bad) == len(paths):
            raise ImageReadError(folder, "none of its images could be read")
        j = int(rng.integers(len(paths)))
        if j in bad:
            continue
        try:
            img = read_image(paths[j], max_side=max(4 * max(h, w), 1024))
        except ImageReadError as exc:
            bad.add(j)
            warnings.warn(f"skipping {exc}", stacklevel=3)
            continue
        out[i] = random_scene_crop(img, (h, w), rng)
        i += 1
    return out


def _sample_mixed(n: int, size: Size, rng: np.random.Generator,
                  folder: Path | None, split: Split = "all") -> np.ndarray:
    """Half photos (package, plus the folder when given), half dead leaves, shuffled."""
    names = ["package_photos", "dead_leaves"] + (["folder"] if folder is not None else [])
    probs = np.array([0.5, 0.5] if folder is None else [0.25, 0.35, 0.4])
    pick = rng.choice(len(names), size=n, p=probs)
    h, w = _hw(size)
    out = np.empty((n, h, w, 3), np.float32)
    for s, name in enumerate(names):
        idx = np.flatnonzero(pick == s)
        if len(idx):
            out[idx] = SOURCES[name](len(idx), (h, w), rng, folder, split)
    return out


SourceFn = Callable[[int, Size, np.random.Generator, "Path | None", Split], np.ndarray]

#: Every clean-image source, by the name used in configs.
SOURCES: dict[str, SourceFn] = {
    "dead_leaves": _sample_dead_leaves,
    "package_photos": _sample_package,
    "folder": _sample_folder,
    "mixed": _sample_mixed,
}


def sample_clean(
    source: str,
    n: int,
    size: Size,
    rng: RngLike = None,
    folder: str | os.PathLike | None = None,
    split: Split = "all",
) -> np.ndarray:
    """``n`` clean crops (n, H, W, 3) float32 in [0, 1] from ``source`` (see :data:`SOURCES`).

    Deterministic for a given ``rng`` state (or integer seed). ``split`` = "train" or "holdout"
    keeps evaluation images out of training (see :data:`HOLDOUT_PHOTOS`).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown clean source {source!r}; choose one of {sorted(SOURCES)}")
    if split not in ("all", "train", "holdout"):
        raise ValueError(f"unknown split {split!r}; choose all, train or holdout")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return SOURCES[source](n, size, np.random.default_rng(rng),
                           None if folder is None else Path(folder), split)


def _hw(size: Size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)
