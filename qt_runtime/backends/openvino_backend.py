"""OpenVINO backend: CPU / GPU / AUTO, latency or throughput hint, AsyncInferQueue for pipelines.

Dynamic-size models are reshaped to each new (N, H, W) and recompiled (a few shapes are cached):
static shapes run faster on OpenVINO than dynamic ones and video rarely changes size.
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


class OpenVINOBackend(Backend):
    """Options: ``hint`` (LATENCY|THROUGHPUT), ``num_requests`` (async queue size, default: the
    device's optimal number), ``threads``, ``inference_precision`` (default ``f32`` on CPU so results
    match the export gate; pass ``bf16``/``f16`` to trade accuracy for speed), ``cache_dir``
    (OpenVINO model cache)."""

    name = "openvino"

    def __init__(self, artifact: Artifact, device: str | None = None, *, hint: str | None = "LATENCY",
                 num_requests: int | None = None, threads: int | None = None,
                 inference_precision: str | None = None, cache_dir: str | None = None, **options: Any) -> None:
        super().__init__(artifact, device or "CPU", **options)
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
        self._model = self._core.read_model(str(artifact.model_path))
        # Remember this before the first reshape makes the model look static.
        self._dynamic = self._model.input(self._spec.name).get_partial_shape().is_dynamic
        self._compiled: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._request: tuple[tuple[int, ...], Any] | None = None
        self._queue: tuple[tuple[int, ...], Any] | None = None
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        if self._spec.size is not None and self._spec.batch is not None:
            self._compile((self._spec.batch, 3, *self._spec.size))

    # -- compilation -------------------------------------------------------------------------
    def _compile(self, shape: tuple[int, ...]) -> Any:
        """Compiled model for this input shape (reshaping a dynamic model first)."""
        key = tuple(shape)
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        if self._dynamic:
            shapes = {self._spec.name: self._ov.PartialShape(list(key))}
            if self._spec.quality_input:
                shapes[self._spec.quality_input] = self._ov.PartialShape([1])
            self._model.reshape(shapes)
        compiled = self._core.compile_model(self._model, self.device, self._config)
        self._compiled[key] = compiled
        while len(self._compiled) > _MAX_COMPILED:
            self._compiled.popitem(last=False)
        return compiled

    # -- sync ----------------------------------------------------------------------------------
    def _run(self, batch: np.ndarray, quality: np.ndarray | None) -> np.ndarray:
        key = tuple(batch.shape)
        if self._request is None or self._request[0] != key:
            self._request = (key, self._compile(key).create_infer_request())
        request = self._request[1]
        request.infer(self._feeds(batch, quality))
        return np.array(request.get_tensor(self.artifact.manifest.output.name).data, np.float32, copy=True)

    # -- async ---------------------------------------------------------------------------------
    def infer_async(self, batch: np.ndarray, quality: float | None = None,
                    callback: Callback | None = None, userdata: Any = None) -> None:
        self._ensure_open()
        x = self._spec.check_batch(batch, self.check_range)
        q = self._spec.quality_value(quality)
        key = tuple(x.shape)
        if self._queue is None or self._queue[0] != key:
            if self._queue is not None:
                self._queue[1].wait_all()
            compiled = self._compile(key)
            n = self._num_requests or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            queue = self._ov.AsyncInferQueue(compiled, max(1, n))
            queue.set_callback(self._on_done)
            self._queue = (key, queue)
        # Copy the input: the caller may reuse its buffer while the request is in flight.
        self._queue[1].start_async(self._feeds(x.copy(), q), (callback, userdata))

    def _on_done(self, request: Any, data: tuple[Callback | None, Any]) -> None:
        callback, userdata = data
        try:
            out = np.array(request.get_tensor(self.artifact.manifest.output.name).data, np.float32, copy=True)
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
