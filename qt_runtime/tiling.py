"""Fit frames to a model's input: resize, letterbox, pad, or overlapping tiles.

A static-size model (e.g. 256x256 for a Jetson INT8 engine) must still restore a 1080p frame.
Tiling keeps full resolution: overlapping tiles are inferred in batches and blended with a
raised-cosine window, so the seams of a convolutional model fade instead of showing. The
blend is a normalised weighted mean, hence exact for any pointwise model (identity included).
Pure numpy (+ OpenCV for resizing); frames are HWC float32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

InferFn = Callable[[np.ndarray], np.ndarray]
POLICIES = ("resize", "letterbox", "pad", "tile")


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile start offsets covering ``[0, length)`` with at least ``overlap`` shared pixels.

    Tiles are spread evenly, so the last tile ends exactly at ``length`` (no ragged tile).
    """
    if tile <= 0 or overlap < 0 or overlap >= tile:
        raise ValueError(f"need 0 <= overlap < tile, got tile={tile} overlap={overlap}")
    if length <= tile:
        return [0]
    n = int(np.ceil((length - overlap) / (tile - overlap)))
    return [int(round(s)) for s in np.linspace(0, length - tile, n)]


def ramp_window(n: int, left: int, right: int) -> np.ndarray:
    """1-D weights: raised-cosine rise over ``left`` px, flat 1, fall over ``right`` px; all > 0."""
    w = np.ones(n, np.float64)
    if left > 0:
        w[:left] = 0.5 - 0.5 * np.cos(np.pi * np.arange(1, left + 1) / (left + 1))
    if right > 0:
        w[n - right:] = np.minimum(w[n - right:], (0.5 - 0.5 * np.cos(np.pi * np.arange(1, right + 1) / (right + 1)))[::-1])
    return w


def _axis_windows(starts: list[int], tile: int, overlap: int) -> list[np.ndarray]:
    out = []
    for i, s in enumerate(starts):
        left = min(overlap, starts[i - 1] + tile - s) if i > 0 else 0
        right = min(overlap, s + tile - starts[i + 1]) if i + 1 < len(starts) else 0
        out.append(ramp_window(tile, max(left, 0), max(right, 0)))
    return out


def tile_infer(frame: np.ndarray, infer_fn: InferFn, tile: tuple[int, int], overlap: int = 32, batch: int = 4,
               *, fixed_batch: bool = False) -> np.ndarray:
    """Run a size-preserving model on ``frame`` (HWC) through overlapping ``tile``-sized crops.

    ``infer_fn`` maps an NCHW float32 batch to NCHW of the same H, W. Frames smaller than a tile
    are mirror-padded up to it. ``fixed_batch`` pads the last batch to ``batch`` tiles (for
    static-batch engines). Returns HWC float32 with the frame's H, W and the model's channels.
    """
    if frame.ndim != 3:
        raise ValueError(f"frame must be HWC, got shape {frame.shape}")
    th, tw = int(tile[0]), int(tile[1])
    if overlap >= min(th, tw):
        raise ValueError(f"overlap {overlap} must be smaller than the tile {th}x{tw}")
    if batch < 1:
        raise ValueError("batch must be >= 1")
    h, w = frame.shape[:2]
    ph, pw = max(h, th), max(w, tw)
    src = frame.astype(np.float32, copy=False)
    if (ph, pw) != (h, w):
        src = np.pad(src, ((0, ph - h), (0, pw - w), (0, 0)), mode="symmetric")
    ys, xs = axis_starts(ph, th, overlap), axis_starts(pw, tw, overlap)
    wys, wxs = _axis_windows(ys, th, overlap), _axis_windows(xs, tw, overlap)
    jobs = [(y, x, np.outer(wy, wx)) for y, wy in zip(ys, wys, strict=True) for x, wx in zip(xs, wxs, strict=True)]

    acc: np.ndarray | None = None
    norm = np.zeros((ph, pw), np.float64)
    for i in range(0, len(jobs), batch):
        chunk = jobs[i:i + batch]
        tiles = np.stack([src[y:y + th, x:x + tw].transpose(2, 0, 1) for y, x, _ in chunk])
        if fixed_batch and len(chunk) < batch:
            tiles = np.concatenate([tiles, np.repeat(tiles[-1:], batch - len(chunk), axis=0)])
        out = np.asarray(infer_fn(np.ascontiguousarray(tiles, np.float32)))
        if out.ndim != 4 or out.shape[0] < len(chunk) or out.shape[2:] != (th, tw):
            raise ValueError(f"tile_infer needs a size-preserving model: sent {list(tiles.shape)}, got "
                             f"{list(out.shape)}")
        if acc is None:
            acc = np.zeros((ph, pw, out.shape[1]), np.float64)
        for (y, x, win), o in zip(chunk, out[:len(chunk)], strict=True):
            acc[y:y + th, x:x + tw] += o.transpose(1, 2, 0) * win[..., None]
            norm[y:y + th, x:x + tw] += win
    assert acc is not None
    return (acc[:h, :w] / norm[:h, :w, None]).astype(np.float32)


