"""Fit a NIQE pristine model (multivariate Gaussian of natural-scene features) offline.

Why: pyiqa's ``niqe`` needs a ``.mat`` pristine model that it would normally download. The
project fits its own from clean photographs shipped inside installed packages, so the default
IQA ensemble runs with zero downloads.

Features are computed with pyiqa's own NIQE building blocks (``to_y_channel``, ``diff_round``,
``normalize_img_with_gauss``, ``blockproc``, ``compute_feature``, ``imresize``) in the same order
as ``pyiqa.archs.niqe_arch.niqe``, so the fitted model lives in exactly the feature space pyiqa
evaluates at test time. Patch selection follows the original NIQE (Mittal et al. 2012):
96x96 blocks, keep blocks whose mean local deviation (sharpness) exceeds ``threshold`` times
the image's sharpest block. The original uses 0.75 over 125 photos; with only seven package
photos that leaves ~57 patches for a 36x36 covariance, so the defaults are threshold 0.6 and the
block grid laid at three offsets (0, 32, 64 px), which gives ~155 patches and a better
conditioned model (held-out NIQE still rises with blur, noise and JPEG; see tests).

The saved ``.mat`` holds ``mu_prisparam`` (1, 36) and ``cov_prisparam`` (36, 36), the keys
``pyiqa.archs.niqe_arch.NIQE`` reads from ``pretrained_model_path``.

Run: ``python -m calibration.niqe_fit --out qt_train/iqa/assets/niqe_pristine.mat``
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from qt_train.data.clean import HOLDOUT_PHOTOS
from qt_train.iqa.weights import bundled_assets_dir

BLOCK = 96
SHARPNESS_THRESHOLD = 0.6
FEATURE_DIM = 36
#: Grid shifts (both axes) that harvest more patches from the few package photos.
DEFAULT_OFFSETS: tuple[int, ...] = (0, 32, 64)

#: Package photographs used for the fit (names understood by :func:`package_photo`).
FIT_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "china",
    "flower",
)
#: Photographs never used for fitting; tests check the fitted model on these.
HELD_OUT_PHOTOS = HOLDOUT_PHOTOS  # the one held-out list: qt_train/data/clean.py


@dataclass(frozen=True)
class PristineModel:
    """The fitted MVG plus what it was fitted from (why: reproducibility of a shipped asset)."""

    mu: np.ndarray  # (36,)
    cov: np.ndarray  # (36, 36)
    n_patches: int
    n_images: int
    block: int
    threshold: float
    offsets: tuple[int, ...]


def package_photo(name: str) -> np.ndarray:
    """Load one photograph bundled inside an installed package as float32 RGB (H, W, 3) in [0, 1].

    Reads files that ship with scikit-image, scikit-learn and matplotlib; nothing is fetched.
    """
    if name in {"astronaut", "coffee", "chelsea", "rocket"}:
        import skimage.data

        img = getattr(skimage.data, name)()
    elif name in {"motorcycle_left", "motorcycle_right"}:
        import skimage.data
        import skimage.io

        img = skimage.io.imread(Path(skimage.data.__file__).parent / f"{name}.png")
    elif name in {"china", "flower"}:
        import skimage.io
        import sklearn.datasets

        img = skimage.io.imread(Path(sklearn.datasets.__file__).parent / "images" / f"{name}.jpg")
    elif name == "grace_hopper":
        import matplotlib.cbook
        import skimage.io

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
            img = skimage.io.imread(fh)
    else:
        known = (*FIT_PHOTOS, *HELD_OUT_PHOTOS)
        raise ValueError(f"unknown package photo {name!r}; known: {', '.join(known)}")
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"package photo {name!r} is not RGB: shape {img.shape}")
    return (img[..., :3].astype(np.float32) / 255.0).copy()


def _block_features(rgb: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """NIQE features and sharpness of every full ``block`` x ``block`` patch of one image.

    Mirrors ``pyiqa.archs.niqe_arch.calculate_niqe`` + ``niqe`` up to the per-block features.
    Returns (features (n_blocks, 36), sharpness (n_blocks,)).
    """
    import torch
    from pyiqa.archs.func_util import diff_round, normalize_img_with_gauss, safe_sqrt
    from pyiqa.archs.niqe_arch import compute_feature
    from pyiqa.matlab_utils import blockproc, fspecial, imfilter, imresize
    from pyiqa.utils.color_util import to_y_channel

    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].float()
    img = diff_round(to_y_channel(x, 255, "yiq")).to(torch.float64)
    _, _, h, w = img.shape
    nh, nw = h // block, w // block
    if nh * nw == 0:
        return np.zeros((0, FEATURE_DIM)), np.zeros((0,))
    img = img[..., : nh * block, : nw * block]

    # Sharpness: mean local deviation per block, with the same window normalize_img_with_gauss uses.
    kernel = fspecial(7, 7.0 / 6, 1).to(img)
    mu = imfilter(img, kernel, padding="replicate")
    sigma = safe_sqrt((imfilter(img**2, kernel, padding="replicate") - mu**2).abs())
    sharp = blockproc(sigma, [block, block], fun=lambda b, _args: b.mean(dim=(1, 2, 3))[:, None])

    feats = []
    for scale in (1, 2):
        normed = normalize_img_with_gauss(img, padding="replicate")
        feats.append(blockproc(normed, [block // scale, block // scale], fun=compute_feature))
        if scale == 1:
            img = imresize(img / 255.0, scale=0.5, antialiasing=True) * 255.0
    feat = torch.cat(feats, -1)[0].numpy()
    return feat, sharp[0, :, 0].numpy()


def pristine_features(
    images: Sequence[np.ndarray],
    block: int = BLOCK,
    threshold: float = SHARPNESS_THRESHOLD,
    offsets: Sequence[int] = (0,),
) -> np.ndarray:
    """Features of the sharp patches of ``images`` (float32 RGB (H, W, 3) in [0, 1]).

    ``offsets`` shifts the block grid (both axes) to harvest more patches from few images; the
    sharpness threshold is applied per image over all its patches, as in the original NIQE.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    rows = []
    for i, img in enumerate(images):
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image {i}: expected (H, W, 3) RGB, got shape {img.shape}")
        if not np.isfinite(img).all() or img.min() < 0.0 or img.max() > 1.0:
            raise ValueError(f"image {i}: values must be finite and within [0, 1]")
        per_feat, per_sharp = [], []
        for off in offsets:
            f, s = _block_features(img[off:, off:], block)
            per_feat.append(f)
            per_sharp.append(s)
        feat, sharp = np.concatenate(per_feat), np.concatenate(per_sharp)
        if len(sharp) == 0:
            continue
        keep = sharp > threshold * sharp.max()
        rows.append(feat[keep])
    if not rows:
        raise ValueError(f"no image is at least {block}x{block}; nothing to fit")
    return np.concatenate(rows)


