"""OpenVINO backend: CPU / GPU / AUTO, latency or throughput hint, AsyncInferQueue for pipelines.

Dynamic-size models are reshaped to each new (N, H, W) and recompiled (a few shapes are cached):
static shapes run faster on OpenVINO than dynamic ones and video rarely changes size.

For :meth:`infer_frames` the model is compiled a second time with OpenVINO's PrePostProcessor in
front and behind: uint8 NHWC in, scale/offset/channel order from the manifest, and rounding back to
uint8 NHWC out. The plugin fuses those steps into the first and last layers, so converting frames
costs nothing measurable where numpy needed ~4 ms a frame (docs/results.md, runtime benchmark).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from qt_runtime.artifact import Artifact
from qt_runtime.backends.base import Backend, BackendUnavailableError, Callback

HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
_MAX_COMPILED = 4


def default_hint(live: bool) -> str:
    """LATENCY for a live source (each frame out as soon as possible: one stream on every core),
    THROUGHPUT for files and folders (every frame, as fast as possible: parallel streams, whose
    requests overlap; ~10% more frames per second on the 2-core CPU of docs/results.md)."""
    return "LATENCY" if live else "THROUGHPUT"


class OpenVINOBackend(Backend):
    """Options: ``hint`` (LATENCY|THROUGHPUT), ``num_requests`` (async queue size, default: the
    device's optimal number plus one), ``threads``, ``inference_precision`` (default ``f32`` on CPU so results
    match the export gate; pass ``bf16``/``f16`` to trade accuracy for speed), ``cache_dir``
    (OpenVINO model cache)."""

    name = "openvino"

    def __init__(self, artifact: Artifact, device: str | None = None, *, hint: str | None = "LATENCY",
                 num_requests: int | None = None, threads: int | None = None,
                 inference_precision: str | None = None, cache_dir: str | None = None, **options: Any) -> None:
        super().__init__(artifact, device or "CPU", **options)
        from qt_runtime import telemetry

        telemetry.disable()
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendUnavailableError("the openvino backend needs OpenVINO: pip install openvino") from exc
        self._ov = ov
        self._core = ov.Core()
        dev = self.device.upper()
        base = dev.split(":")[0].split(".")[0]
        available = list(self._core.available_devices)
        if base not in ("AUTO", "MULTI", "HETERO", "BATCH") and not any(d.startswith(base) for d in available):
            raise BackendUnavailableError(f"OpenVINO device {self.device!r} not found; available: {available}")
        self.device = dev
        if hint is not None and hint.upper() not in HINTS:
            raise ValueError(f"hint {hint!r}: expected one of {list(HINTS)}")
        self._config: dict[str, Any] = {}
        if hint:
            self._config["PERFORMANCE_HINT"] = hint.upper()
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
        if inference_precision is None and base == "CPU":
            # Some CPUs default to bf16, which would silently miss the export gate's numbers.
            inference_precision = "f32"
        if inference_precision:
            self._config["INFERENCE_PRECISION_HINT"] = inference_precision
        if cache_dir:
            self._core.set_property({"CACHE_DIR": str(cache_dir)})
        self._num_requests = num_requests
        from qt_runtime.artifact import weights_file

        weights = weights_file(artifact.manifest)  # the listed, hashed .bin; never a file found by name
        self._model = (self._core.read_model(str(artifact.model_path), str(artifact.path / weights))
                       if weights else self._core.read_model(str(artifact.model_path)))
        # Remember this before the first reshape makes the model look static.
        self._dynamic = self._model.input(self._spec.name).get_partial_shape().is_dynamic
        self._frame_model: Any = None  # self._model with uint8 NHWC pre/post-processing, built on demand
        m = artifact.manifest
        self._rgb = not (m.input.bgr or m.output.bgr)
        self._compiled: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._request: tuple[tuple[Any, ...], Any] | None = None
        self._queue: tuple[tuple[Any, ...], Any] | None = None
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        if self._spec.size is not None and self._spec.batch is not None:
            self._compile((self._spec.batch, 3, *self._spec.size))

    # -- compilation -------------------------------------------------------------------------
    def _compile(self, shape: tuple[int, ...], frames: bool = False) -> Any:
        """Compiled model for this input shape (NCHW, or NHWC uint8 with ``frames``), reshaping a
        dynamic model first."""
        key = ("frames" if frames else "nchw", *shape)
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        model = self._with_frame_io() if frames else self._model
        if self._dynamic:
            shapes = {self._spec.name: self._ov.PartialShape(list(shape))}
            if self._spec.quality_input:
                shapes[self._spec.quality_input] = self._ov.PartialShape([1])
            model.reshape(shapes)
        compiled = self._core.compile_model(model, self.device, self._config)
        self._compiled[key] = compiled
        while len(self._compiled) > _MAX_COMPILED:
            self._compiled.popitem(last=False)
        return compiled

    def _with_frame_io(self) -> Any:
        """A copy of the model that takes and returns RGB uint8 NHWC frames (built once)."""
        if self._frame_model is None:
            self._frame_model = frame_io_model(self._ov, self._model.clone(), self.artifact.manifest)
        return self._frame_model

    # -- sync ----------------------------------------------------------------------------------
    def _run(self, batch: np.ndarray, quality: np.ndarray | None) -> np.ndarray:
        return self._run_request(batch, quality, frames=False)

    def warm_up(self, frames_shape: tuple[int, ...]) -> None:
        if self._rgb:
            self._compile(tuple(frames_shape), frames=True)

    def _run_frames(self, frames: np.ndarray, quality: np.ndarray | None) -> np.ndarray:
        if not self._rgb:
            return super()._run_frames(frames, quality)
        return self._run_request(frames, quality, frames=True)

    def _run_request(self, x: np.ndarray, quality: np.ndarray | None, frames: bool) -> np.ndarray:
        key = (frames, *x.shape)
        if self._request is None or self._request[0] != key:
            self._request = (key, self._compile(x.shape, frames).create_infer_request())
        request = self._request[1]
        request.infer(self._feeds(x, quality))
        return self._output(request, frames)

    def _output(self, request: Any, frames: bool) -> np.ndarray:
        data = request.get_tensor(self.artifact.manifest.output.name).data
        return np.array(data, copy=True) if frames else np.array(data, np.float32, copy=True)

    # -- async ---------------------------------------------------------------------------------
    def infer_async(self, batch: np.ndarray, quality: float | None = None,
                    callback: Callback | None = None, userdata: Any = None) -> None:
        self._ensure_open()
        x = self._spec.check_batch(batch, self.check_range)
        self._start(x, self._spec.quality_value(quality), False, callback, userdata)

    def infer_frames_async(self, frames: np.ndarray, quality: float | None = None,
                           callback: Callback | None = None, userdata: Any = None) -> None:
        if not self._rgb:
            super().infer_frames_async(frames, quality, callback, userdata)
            return
        self._ensure_open()
        x = self._spec.check_frames(frames)
        self._start(x, self._spec.quality_value(quality), True, callback, userdata)

    def _start(self, x: np.ndarray, quality: np.ndarray | None, frames: bool, callback: Callback | None,
               userdata: Any) -> None:
        key = (frames, *x.shape)
        if self._queue is None or self._queue[0] != key:
            if self._queue is not None:
                self._queue[1].wait_all()
            compiled = self._compile(x.shape, frames)
            # One request more than the device runs at once: it waits inside OpenVINO, so a stream that
            # finishes starts the next frame without waiting for Python (+5-8% on 2 cores).
            n = self._num_requests or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) + 1
            queue = self._ov.AsyncInferQueue(compiled, max(1, n))
            queue.set_callback(self._on_done)
            self._queue = (key, queue)
        # share_inputs=False (the default, spelled out): OpenVINO copies the input into the request,
        # so the caller may reuse its buffer as soon as this returns.
        self._queue[1].start_async(self._feeds(x, quality), (frames, callback, userdata), share_inputs=False)

    def _on_done(self, request: Any, data: tuple[bool, Callback | None, Any]) -> None:
        frames, callback, userdata = data
        try:
            out = self._output(request, frames)
            if callback is not None:
                callback(out, userdata)
        except BaseException as exc:  # surfaced by wait_all; raising here would be lost in OV's thread
            with self._lock:
                self._errors.append(exc)

    def wait_all(self) -> None:
        if self._queue is not None:
            self._queue[1].wait_all()
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            raise errors[0]

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"openvino": self._ov.get_version(), "config": dict(self._config),
                  "num_requests": self._num_requests})
        return d

    def close(self) -> None:
        if self._queue is not None and not self._closed:
            self._queue[1].wait_all()
        self._queue = None
        self._request = None
        self._compiled.clear()
        super().close()


def frame_io_model(ov: Any, model: Any, manifest: Any) -> Any:
    """Wrap an RGB ``model`` (NCHW float in/out, as the manifest says) to take and return uint8 NHWC.

    In: u8 -> f32, ``(x - mean) / scale`` maps [0, 255] onto the input range. Out: the inverse map,
    clamp to [0, 255], round half to even (as OpenCV does), u8. BGR models are not wrapped: with a
    channel reversal on both sides, OpenVINO 2026.4's CPU plugin dropped the input one (found by
    tests/test_runtime_core.py::test_infer_frames_applies_manifest_range_and_channel_order), so
    :class:`OpenVINOBackend` converts their frames in numpy instead.
    """
    if manifest.input.bgr or manifest.output.bgr:
        raise ValueError("frame_io_model wraps RGB models only")
    from openvino import opset13 as ops
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    lo, hi = manifest.input.range
    inp = ppp.input(manifest.input.name)
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    inp.model().set_layout(ov.Layout("NCHW"))
    steps = inp.preprocess().convert_element_type(ov.Type.f32)
    if lo:
        steps.mean(-lo * 255.0 / (hi - lo))
    steps.scale(255.0 / (hi - lo))

    lo_out, hi_out = manifest.output.range

    def to_bytes(node: Any) -> Any:
        x = node
        if lo_out:
            x = ops.subtract(x, np.float32(lo_out))
        x = ops.multiply(x, np.float32(255.0 / (hi_out - lo_out)))
        x = ops.round(ops.clamp(x, 0.0, 255.0), "half_to_even")
        return x.output(0)

    out = ppp.output(manifest.output.name)
    out.model().set_layout(ov.Layout("NCHW"))
    out.tensor().set_layout(ov.Layout("NHWC")).set_element_type(ov.Type.u8)
    out.postprocess().custom(to_bytes)
    out.postprocess().convert_layout(ov.Layout("NHWC"))
    out.postprocess().convert_element_type(ov.Type.u8)
    return ppp.build()
