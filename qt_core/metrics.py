"""PSNR, the one definition the toolkit reports (training evaluation, benchmarks, export's gate).

Peak 1 (images in [0, 1]); identical images give 100 dB rather than inf so means stay finite; an
image holding a non-finite value gives 0 dB (a broken output must fail a threshold, not be skipped).
"""

from __future__ import annotations

import numpy as np

IDENTICAL_DB = 100.0


def psnr(a: np.ndarray, b: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """Per-image PSNR in dB of two (N, ...) arrays, shape (N,)."""
    mse = ((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2).reshape(len(a), -1).mean(1)
    finite = np.isfinite(mse)
    safe = np.where(finite, mse, 1.0)
    db = np.where(safe > eps, 10.0 * np.log10(1.0 / np.maximum(safe, eps)), IDENTICAL_DB)
    return np.where(finite, db, 0.0)
