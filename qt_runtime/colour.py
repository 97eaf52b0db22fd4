"""Colour and range conversion between camera frames (RGB uint8, HWC) and model tensors.

A model takes float32 NCHW in the range and channel order its manifest states; cameras and files
give interleaved bytes. At 640x360 the obvious numpy route (astype, scale, transpose, and back with
clip) costs ~4 ms per frame, as much as an INT8 model on two cores, so these functions work per
channel plane with OpenCV, which turns the strided transposes into contiguous passes (~0.5 ms for
both directions). Backends that can do the conversion inside the compiled model (OpenVINO's
pre/post-processing) skip them altogether; see :meth:`qt_runtime.backends.base.Backend.infer_frames`.
"""

from __future__ import annotations

import cv2
import numpy as np

Range = tuple[float, float]


def to_model_range(image: np.ndarray, rng: Range, bgr: bool = False) -> np.ndarray:
    """RGB uint8 HWC -> float32 HWC in the model's input range (and channel order)."""
    lo, hi = rng
    x = image.astype(np.float32)
    x *= (hi - lo) / 255.0
    if lo:
        x += lo
    return x[..., ::-1] if bgr else x


def from_model_range(image: np.ndarray, rng: Range, bgr: bool = False) -> np.ndarray:
    """float32 HWC in the model's output range -> float32 RGB HWC in [0, 1] (clipped)."""
    lo, hi = rng
    x = image if (lo, hi) == (0.0, 1.0) else (image - lo) / (hi - lo)
    if bgr:
        x = x[..., ::-1]
    return np.clip(x, 0.0, 1.0)


def frames_to_nchw(frames: np.ndarray, rng: Range, bgr: bool = False) -> np.ndarray:
    """RGB uint8 NxHxWx3 -> float32 Nx3xHxW in the model's range; equals ``to_model_range`` + transpose."""
    n, h, w = frames.shape[:3]
    out = np.empty((n, 3, h, w), np.float32)
    lo, hi = rng
    for i in range(n):
        planes = cv2.split(np.ascontiguousarray(frames[i]))
        for c, plane in enumerate(planes[::-1] if bgr else planes):
            np.multiply(plane, (hi - lo) / 255.0, out=out[i, c], dtype=np.float32)
            if lo:
                out[i, c] += lo
    return out


def nchw_to_frames(output: np.ndarray, rng: Range, bgr: bool = False) -> np.ndarray:
    """Model output Nx3xHxW (model range) -> RGB uint8 NxHxWx3, rounded and saturated.

    Equals ``to_uint8(from_model_range(...))`` per image: OpenCV scales, rounds half to even and
    saturates each plane in one pass, then interleaves the planes.
    """
    lo, hi = rng
    alpha = 255.0 / (hi - lo)
    n, _, h, w = output.shape
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        planes = [cv2.addWeighted(p, alpha, p, 0.0, -lo * alpha, dtype=cv2.CV_8U)
                  for p in np.asarray(output[i], np.float32)]
        frames[i] = cv2.merge(planes[::-1] if bgr else planes)
    return frames
