"""Frames from video files, with defined behaviour for unreadable or damaged videos.

OpenCV's ``VideoCapture`` is the decoder (it ships with the base install). Decoding is
sequential (``grab`` to skip, ``retrieve`` to decode the frames we keep): seeking with
``CAP_PROP_POS_FRAMES`` is slow and inexact for many codecs, so it is only used by callers that
accept that (see :class:`qt_train.data.datasets.VideoFrames`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from qt_train.data.io import ImageReadError


def open_video(path: str | os.PathLike) -> cv2.VideoCapture:
    """An opened capture, or :class:`ImageReadError` naming the file and the reason."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "video file does not exist", "video")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "video file is empty (0 bytes)", "video")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise ImageReadError(path, "not a video OpenCV can open (corrupt, or codec missing)", "video")
    return cap


def count_frames(path: str | os.PathLike, exact: bool = False) -> int:
    """Number of frames: the container's count, or (``exact`` / count unknown) by decoding.

    Container counts can be wrong for damaged or variable-frame-rate files; ``exact=True``
    grabs every frame (slow for long videos).
    """
    cap = open_video(path)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n > 0 and not exact:
            return n
        n = 0
        while cap.grab():
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise ImageReadError(path, "video has no decodable frames", "video")
    return n


def iter_video_frames(
    path: str | os.PathLike,
    stride: int = 1,
    max_frames: int | None = None,
    max_side: int | None = None,
    as_uint8: bool = False,
) -> Iterator[np.ndarray]:
    """Yield every ``stride``-th frame as float32 RGB (H, W, 3) in [0, 1].

    ``as_uint8`` yields uint8 RGB instead (to keep caches small). An unopenable video or one
    without a single decodable frame raises :class:`ImageReadError`; a video that stops
    decoding before the end its container announces stops the iteration with one warning
    that says how many frames were read.
    """
    for _, frame in iter_indexed_frames(path, stride, max_frames, max_side, as_uint8):
        yield frame


def iter_indexed_frames(
    path: str | os.PathLike,
    stride: int = 1,
    max_frames: int | None = None,
    max_side: int | None = None,
    as_uint8: bool = False,
    indices: list[int] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Like :func:`iter_video_frames` but yields (frame index, frame).

    With ``indices`` (sorted), exactly those frames are decoded instead of a stride.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    path = Path(path)
    cap = open_video(path)
    wanted = None if indices is None else iter(sorted(set(indices)))
    next_wanted = None if wanted is None else next(wanted, None)
    expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    pos = yielded = 0
    failed = False  # the decoder ran out (end of file or damage), as opposed to us stopping
    try:
        while max_frames is None or yielded < max_frames:
            if wanted is not None and next_wanted is None:
                return
            try:
                ok = cap.grab()
            except cv2.error:
                ok = False
            if not ok:
                failed = True
                break
            keep = (pos % stride == 0) if wanted is None else (pos == next_wanted)
            if keep:
                try:
                    ok, bgr = cap.retrieve()
                except cv2.error:
                    ok, bgr = False, None
                if not ok or bgr is None:
                    failed = True
                    break
                yield pos, _convert(bgr, max_side, as_uint8)
                yielded += 1
                if wanted is not None:
                    next_wanted = next(wanted, None)
            pos += 1
    finally:
        cap.release()
    if pos == 0:
        raise ImageReadError(path, "video has no decodable frames", "video")
    # Container frame counts may be off by one; anything shorter is a damaged file.
    if failed and expected > 0 and pos < expected - 1:
        warnings.warn(f"video {path} stopped decoding after {pos} of {expected} frames "
                      f"({yielded} kept); the rest of the file is skipped", stacklevel=2)


def sample_frames(
    path: str | os.PathLike,
    n: int,
    max_side: int | None = None,
) -> list[np.ndarray]:
    """``n`` frames spread evenly over the video (fewer if it is shorter), float32 RGB."""
    total = count_frames(path)
    idx = np.unique(np.linspace(0, max(total - 1, 0), num=max(n, 1)).round().astype(int))
    return [f for _, f in iter_indexed_frames(path, max_side=max_side, indices=idx.tolist())]


def _convert(bgr: np.ndarray, max_side: int | None, as_uint8: bool) -> np.ndarray:
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    rgb = cv2.cvtColor(bgr[..., :3], cv2.COLOR_BGR2RGB)
    if max_side is not None and max(rgb.shape[:2]) > max_side:
        s = max_side / max(rgb.shape[:2])
        rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * s)), max(1, round(rgb.shape[0] * s))),
                         interpolation=cv2.INTER_AREA)
    if as_uint8:
        return np.ascontiguousarray(rgb)
    if rgb.dtype == np.uint16:
        return rgb.astype(np.float32) / 65535.0
    return rgb.astype(np.float32) * np.float32(1.0 / 255.0)
