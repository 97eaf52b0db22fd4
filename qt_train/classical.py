"""Classical restorations: the anchors a learned model must beat on real photographs.

Pure functions of an RGB float32 image (H, W, 3) in [0, 1], no learning, no weights:

- haze: dark channel prior (He, Sun, Tang 2009) with guided-filter refinement of the transmission;
- low light: a gamma that brings the mean luma to 0.45, then CLAHE on L* (Lab);
- underwater: gray-world white balance, then CLAHE on L*;
- rain, snow: a 3x3 median filter (the classical de-speckle; nothing better is classical here).

``CLASSICAL`` is the one table: task -> (name, function).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from qt_core.pixels import to_uint8


def _cv2():
    import cv2

    return cv2


def box(x: np.ndarray, r: int) -> np.ndarray:
    return _cv2().boxFilter(x, -1, (2 * r + 1, 2 * r + 1), borderType=_cv2().BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al.'s grey-guide guided filter (float32 2-D arrays)."""
    mg, ms = box(guide, r), box(src, r)
    var = box(guide * guide, r) - mg * mg
    cov = box(guide * src, r) - mg * ms
    a = cov / (var + eps)
    b = ms - a * mg
    return box(a, r) * guide + box(b, r)


def dark_channel_prior(img: np.ndarray, patch: int = 15, omega: float = 0.95, t_min: float = 0.1) -> np.ndarray:
    """Single-image dehazing by the dark channel prior, with the guided-filter refinement."""
    cv2 = _cv2()
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    dark = cv2.erode(img.min(axis=2), kernel)
    n = max(1, dark.size // 1000)  # the brightest 0.1% of the dark channel
    idx = np.argpartition(dark.ravel(), -n)[-n:]
    airlight = np.maximum(img.reshape(-1, 3)[idx].max(axis=0), 1e-3)
    t = 1.0 - omega * cv2.erode((img / airlight).min(axis=2), kernel)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    t = guided_filter(grey, t.astype(np.float32), r=max(8, min(img.shape[:2]) // 12), eps=1e-3)
    t = np.maximum(t, t_min)[..., None]
    return np.clip((img - airlight) / t + airlight, 0.0, 1.0).astype(np.float32)


def _clahe_l(img: np.ndarray, clip: float = 2.0) -> np.ndarray:
    cv2 = _cv2()
    lab = cv2.cvtColor(to_uint8(img), cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=clip, tileGridSize=(8, 8)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB).astype(np.float32) / 255.0


def gamma_clahe(img: np.ndarray, target: float = 0.45) -> np.ndarray:
    """Low light: a global gamma that maps the mean luma to ``target``, then CLAHE."""
    luma = float((img @ np.array([0.299, 0.587, 0.114], np.float32)).mean())
    gamma = np.log(target) / np.log(min(max(luma, 1e-3), 0.99))
    return _clahe_l(np.power(np.clip(img, 0, 1), min(gamma, 1.0)))


def grey_world_clahe(img: np.ndarray) -> np.ndarray:
    """Underwater: gray-world white balance (channel means equalised), then CLAHE."""
    means = img.reshape(-1, 3).mean(axis=0)
    balanced = np.clip(img * (means.mean() / np.maximum(means, 1e-3)), 0, 1)
    return _clahe_l(balanced.astype(np.float32))


def median3(img: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    return cv2.medianBlur(to_uint8(img), 3).astype(np.float32) / 255.0


CLASSICAL: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "dehaze": ("dark channel prior", dark_channel_prior),
    "lowlight": ("gamma + CLAHE", gamma_clahe),
    "underwater": ("gray-world + CLAHE", grey_world_clahe),
    "derain": ("median 3x3", median3),
    "desnow": ("median 3x3", median3),
}
