"""ONNX Runtime backend: CPU everywhere; CUDA or TensorRT execution providers where installed.

Dynamic sizes need nothing special: ONNX Runtime accepts any shape the graph allows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qt_runtime.artifact import Artifact
from qt_runtime.backends.base import Backend, BackendUnavailableError

# device name -> execution providers to request, best first (CPU is always the fallback).
DEVICE_PROVIDERS = {
    "CPU": ["CPUExecutionProvider"],
    "CUDA": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "GPU": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "TENSORRT": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers (empty when it is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


class ONNXRuntimeBackend(Backend):
    """Options: ``providers`` (explicit list, overrides ``device``), ``intra_op_threads``,
    ``inter_op_threads``, ``graph_optimization`` ("all"|"extended"|"basic"|"disable")."""

    name = "onnxruntime"

    def __init__(self, artifact: Artifact, device: str | None = None, *, providers: list[Any] | None = None,
                 intra_op_threads: int | None = None, inter_op_threads: int | None = None,
                 graph_optimization: str = "all", **options: Any) -> None:
        super().__init__(artifact, (device or "CPU").upper(), **options)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError(
                "the onnxruntime backend needs ONNX Runtime: pip install onnxruntime (or onnxruntime-gpu)") from exc
        available = list(ort.get_available_providers())
        if providers is None:
            if self.device not in DEVICE_PROVIDERS:
                raise ValueError(f"onnxruntime device {device!r}: expected one of {list(DEVICE_PROVIDERS)}")
            providers = list(DEVICE_PROVIDERS[self.device])
            if providers[0] not in available:
                raise BackendUnavailableError(
                    f"onnxruntime device {self.device}: {providers[0]} is not in this build "
                    f"(available: {available}); install onnxruntime-gpu or use device CPU")
        missing = [p for p in providers if (p[0] if isinstance(p, tuple) else p) not in available]
        if missing:
            raise BackendUnavailableError(f"onnxruntime providers {missing} not available (have {available})")
        so = ort.SessionOptions()
        if intra_op_threads:
            so.intra_op_num_threads = int(intra_op_threads)
        if inter_op_threads:
            so.inter_op_num_threads = int(inter_op_threads)
        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
        so.graph_optimization_level = levels[graph_optimization]
        self._ort_version = ort.__version__
        self._session = ort.InferenceSession(str(artifact.model_path), sess_options=so, providers=providers)
        self._output = [artifact.manifest.output.name]

    def _run(self, batch: np.ndarray, quality: np.ndarray | None) -> np.ndarray:
        return np.asarray(self._session.run(self._output, self._feeds(batch, quality))[0], np.float32)

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"onnxruntime": self._ort_version, "providers": self.providers})
        return d

    def close(self) -> None:
        self._session = None
        super().close()