@dataclass(frozen=True)
class Placement:
    """How a frame was fitted to the model input, so the output can be mapped back."""

    policy: str
    frame_size: tuple[int, int]  # (h, w) of the original frame
    input_size: tuple[int, int]  # (H, W) given to the model
    content: tuple[int, int, int, int]  # (top, left, height, width) of the frame inside the input


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


def _resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import cv2

    h, w = hw
    if img.shape[:2] == (h, w):
        return img
    shrink = h * w < img.shape[0] * img.shape[1]
    out = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out.reshape(h, w, *img.shape[2:])


def fit_to_input(frame: np.ndarray, size: tuple[int, int] | None, policy: str = "resize", *, multiple: int = 1,
                 pad_value: float = 0.0) -> tuple[np.ndarray, Placement]:
    """Fit an HWC ``frame`` to the model input ``size`` (H, W); return it and its :class:`Placement`.

    ``size=None`` (dynamic model) means the frame rounded up to ``multiple``. Policies:
    ``resize`` stretches; ``letterbox`` keeps aspect and centres on ``pad_value``; ``pad`` mirrors
    the frame out to the bottom/right (the frame must not be larger); ``tile`` returns the frame
    unchanged for :func:`tile_infer`.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r}: expected one of {list(POLICIES)}")
    h, w = frame.shape[:2]
    target = (_round_up(h, multiple), _round_up(w, multiple)) if size is None else (int(size[0]), int(size[1]))
    H, W = target
    if policy == "tile":
        return frame, Placement("tile", (h, w), (h, w), (0, 0, h, w))
    if policy == "resize":
        return _resize(frame, target), Placement("resize", (h, w), target, (0, 0, H, W))
    if policy == "pad":
        if h > H or w > W:
            raise ValueError(f"frame {h}x{w} is larger than the model input {H}x{W}; use policy "
                             "'tile', 'resize' or 'letterbox'")
        placement = Placement("pad", (h, w), target, (0, 0, h, w))
        if (h, w) == (H, W):  # the common video case: the frame is the model size, no copy
            return frame, placement
        pads = ((0, H - h), (0, W - w)) + ((0, 0),) * (frame.ndim - 2)
        return np.pad(frame, pads, mode="symmetric"), placement
    scale = min(H / h, W / w)
    nh, nw = max(1, min(H, round(h * scale))), max(1, min(W, round(w * scale)))
    top, left = (H - nh) // 2, (W - nw) // 2
    canvas = np.full((H, W, *frame.shape[2:]), pad_value, dtype=frame.dtype)
    canvas[top:top + nh, left:left + nw] = _resize(frame, (nh, nw))
    return canvas, Placement("letterbox", (h, w), target, (top, left, nh, nw))


def restore_from_input(output: np.ndarray, placement: Placement) -> np.ndarray:
    """Inverse of :func:`fit_to_input`: map an HWC model output back to the frame's size."""
    if output.shape[:2] != placement.input_size:
        raise ValueError(f"output is {output.shape[:2]}, expected the model input size {placement.input_size}")
    top, left, ch, cw = placement.content
    crop = output[top:top + ch, left:left + cw]
    return _resize(np.ascontiguousarray(crop), placement.frame_size)
