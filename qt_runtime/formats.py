"""The artifact formats, runtime half: the file layout and which backends open each format.

This is the artifact contract (docs/artifact.md) as one table; ``qt_export/formats.py`` adds the
export hooks per entry. A new format is one entry here (files, backends) plus one there (how to
write it). Standard library only: the manifest reader imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ArtifactFormat:
    """model_suffix: the file a backend opens; weights_suffix: the companion file read beside it
    (same stem), if any; backends: who can run it, in order of preference (the first usable one is
    the default); quantized_graph: the model must hold explicit quantize ops (Q/DQ)."""

    name: str
    model_suffix: str
    backends: tuple[str, ...]
    weights_suffix: str | None = None
    quantized_graph: bool = False
    description: str = ""

    @property
    def suffixes(self) -> tuple[str, ...]:
        """The files an artifact of this format lists, in manifest order (model file first)."""
        return (self.model_suffix,) + ((self.weights_suffix,) if self.weights_suffix else ())

    def files(self, stem: str = "model") -> list[str]:
        return [f"{stem}{s}" for s in self.suffixes]

    def weights_file(self, model_file: str) -> str | None:
        """The file the backend reads beside ``model_file`` whatever the manifest lists."""
        return None if self.weights_suffix is None else Path(model_file).with_suffix(self.weights_suffix).as_posix()


ARTIFACT_FORMATS: dict[str, ArtifactFormat] = {
    "openvino": ArtifactFormat("openvino", ".xml", ("openvino",), weights_suffix=".bin",
                               description="OpenVINO IR (FP32, or INT8 with FakeQuantize)"),
    "onnx": ArtifactFormat("onnx", ".onnx", ("onnxruntime", "openvino", "tensorrt"),
                           description="FP32 ONNX; TensorRT decides FP16 at engine build"),
    "onnx_qdq": ArtifactFormat("onnx_qdq", ".onnx", ("tensorrt", "onnxruntime", "openvino"), quantized_graph=True,
                               description="INT8 ONNX with QuantizeLinear/DequantizeLinear (TensorRT-ready)"),
}
