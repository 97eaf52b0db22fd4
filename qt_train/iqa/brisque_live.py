"""BRISQUE with a model trained on human opinion (LIVE): a judge the project never fits.

The model is the one the ``brisque`` package (Apache-2.0) ships: an epsilon-SVR with an RBF
kernel over 36 BRISQUE features, trained on the LIVE IQA database's opinion scores, plus the
min/max feature scaling it was trained with. ``calibration/brisque_convert.py`` converts both
once into ``assets/brisque_live.npz``, a plain numpy archive the project owns, so nothing is
unpickled and the package is not imported at run time (its ``score()`` also breaks on current
numpy). The features follow that package's algorithm exactly (grey = skimage's rgb2gray
weights, 7x7 Gaussian MSCN by zero-padded convolution, AGGD moment fits at full and half scale), so the
scores reproduce the package's own (test: ``tests/test_brisque_live.py``).

Lower is better (roughly 0-100). Not differentiable: it judges, it is never optimised.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .weights import bundled_assets_dir

ASSET = bundled_assets_dir() / "brisque_live.npz"


@dataclass(frozen=True)
class SVRModel:
    """An RBF epsilon-SVR: f(x) = sum_i coef_i exp(-gamma |x - sv_i|^2) - rho, on scaled features."""

    support_vectors: np.ndarray  # (n_sv, 36)
    coef: np.ndarray  # (n_sv,)
    rho: float
    gamma: float
    feature_min: np.ndarray  # (36,)
    feature_max: np.ndarray  # (36,)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Scores of a (N, 36) feature matrix (or one (36,) vector)."""
        f = np.atleast_2d(np.asarray(features, np.float64))
        scaled = -1.0 + 2.0 * (f - self.feature_min) / (self.feature_max - self.feature_min)
        d2 = ((scaled[:, None, :] - self.support_vectors[None]) ** 2).sum(-1)
        return np.exp(-self.gamma * d2) @ self.coef - self.rho


@lru_cache(maxsize=2)
def load_model(path: str | Path = ASSET) -> SVRModel:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BRISQUE model {path} is missing; run `python -m calibration.brisque_convert`")
    with np.load(path, allow_pickle=False) as z:
        return SVRModel(z["support_vectors"], z["coef"], float(z["rho"]), float(z["gamma"]),
                        z["feature_min"], z["feature_max"])


def _gaussian(n: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    """The package's window, computed the same way (prefactor included) so it is bit-identical."""
    y, x = np.indices((n, n)) - n // 2
    k = 1 / (2 * np.pi * sigma**2) * np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return k / np.sum(k)


def _filter(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'same' 2-D convolution with zero padding, as the package computes it. (OpenCV's filter2D
    differs by ~1e-4 in the features of flat JPEG areas, where the local variance is a difference
    of nearly equal numbers.)"""
    from scipy import signal

    return signal.convolve2d(img, kernel, "same")


def mscn(grey: np.ndarray) -> np.ndarray:
    k = _gaussian()
    mu = _filter(grey, k)
    sigma = np.sqrt(np.abs(mu**2 - _filter(grey**2, k)))
    return (grey - mu) / (sigma + 1.0 / 255.0)


def aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian by moment matching: (alpha, mean, sigma_l^2, sigma_r^2)."""
    from scipy import optimize, special

    x = x.ravel()
    left, right = x[x < 0], x[x >= 0]
    left_sq = float(np.sum(left**2) / max(left.size, 1))
    right_sq = float(np.sum(right**2) / max(right.size, 1))
    r_hat = float(np.mean(np.abs(x))) ** 2 / float(np.mean(x**2))
    g = np.sqrt(left_sq) / np.sqrt(right_sq)
    big_r = r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2

    def phi(a: np.ndarray) -> np.ndarray:
        return special.gamma(2 / a) ** 2 / (special.gamma(1 / a) * special.gamma(3 / a)) - big_r

    alpha = float(optimize.root(phi, [0.2]).x[0])
    const = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    mean = (np.sqrt(right_sq) - np.sqrt(left_sq)) * const * special.gamma(2 / alpha) / special.gamma(1 / alpha)
    return alpha, float(mean), left_sq, right_sq


def _scale_features(grey: np.ndarray) -> list[float]:
    m = mscn(grey)
    pairs = (m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:])
    alpha, _, l2, r2 = aggd_fit(m)
    feats = [alpha, (l2 + r2) / 2]
    for p in pairs:
        feats.extend(aggd_fit(p))
    return feats


def features(rgb: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features of one RGB image, uint8 (H, W, 3) or float in [0, 1]."""
    import cv2

    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"BRISQUE needs an (H, W, 3) RGB image, got shape {rgb.shape}")
    if min(rgb.shape[:2]) < 16:
        raise ValueError(f"BRISQUE needs an image of at least 16x16, got {rgb.shape[1]}x{rgb.shape[0]}")
    from skimage.color import rgb2gray

    # skimage's own conversion, bit for bit: near-zero MSCN values of flat (e.g. JPEG) areas fall
    # left or right of zero by rounding, and the AGGD fit counts each side.
    grey = rgb2gray(rgb if rgb.dtype == np.uint8 else rgb.astype(np.float64))
    half = cv2.resize(grey, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    return np.array(_scale_features(grey) + _scale_features(half))


def score(rgb: np.ndarray, model: SVRModel | None = None) -> float:
    """BRISQUE score of one RGB image (lower = better)."""
    return float((model or load_model()).predict(features(rgb))[0])


class BrisqueLive:
    """The judge as a metric over (N, 3, H, W) float tensors in [0, 1] -> (N,) raw scores.

    Images are quantised to 8 bits first, as the model was trained on 8-bit photographs.
    """

    lower_better = True

    def __init__(self, path: str | Path = ASSET) -> None:
        self.model = load_model(path)

    def __call__(self, x):  # torch.Tensor -> torch.Tensor
        import torch

        imgs = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        feats = np.stack([features(i) for i in imgs])
        return torch.from_numpy(self.model.predict(feats)).float()
