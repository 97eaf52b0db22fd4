"""The one interface every runtime backend implements, plus the input checks they share.

A backend takes float32 NCHW RGB batches in the manifest's range and returns the same layout
(:meth:`Backend.infer`), or camera frames as RGB uint8 NxHxWx3 and returns restored frames the same
way (:meth:`Backend.infer_frames`: the colour/range conversion happens inside, in the compiled model
where the backend can). Validation lives here, not in each backend, so every backend rejects bad
input with the same message before it reaches native code (where errors are cryptic or silent).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from qt_runtime.artifact import Artifact
from qt_runtime.colour import frames_to_nchw, nchw_to_frames

Callback = Callable[[np.ndarray, Any], None]


class BackendUnavailableError(RuntimeError):
    """The backend's library (or device) is not present here; the message says what to install."""


class InputError(ValueError):
    """A batch or quality value that does not match the artifact's input spec."""


@dataclass(frozen=True)
class InputSpec:
    """What a backend accepts: from the manifest, narrowed by the model file (static batch)."""

    name: str
    size: tuple[int, int] | None  # (H, W) for a static model, None for dynamic
    multiple: int
    batch: int | None  # static batch size, or None when any batch size works
    range: tuple[float, float]
    quality_mode: str  # "folded" | "input"
    quality_input: str | None
    quality_default: float | None
    quality_levels: int
    layout: str = "NCHW"
    dtype: str = "float32"

    @classmethod
    def from_artifact(cls, artifact: Artifact) -> InputSpec:
        m = artifact.manifest
        q = m.quality
        return cls(name=m.input.name, size=m.input.size, multiple=max(1, m.input.multiple),
                   batch=artifact.image_batch, range=m.input.range, quality_mode=q.mode,
                   quality_input=q.input_name if q.is_input else None,
                   quality_default=float(q.default) if q.is_input else (None if q.level is None else float(q.level)),
                   quality_levels=q.levels)

    def check_batch(self, batch: Any, check_range: bool = True) -> np.ndarray:
        """Return ``batch`` (C-contiguous) if it fits this spec, else raise :class:`InputError`."""
        if not isinstance(batch, np.ndarray):
            raise InputError(f"input '{self.name}': expected a numpy array, got {type(batch).__name__}")
        if batch.dtype != np.float32:
            raise InputError(f"input '{self.name}': dtype {batch.dtype}, expected float32 in "
                             f"{list(self.range)} (convert with frame.astype(np.float32) / 255)")
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise InputError(f"input '{self.name}': shape {list(batch.shape)}, expected N x 3 x H x W (NCHW RGB)")
        n, _, h, w = batch.shape
        self._check_geometry(f"input '{self.name}'", n, h, w, batch.shape)
        if check_range:
            lo, hi = float(batch.min()), float(batch.max())
            tol = 1e-3 * (self.range[1] - self.range[0])
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise InputError(f"input '{self.name}': contains NaN or inf")
            if lo < self.range[0] - tol or hi > self.range[1] + tol:
                raise InputError(f"input '{self.name}': values span [{lo:.4g}, {hi:.4g}], expected "
                                 f"{list(self.range)} (did you forget to divide by 255?)")
        return np.ascontiguousarray(batch)

    def check_frames(self, frames: Any) -> np.ndarray:
        """Return ``frames`` (C-contiguous RGB uint8 NxHxWx3) if they fit this spec, else raise."""
        if not isinstance(frames, np.ndarray):
            raise InputError(f"frames: expected a numpy array, got {type(frames).__name__}")
        if frames.dtype != np.uint8:
            raise InputError(f"frames: dtype {frames.dtype}, expected uint8 RGB (use infer() for float batches)")
        if frames.ndim != 4 or frames.shape[3] != 3:
            raise InputError(f"frames: shape {list(frames.shape)}, expected N x H x W x 3 (RGB uint8)")
        n, h, w = frames.shape[:3]
        self._check_geometry("frames", n, h, w, frames.shape)
        return np.ascontiguousarray(frames)

    def _check_geometry(self, what: str, n: int, h: int, w: int, shape: tuple[int, ...]) -> None:
        """Batch size and H x W against the model's (static size, or dynamic with a multiple)."""
        if n == 0 or h == 0 or w == 0:
            raise InputError(f"{what}: empty batch {list(shape)}")
        if self.batch is not None and n != self.batch:
            raise InputError(f"{what}: batch of {n}, the model takes exactly {self.batch}")
        if self.size is not None and (h, w) != tuple(self.size):
            raise InputError(f"{what}: {h}x{w}, the model takes exactly {self.size[0]}x{self.size[1]} "
                             "(use qt_runtime.tiling.fit_to_input to resize, letterbox, pad or tile)")
        if self.size is None and (h % self.multiple or w % self.multiple):
            raise InputError(f"{what}: {h}x{w} is not a multiple of {self.multiple} "
                             "(pad with qt_runtime.tiling.fit_to_input(frame, None, 'pad', multiple=...))")

    def quality_value(self, quality: float | None) -> np.ndarray | None:
        """The float32 [1] tensor to feed, or None for a folded model; raises on a bad level."""
        if self.quality_mode != "input":
            if quality is not None and self.quality_default is not None and float(quality) != self.quality_default:
                raise InputError(f"this artifact has quality folded at level {self.quality_default:g}; "
                                 f"it cannot run at {quality} (export with the condition kept as an input)")
            return None
        q = self.quality_default if quality is None else float(quality)
        if q is None or not (0.0 <= q <= self.quality_levels - 1):
            raise InputError(f"quality {q} outside [0, {self.quality_levels - 1}]")
        return np.array([q], np.float32)


