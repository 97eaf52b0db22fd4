"""Full-reference metrics on (N,3,H,W) tensors in [0,1]: PSNR and SSIM, per image.

Pure functions so the training loop, qt-eval and the export gates agree on one definition.
SSIM follows Wang et al. 2004 (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03) on the
luminance-free RGB mean over channels, computed with 'valid' filtering. The field's other
convention, PSNR/SSIM on the BT.601 luma channel Y (16-235 on the 8-bit scale, as MATLAB's
``rgb2ycbcr``), is :func:`rgb_to_y` followed by the same functions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image, (N,): :func:`qt_core.metrics.psnr` (the gate's too) on detached tensors."""
    from qt_core.metrics import psnr as psnr_np

    db = psnr_np(pred.detach().float().cpu().numpy(), target.detach().float().cpu().numpy())
    return torch.from_numpy(db).to(device=pred.device, dtype=torch.float32)


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of an (N, 3, H, W) RGB batch in [0, 1], as (N, 1, H, W) in [16/255, 235/255]."""
    w = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float32, device=x.device) / 255.0
    return (x.float() * w.reshape(1, 3, 1, 1)).sum(1, keepdim=True) + 16.0 / 255.0


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM per image, (N,), averaged over channels and valid window positions."""
    x, y = pred.float(), target.float()
    c = x.shape[1]
    if min(x.shape[-2:]) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window}, got {tuple(x.shape[-2:])}")
    w = _gaussian_window(window, sigma).to(x.device).expand(c, 1, window, window)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w, groups=c)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx * mx
    syy = filt(y * y) - my * my
    sxy = filt(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)
