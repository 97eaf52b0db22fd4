"""Metrics and evaluation pieces: PSNR/SSIM against golden values, the level curve, grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qt_train.evaluate import before_after_grid, paired_metrics, spearman
from qt_train.metrics import psnr, ssim


def test_psnr_known_value_and_identity():
    a = torch.zeros(2, 3, 16, 16)
    b = torch.full_like(a, 0.1)  # MSE 0.01 -> 20 dB
    assert torch.allclose(psnr(a, b), torch.tensor([20.0, 20.0]))
    assert torch.equal(psnr(a, a), torch.tensor([100.0, 100.0]))


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    x = rng.random((40, 48, 3)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1).astype(np.float32)
    ref = structural_similarity(x, y, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    ours = ssim(torch.from_numpy(x).permute(2, 0, 1)[None], torch.from_numpy(y).permute(2, 0, 1)[None])
    assert float(ours) == pytest.approx(ref, abs=2e-3)
    t = torch.from_numpy(x).permute(2, 0, 1)[None]
    assert float(ssim(t, t)) == pytest.approx(1.0, abs=1e-6)


def test_ssim_refuses_tiny_images():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_paired_metrics_and_grid_shapes():
    gt = torch.rand(3, 3, 24, 24)
    out = (gt + 0.01).clamp(0, 1)
    m = paired_metrics(out, gt, lq=gt * 0.5)
    assert m["psnr"] > m["input_psnr"] and m["n"] == 3
    grid = before_after_grid(gt * 0.5, out, gt, n=2)
    assert grid.shape == (48, 72, 3) and grid.dtype == np.uint8


def test_spearman_monotone():
    assert spearman(np.arange(8), np.arange(8) ** 2) == pytest.approx(1.0)
    assert spearman(np.arange(8), -np.arange(8)) == pytest.approx(-1.0)
