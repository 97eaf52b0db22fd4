"""TensorRT backend (TensorRT 10 named-tensor API, CUDA through ``cuda-python``; no torch).

It loads the engine built on this machine for this artifact (``qt-run build-engine``), named by
TensorRT version and GPU, and refuses an engine whose sidecar says it came from another model
file. ``infer_async`` runs on ``num_streams`` execution contexts, each with its own CUDA stream
and device buffers, so copies and compute of consecutive batches overlap.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from queue import Queue
from typing import Any

import numpy as np

from qt_runtime.artifact import Artifact
from qt_runtime.backends.base import Backend, Callback
from qt_runtime.engine_build import (
    cuda_check,
    engine_filename,
    gpu_name,
    import_cudart,
    import_tensorrt,
    sidecar_path,
)
from qt_runtime.manifest import ArtifactError


def _device_index(device: str | None) -> int:
    """``None``/``GPU``/``CUDA`` -> 0, ``GPU:1``/``cuda:1`` -> 1."""
    if device is None:
        return 0
    head, _, idx = device.partition(":")
    if head.upper() not in ("GPU", "CUDA") or (idx and not idx.isdigit()):
        raise ValueError(f"tensorrt device {device!r}: expected GPU, GPU:<index> or cuda:<index>")
    return int(idx or 0)


def _ptr(handle: Any) -> int:
    return int(handle) if not hasattr(handle, "getPtr") else int(handle.getPtr())


class _Slot:
    """One execution context with its CUDA stream and (growable) device buffers."""

    def __init__(self, engine: Any, trt: Any, cudart: Any) -> None:
        self.trt, self.cudart = trt, cudart
        self.engine = engine
        self.context = engine.create_execution_context()
        self.stream = cuda_check(cudart.cudaStreamCreate())
        self.names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = {n for n in self.names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT}
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device ptr, capacity bytes)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, cap = self.buffers.get(name, (0, 0))
        if cap < nbytes:
            if ptr:
                cuda_check(self.cudart.cudaFree(ptr))
            ptr = cuda_check(self.cudart.cudaMalloc(max(nbytes, 256)))
            self.buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
        trt, cudart, ctx = self.trt, self.cudart, self.context
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        stream = self.stream
        host_inputs = {}
        for name, arr in feeds.items():
            want = trt.nptype(self.engine.get_tensor_dtype(name))
            host_inputs[name] = np.ascontiguousarray(arr, dtype=want)
            if not ctx.set_input_shape(name, tuple(arr.shape)):
                raise ValueError(f"TensorRT rejected shape {list(arr.shape)} for '{name}' (outside the engine's "
                                 "optimisation profile? rebuild with --min/--opt/--max-shape)")
        outputs: dict[str, np.ndarray] = {}
        for name in self.names:
            if name in self.inputs:
                arr = host_inputs[name]
                ptr = self._buffer(name, arr.nbytes)
                cuda_check(cudart.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, h2d, stream))
            else:
                shape = tuple(ctx.get_tensor_shape(name))
                outputs[name] = np.empty(shape, trt.nptype(self.engine.get_tensor_dtype(name)))
                ptr = self._buffer(name, outputs[name].nbytes)
            ctx.set_tensor_address(name, ptr)
        if not ctx.execute_async_v3(_ptr(stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        out = outputs[output]
        cuda_check(cudart.cudaMemcpyAsync(out.ctypes.data, self.buffers[output][0], out.nbytes, d2h, stream))
        cuda_check(cudart.cudaStreamSynchronize(stream))
        return out.astype(np.float32, copy=False)

    def free(self) -> None:
        for ptr, _ in self.buffers.values():
            self.cudart.cudaFree(ptr)
        self.buffers.clear()
        self.cudart.cudaStreamDestroy(self.stream)
        self.context = None


def check_engine(engine: Path, data: bytes, facts: dict, artifact: Artifact) -> None:
    """The engine's bytes are the ones its sidecar hashed when ``build-engine`` wrote them, and it
    was built from this artifact's model file. (An engine is code for the GPU: a swapped file must
    not run.)"""
    import hashlib

    if facts.get("engine_sha256") != hashlib.sha256(data).hexdigest():
        raise ArtifactError(f"{engine}: its sha256 differs from the one recorded when it was built (changed or "
                            f"corrupted); rebuild: qt-run build-engine {artifact.path}")
    m = artifact.manifest
    if facts.get("source_sha256") != m.sha256[m.model_file]:
        raise ArtifactError(f"{engine}: built from a different {m.model_file} than this artifact's; "
                            f"rebuild: qt-run build-engine {artifact.path}")


class TensorRTBackend(Backend):
    """Options: ``engine`` (explicit engine path; default: the one for this GPU/TensorRT next to
    the artifact), ``num_streams`` (contexts for ``infer_async``, default 2)."""

    name = "tensorrt"

    @classmethod
    def usable(cls) -> bool:
        from qt_runtime.backends import tensorrt_usable

        return tensorrt_usable()

    def __init__(self, artifact: Artifact, device: str | None = None, *, engine: str | Path | None = None,
                 num_streams: int = 2, **options: Any) -> None:
        super().__init__(artifact, device or "GPU", **options)
        if artifact.manifest.format not in ("onnx", "onnx_qdq"):
            raise ArtifactError(f"artifact {artifact.path}: TensorRT runs ONNX artifacts, this one is "
                                f"{artifact.manifest.format!r}; use the openvino backend")
        trt = import_tensorrt()
        cudart = import_cudart()
        self._trt, self._cudart = trt, cudart
        self._index = _device_index(device)
        cuda_check(cudart.cudaSetDevice(self._index))
        self._gpu = gpu_name(self._index)
        path = Path(engine) if engine is not None else artifact.path / engine_filename(trt.__version__, self._gpu)
        if not path.is_file():
            raise ArtifactError(
                f"artifact {artifact.path}: no TensorRT engine for this machine ({path.name}; TensorRT "
                f"{trt.__version__}, {self._gpu}); build it here: qt-run build-engine {artifact.path}")
        data = path.read_bytes()  # hashed and deserialised from the same bytes
        self._check_sidecar(path, data, required=engine is None)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise ArtifactError(f"{path}: TensorRT could not load the engine (built by another TensorRT "
                                f"version or GPU?); rebuild: qt-run build-engine {artifact.path}")
        self.engine_path = path
        names = {self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)}
        wanted = {artifact.manifest.input.name, artifact.manifest.output.name}
        if self._spec.quality_input:
            wanted.add(self._spec.quality_input)
        if not wanted <= names:
            raise ArtifactError(f"{path}: engine tensors {sorted(names)} lack {sorted(wanted - names)}; rebuild it")
        self._slots = [_Slot(self._engine, trt, cudart) for _ in range(max(1, num_streams))]
        self._free: Queue[_Slot] = Queue()
        for slot in self._slots:
            self._free.put(slot)
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        self._inflight = threading.BoundedSemaphore(2 * len(self._slots))
        self._lock = threading.Lock()

    def _check_sidecar(self, engine: Path, data: bytes, required: bool) -> None:
        side = sidecar_path(engine)
        if not side.is_file():
            if required:
                raise ArtifactError(f"{engine}: sidecar {side.name} is missing, so the engine cannot be tied to "
                                    f"this artifact; rebuild: qt-run build-engine {self.artifact.path}")
            return
        check_engine(engine, data, json.loads(side.read_text()), self.artifact)

    def _run(self, batch: np.ndarray, quality: np.ndarray | None) -> np.ndarray:
        cuda_check(self._cudart.cudaSetDevice(self._index))  # the current device is per thread
        slot = self._free.get()
        try:
            return slot.run(self._feeds(batch, quality), self.artifact.manifest.output.name)
        finally:
            self._free.put(slot)

    def infer_async(self, batch: np.ndarray, quality: float | None = None,
                    callback: Callback | None = None, userdata: Any = None) -> None:
        self._ensure_open()
        x = self._spec.check_batch(batch, self.check_range).copy()
        q = self._spec.quality_value(quality)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(self._slots), thread_name_prefix="qt-trt")
        self._inflight.acquire()  # bound queued copies: back-pressure for the pipeline

        def job() -> None:
            try:
                out = self._run(x, q)
                if callback is not None:
                    callback(out, userdata)
            finally:
                self._inflight.release()

        fut = self._pool.submit(job)
        with self._lock:
            self._pending = [f for f in self._pending if not f.done()] + [fut]

    def wait_all(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        errors = [f.exception() for f in pending]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"tensorrt": self._trt.__version__, "gpu": self._gpu, "engine": str(self.engine_path),
                  "num_streams": len(self._slots)})
        return d

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.wait_all()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            for slot in self._slots:
                slot.free()
            self._slots = []
            super().close()