def fit_mvg(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the patch features, dropping rows with NaN (MATLAB nanmean/nancov)."""
    ok = np.isfinite(features).all(axis=1)
    clean = features[ok]
    if len(clean) <= features.shape[1]:
        raise ValueError(
            f"only {len(clean)} finite patch features for a {features.shape[1]}-dim model; "
            "use more or larger images, a lower threshold or more offsets"
        )
    return clean.mean(axis=0), np.cov(clean, rowvar=False)


def fit_pristine(
    images: Sequence[np.ndarray],
    block: int = BLOCK,
    threshold: float = SHARPNESS_THRESHOLD,
    offsets: Sequence[int] = DEFAULT_OFFSETS,
) -> PristineModel:
    """Fit the NIQE pristine MVG from clean images (float32 RGB (H, W, 3) in [0, 1])."""
    feats = pristine_features(images, block=block, threshold=threshold, offsets=offsets)
    mu, cov = fit_mvg(feats)
    return PristineModel(
        mu=mu,
        cov=cov,
        n_patches=int(len(feats)),
        n_images=len(images),
        block=block,
        threshold=threshold,
        offsets=tuple(int(o) for o in offsets),
    )


def pristine_mat(mu: np.ndarray, cov: np.ndarray) -> bytes:
    """The ``.mat`` pyiqa's NIQE loads: ``mu_prisparam`` (1, 36) and ``cov_prisparam`` (36, 36)."""
    import scipy.io

    buf = io.BytesIO()
    scipy.io.savemat(buf, {"mu_prisparam": np.asarray(mu, np.float64).reshape(1, -1),
                           "cov_prisparam": np.asarray(cov, np.float64)}, do_compression=True)
    return buf.getvalue()


def save_pristine(model: PristineModel, path: str | Path, provenance: dict | None = None) -> Path:
    """Write the ``.mat`` pyiqa's NIQE loads, plus a ``.json`` sidecar with provenance."""
    from qt_core.atomic import write_with_provenance

    meta = {k: v for k, v in asdict(model).items() if k not in {"mu", "cov"}}
    meta.update(provenance or {})
    return write_with_provenance(path, pristine_mat(model.mu, model.cov), meta)


def load_pristine(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read (mu (36,), cov (36, 36)) back from a pristine ``.mat``."""
    import scipy.io

    params = scipy.io.loadmat(str(path))
    return np.ravel(params["mu_prisparam"]), params["cov_prisparam"]


def main(argv: Sequence[str] | None = None, photo_loader: Callable[[str], np.ndarray] = package_photo) -> int:
    """CLI: fit on the package photos and write the asset + provenance."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(bundled_assets_dir() / "niqe_pristine.mat"))
    ap.add_argument("--threshold", type=float, default=SHARPNESS_THRESHOLD)
    ap.add_argument("--block", type=int, default=BLOCK)
    ap.add_argument("--offsets", type=int, nargs="+", default=list(DEFAULT_OFFSETS))
    ap.add_argument("--photos", nargs="+", default=list(FIT_PHOTOS))
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    images = [photo_loader(n) for n in args.photos]
    model = fit_pristine(images, block=args.block, threshold=args.threshold, offsets=args.offsets)
    elapsed = time.perf_counter() - t0
    import pyiqa

    out = save_pristine(
        model,
        args.out,
        provenance={
            "images": list(args.photos),
            "held_out": [p for p in HELD_OUT_PHOTOS if p not in args.photos],
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": "python -m calibration.niqe_fit " + " ".join(sys.argv[1:] if argv is None else argv),
            "pyiqa_version": getattr(pyiqa, "__version__", "unknown"),
            "fit_seconds": round(elapsed, 2),
            "feature_code": "pyiqa.archs.niqe_arch.compute_feature (scales 1 and 2, yiq Y channel)",
        },
    )
    print(f"wrote {out} ({model.n_patches} patches from {model.n_images} images, {elapsed:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
