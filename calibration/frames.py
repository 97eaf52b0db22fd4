"""INT8 calibration sets: deterministic, diverse, quality-stratified frame selection, cached.

Why each step:

- INT8 ranges are set by the frames NNCF sees. Frames from one scene (a static camera) give
  ranges that clip the next scene; so candidates are clustered by scene/brightness features
  (downsampled colour histograms + mean/std luminance, k-means) and picked across clusters.
- A restoration model sees inputs from bad to good quality, and its activations differ a lot
  between them (haze vs clear); so candidates are also stratified by the IQA ensemble's level.
- Everything is seeded and ordered (sorted file lists, seeded k-means and shuffles), so the same
  inputs give the same frames, and the frame set's sha256 goes into the artifact manifest.
- Decoding a long video and scoring candidates takes minutes; results are cached under a key
  made of the input files' content and the selection parameters.
- Fewer than 300 frames is a known cause of silently bad INT8 (Ultralytics users' complaints),
  so it warns; no readable frame at all is a clear error.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qt_core.pixels import to_uint8

#: Below this many frames NNCF's range estimates are unreliable (its own default subset is 300).
RECOMMENDED_FRAMES = 300
#: The IQA ensemble's NIQE member needs 96 px; candidates are scored at least this large.
IQA_MIN_SIDE = 96
CACHE_VERSION = 1


class CalibrationError(ValueError):
    """No usable calibration data; the message says which paths and what to do."""


@dataclass(frozen=True)
class CalibSet:
    """Selected frames (N, H, W, 3) uint8 RGB, the sha256 of their bytes, and where they came from.

    ``levels`` holds each frame's IQA level (or -1 when selection ran without IQA).
    """

    frames: np.ndarray
    hash: str
    sources: tuple[str, ...]
    levels: np.ndarray

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def tensors(self, start: int = 0, stop: int | None = None):  # -> torch.Tensor, kept untyped: no torch here
        """Frames [start:stop] as float32 NCHW in [0, 1] (imports torch lazily)."""
        import torch

        arr = self.frames[start:stop].astype(np.float32) / 255.0
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


@dataclass(frozen=True)
class SelectOptions:
    """Knobs of :func:`select_frames` that change its result (all go into the cache key)."""

    n: int = RECOMMENDED_FRAMES
    size: tuple[int, int] = (360, 640)
    seed: int = 0
    iqa: bool = True
    pool_factor: int = 3
    clusters: int | None = None
    spec: dict | None = None  # the IQA ensemble as a dict (the run's; None = the default)


def frame_set_hash(frames: np.ndarray) -> str:
    """sha256 over the shape and bytes of the frame array: identifies the calibration set."""
    h = hashlib.sha256()
    h.update(json.dumps(list(frames.shape)).encode())
    h.update(np.ascontiguousarray(frames).tobytes())
    return h.hexdigest()


def _expand(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """(images, videos) behind ``paths`` (files or folders, searched recursively), sorted."""
    from qt_train.data.io import IMAGE_EXTS, VIDEO_EXTS

    images: list[Path] = []
    videos: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            files = [p]
        else:
            raise CalibrationError(f"calibration path {p} does not exist; pass a video, an image or a folder")
        for f in files:
            suffix = f.suffix.lower()
            if suffix in IMAGE_EXTS:
                images.append(f)
            elif suffix in VIDEO_EXTS:
                videos.append(f)
    return sorted(set(images)), sorted(set(videos))


def _cache_key(images: Sequence[Path], videos: Sequence[Path], opts: SelectOptions) -> str:
    """Content hash of every input file plus the options: same bytes + options -> same frames."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, **opts.__dict__}, sort_keys=True, default=list).encode())
    for f in [*images, *videos]:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def _fit(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to cover (H, W) then centre-crop: keeps the aspect ratio of the scene content."""
    import cv2

    th, tw = size
    h, w = img.shape[:2]
    s = max(th / h, tw / w)
    nh, nw = max(th, round(h * s)), max(tw, round(w * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    img = cv2.resize(img, (nw, nh), interpolation=interp)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return np.ascontiguousarray(img[top : top + th, left : left + tw])


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return to_uint8(img.astype(np.float32) / 65535.0)
    return to_uint8(img)


def _candidates(
    images: Sequence[Path], videos: Sequence[Path], budget: int, size: tuple[int, int]
) -> tuple[list[np.ndarray], list[str]]:
    """Up to ~``budget`` frames at ``size``: every image (evenly thinned) and frames spread over
    each video; unreadable files are skipped with a warning (the caller refuses an empty pool)."""
    from qt_train.data.io import ImageReadError, read_image_raw
    from qt_train.data.video import sample_frames

    frames: list[np.ndarray] = []
    origin: list[str] = []
    n_src = max(1, len(images) + len(videos))
    per_video = max(1, budget // n_src) if images else max(1, -(-budget // max(1, len(videos))))
    if len(images) > budget:
        keep = np.unique(np.linspace(0, len(images) - 1, budget).round().astype(int))
        images = [images[i] for i in keep]
    max_side = 2 * max(size)
    for f in images:
        try:
            frames.append(_fit(_to_uint8(read_image_raw(f, max_side=max_side)), size))
            origin.append(str(f))
        except ImageReadError as exc:
            warnings.warn(f"calibration: skipping {exc}", stacklevel=3)
    for f in videos:
        try:
            got = sample_frames(f, per_video, max_side=max_side)
        except ImageReadError as exc:
            warnings.warn(f"calibration: skipping {exc}", stacklevel=3)
            continue
        for fr in got:
            frames.append(_fit(_to_uint8(fr), size))
            origin.append(str(f))
    return frames, origin


def _features(frames: np.ndarray) -> np.ndarray:
    """Scene/brightness descriptor per frame: 8-bin colour histograms at 32x32 + luminance mean/std."""
    import cv2

    feats = []
    for f in frames:
        small = cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        hist = [np.histogram(small[..., c], bins=8, range=(0.0, 1.0))[0] / 1024.0 for c in range(3)]
        lum = small @ np.array([0.299, 0.587, 0.114], np.float32)
        feats.append(np.concatenate([*hist, [lum.mean() * 2.0, lum.std() * 2.0]]))
    return np.asarray(feats, np.float32)


def _clusters(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(features)))
    if k == 1:
        return np.zeros(len(features), np.int64)
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(features).astype(np.int64)


def _iqa_levels(frames: np.ndarray, batch: int = 16, spec: dict | None = None) -> np.ndarray:
    """IQA ensemble level per frame (scored at >= 96 px, the NIQE minimum), by ``spec`` (the
    run's ensemble, as a dict) or the default one."""
    import cv2
    import torch

    from qt_train.iqa import Ensemble, spec_from_dict

    ens = Ensemble(None if spec is None else spec_from_dict(spec), device="cpu")
    h, w = frames.shape[1:3]
    s = max(1.0, IQA_MIN_SIDE / min(h, w))
    levels = []
    for i in range(0, len(frames), batch):
        chunk = frames[i : i + batch]
        if s > 1.0:
            chunk = np.stack([cv2.resize(f, (round(w * s), round(h * s))) for f in chunk])
        x = torch.from_numpy(chunk.astype(np.float32).transpose(0, 3, 1, 2) / 255.0)
        levels.append(ens.score(x, use_cache=False).level.cpu().numpy())
    return np.concatenate(levels).astype(np.int64)


def _stratified_pick(strata: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Round-robin over strata (each shuffled with ``seed``): every cluster x level is represented
    before any one gets a second frame. Returns sorted indices."""
    rng = np.random.default_rng(seed)
    groups = [rng.permutation(np.flatnonzero(strata == s)) for s in np.unique(strata)]
    order = rng.permutation(len(groups))
    picked: list[int] = []
    depth = 0
    while len(picked) < n and any(depth < len(g) for g in groups):
        for gi in order:
            if depth < len(groups[gi]) and len(picked) < n:
                picked.append(int(groups[gi][depth]))
        depth += 1
    return np.sort(np.asarray(picked, np.int64))


def _load_cache(path: Path) -> CalibSet | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return CalibSet(frames=z["frames"], hash=str(z["hash"]), sources=tuple(str(s) for s in z["sources"]),
                            levels=z["levels"])
    except (OSError, KeyError, ValueError):
        return None  # unreadable cache entry: recompute (and overwrite it)


def _save_cache(path: Path, cs: CalibSet) -> None:
    import io

    from qt_core.atomic import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, frames=cs.frames, hash=np.array(cs.hash), sources=np.array(cs.sources, dtype=str),
             levels=cs.levels)
    atomic_write_bytes(path, buf.getvalue())


def select_frames(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    n: int = RECOMMENDED_FRAMES,
    size: tuple[int, int] = (360, 640),
    seed: int = 0,
    *,
    iqa: bool = True,
    spec: dict | None = None,
    cache_dir: str | os.PathLike | None = None,
    pool_factor: int = 3,
    clusters: int | None = None,
) -> CalibSet:
    """Pick ``n`` calibration frames at ``size`` (H, W) from videos, image folders or images.

    Candidates (about ``pool_factor * n``) are clustered into ``clusters`` scene groups (default
    ~sqrt(pool)), scored with the IQA ensemble when ``iqa`` and picked round-robin over
    (cluster, level) strata (``spec``: the run's IQA ensemble as a dict, default the default
    ensemble). With ``cache_dir`` the result is stored under a key of the inputs'
    content and these options, and a second call loads it. Warns below 300 frames; raises
    :class:`CalibrationError` when nothing readable is found.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if n < 1:
        raise CalibrationError(f"need at least 1 calibration frame, asked for {n}")
    opts = SelectOptions(n=n, size=(int(size[0]), int(size[1])), seed=seed, iqa=iqa,
                         pool_factor=pool_factor, clusters=clusters, spec=spec)
    images, videos = _expand(paths)
    shown = ", ".join(str(p) for p in paths) or "(none)"
    if not images and not videos:
        raise CalibrationError(f"no images or videos found in {shown}; pass footage from the target camera")
    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"calib-{_cache_key(images, videos, opts)[:32]}.npz"
        if cache_file.is_file() and (cached := _load_cache(cache_file)) is not None:
            _warn_small(len(cached), shown)
            return cached
    pool, origin = _candidates(images, videos, max(n, pool_factor * n), opts.size)
    if not pool:
        raise CalibrationError(f"no readable frames in {shown}; every file failed to decode")
    arr = np.stack(pool)
    k = clusters or max(2, round(len(arr) ** 0.5))
    cluster_ids = _clusters(_features(arr), k, seed)
    levels = _iqa_levels(arr, spec=opts.spec) if iqa else np.full(len(arr), -1, np.int64)
    strata = cluster_ids * 1000 + levels + 1
    idx = _stratified_pick(strata, n, seed)
    frames = np.ascontiguousarray(arr[idx])
    result = CalibSet(frames=frames, hash=frame_set_hash(frames),
                      sources=tuple(sorted({origin[i] for i in idx})), levels=levels[idx])
    if cache_file is not None:
        _save_cache(cache_file, result)
    _warn_small(len(result), shown)
    return result


def _warn_small(count: int, shown: str) -> None:
    if count < RECOMMENDED_FRAMES:
        warnings.warn(
            f"only {count} calibration frames from {shown} (< {RECOMMENDED_FRAMES} recommended): "
            "INT8 ranges may not cover the footage; pass more frames or a longer clip",
            stacklevel=3,
        )
