"""Runtime backends: one class per backend, one line each in :data:`BACKENDS`.

The table maps names to ``"module:Class"`` strings so that importing this package loads no
backend library; a backend module is imported only when it is opened.
"""

from __future__ import annotations

import importlib
from typing import Any

from qt_runtime.artifact import Artifact
from qt_runtime.backends.base import Backend, BackendUnavailableError, InputError, InputSpec
from qt_runtime.formats import ARTIFACT_FORMATS

BACKENDS: dict[str, str] = {
    "openvino": "qt_runtime.backends.openvino_backend:OpenVINOBackend",
    "onnxruntime": "qt_runtime.backends.onnxruntime_backend:ONNXRuntimeBackend",
    "tensorrt": "qt_runtime.backends.tensorrt_backend:TensorRTBackend",
}

__all__ = ["BACKENDS", "Backend", "BackendUnavailableError", "InputError", "InputSpec",
           "backend_class", "default_backend", "open_backend", "tensorrt_usable"]


def backend_class(name: str) -> type[Backend]:
    """The class registered under ``name`` (imports its module, not its native library)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def tensorrt_usable() -> bool:
    """True when tensorrt and cuda-python import and a CUDA device exists."""
    try:
        from qt_runtime.engine_build import gpu_name, import_cudart, import_tensorrt

        import_tensorrt()
        import_cudart()
        gpu_name(0)
    except Exception:
        return False
    return True


def default_backend(artifact: Artifact) -> str:
    """The format's first usable backend (``ARTIFACT_FORMATS``): OpenVINO for IR, ONNX Runtime for
    ONNX, TensorRT for Q/DQ ONNX when a GPU is there (else ONNX Runtime)."""
    backends = ARTIFACT_FORMATS[artifact.manifest.format].backends
    return next((b for b in backends if backend_class(b).usable()), backends[-1])


def open_backend(artifact: Artifact, backend: str | None = None, device: str | None = None,
                 **options: Any) -> Backend:
    """Open ``artifact`` on ``backend`` (default per format) and ``device`` (backend default if None)."""
    name = backend or default_backend(artifact)
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    allowed = ARTIFACT_FORMATS[artifact.manifest.format].backends
    if name not in allowed:
        raise ValueError(f"backend {name!r} cannot run a {artifact.manifest.format!r} artifact; use one of "
                         f"{list(allowed)}")
    return backend_class(name)(artifact, device, **options)