class Backend(abc.ABC):
    """Base class: subclasses set ``name`` and implement ``_run`` (and may override async)."""

    name: str = "base"

    @classmethod
    def usable(cls) -> bool:
        """Whether this machine can run the backend at all (a default is only picked if so)."""
        return True

    def __init__(self, artifact: Artifact, device: str | None = None, *, check_range: bool = True,
                 **options: Any) -> None:
        self.artifact = artifact
        self.device = device
        self.check_range = check_range
        self._spec = InputSpec.from_artifact(artifact)
        self._closed = False

    @property
    def input_spec(self) -> InputSpec:
        return self._spec

    def _feeds(self, batch: np.ndarray, quality: np.ndarray | None) -> dict[str, np.ndarray]:
        """Input name -> array: the image batch, plus the quality scalar for quality-input artifacts."""
        feeds = {self._spec.name: batch}
        if quality is not None and self._spec.quality_input:
            feeds[self._spec.quality_input] = quality
        return feeds

    def infer(self, batch: np.ndarray, quality: float | None = None) -> np.ndarray:
        """Run one batch synchronously; returns a new float32 NCHW array."""
        self._ensure_open()
        x = self._spec.check_batch(batch, self.check_range)
        return self._run(x, self._spec.quality_value(quality))

    def infer_async(self, batch: np.ndarray, quality: float | None = None,
                    callback: Callback | None = None, userdata: Any = None) -> None:
        """Start a batch; ``callback(output, userdata)`` runs when it is done (maybe on another thread).

        This default runs synchronously; OpenVINO/TensorRT override it with real request queues.
        Call :meth:`wait_all` before reading results that callbacks store.
        """
        out = self.infer(batch, quality)
        if callback is not None:
            callback(out, userdata)

    def infer_frames(self, frames: np.ndarray, quality: float | None = None) -> np.ndarray:
        """Restore RGB uint8 frames (N x H x W x 3); returns new RGB uint8 frames of the same shape.

        The manifest's range and channel order are applied on the way in and out, so a video
        pipeline only moves bytes. This default converts with OpenCV around :meth:`infer`;
        backends that can fold the conversion into the compiled model override :meth:`_run_frames`.
        """
        self._ensure_open()
        x = self._spec.check_frames(frames)
        return self._run_frames(x, self._spec.quality_value(quality))

    def warm_up(self, frames_shape: tuple[int, ...]) -> None:
        """Get ready for :meth:`infer_frames` on N x H x W x 3 frames (compile, allocate) now, so
        the first frame of a stream is not late; a no-op where opening already did it."""
        return None

    def infer_frames_async(self, frames: np.ndarray, quality: float | None = None,
                           callback: Callback | None = None, userdata: Any = None) -> None:
        """:meth:`infer_frames` through :meth:`infer_async`; ``callback(frames_out, userdata)``."""
        self._ensure_open()
        x = self._spec.check_frames(frames)
        m = self.artifact.manifest

        def done(output: np.ndarray, data: Any) -> None:
            if callback is not None:
                callback(nchw_to_frames(output, m.output.range, m.output.bgr), data)

        self.infer_async(frames_to_nchw(x, m.input.range, m.input.bgr), quality, done, userdata)

    def _run_frames(self, frames: np.ndarray, quality: np.ndarray | None) -> np.ndarray:
        """Validated frames -> restored frames, via the float model interface."""
        m = self.artifact.manifest
        batch = frames_to_nchw(frames, m.input.range, m.input.bgr)
        return nchw_to_frames(self._run(batch, quality), m.output.range, m.output.bgr)

    def wait_all(self) -> None:
        """Block until every ``infer_async`` started so far has called back; re-raise its error."""
        return None  # the default infer_async is synchronous: nothing is ever pending

    def describe(self) -> dict[str, Any]:
        """Facts for logs and stats: backend, device, model, precision, input spec."""
        m = self.artifact.manifest
        s = self._spec
        return {"backend": self.name, "device": self.device, "artifact": str(self.artifact.path),
                "format": m.format, "precision": m.precision, "input": s.name,
                "size": list(s.size) if s.size else None, "multiple": s.multiple, "batch": s.batch,
                "quality_mode": s.quality_mode, "quality_default": s.quality_default}

    def close(self) -> None:
        self._closed = True

    def _ensure_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.name} backend is closed")

    @abc.abstractmethod
    def _run(self, batch: np.ndarray, quality: np.ndarray | None) -> np.ndarray:
        """Run a validated batch; ``quality`` is the float32 [1] tensor or None."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
