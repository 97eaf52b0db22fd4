"""Float <-> 8-bit pixel conversion with one rounding rule for the whole toolkit.

The rule: clip to [0, 1], scale by 255, round half to even. It is what OpenCV's saturating casts,
``numpy.rint``, ``torch.round`` and the OpenVINO runtime's in-graph post-processing do, so a frame
written by training, by export's gate and by the runtime is the same byte for the same float.
(Adding 0.5 and truncating rounds halves up instead: one level apart on exact halves.)
"""

from __future__ import annotations

import cv2
import numpy as np


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [0, 1] (any shape) -> uint8: clipped, rounded half to even."""
    x = np.ascontiguousarray(image, np.float32)
    if x.ndim <= 3 and (x.ndim < 3 or x.shape[-1] <= 4):
        # one OpenCV pass (scale, round, saturate); the max() keeps convertScaleAbs's |x| off negatives
        return cv2.convertScaleAbs(np.maximum(x, 0.0), alpha=255.0)
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_float(arr: np.ndarray) -> np.ndarray:
    """uint8/uint16/float array -> float32 in [0, 1] (16-bit is scaled by 1/65535)."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) * np.float32(1.0 / 255.0)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) * np.float32(1.0 / 65535.0)
    return np.clip(arr.astype(np.float32, copy=False), 0.0, 1.0)
