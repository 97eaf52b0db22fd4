"""The export formats as data: one ``FormatSpec`` per format, and the option checks that read it.

Why a table: adding a format is one entry (docs/design.md, extension points), and every
"is this combination allowed" question is answered here, before any work, with the reason —
never an if/elif chain that logs and returns None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGETS = ("cpu", "jetson", "desktop-gpu")
GPU_TARGETS = ("jetson", "desktop-gpu")


class UnsupportedOption(ValueError):
    """An option combination a format cannot honour; raised before any work starts."""


@dataclass(frozen=True)
class ExportSettings:
    """What an ``export_fn`` needs besides the module: graph inputs and shapes."""

    dynamic: bool = False
    quality_input: bool = False
    opset: int = 17
    stem: str = "model"


@dataclass(frozen=True)
class FormatSpec:
    """One export format. ``export_fn(module, stage_dir, example, options) -> list[file names]``
    writes the model file(s) of a (possibly NNCF-quantised) torch module."""

    name: str
    suffixes: tuple[str, ...]
    targets: tuple[str, ...]
    supports_int8: bool
    supports_qat: bool
    supports_dynamic: bool
    supports_quality_input: bool
    export_fn: Callable[..., list[str]]
    requires_int8: bool = False
    description: str = ""


def _onnx_fn(*args: Any, **kwargs: Any) -> list[str]:
    from .onnx_export import export_onnx_artifact

    return export_onnx_artifact(*args, **kwargs)


def _openvino_fn(*args: Any, **kwargs: Any) -> list[str]:
    from .openvino_export import export_openvino_artifact

    return export_openvino_artifact(*args, **kwargs)


FORMATS: dict[str, FormatSpec] = {
    "openvino": FormatSpec(
        name="openvino", suffixes=(".xml", ".bin"), targets=("cpu",),
        supports_int8=True, supports_qat=True, supports_dynamic=True, supports_quality_input=True,
        export_fn=_openvino_fn, description="OpenVINO IR (FP32, or INT8 with FakeQuantize)",
    ),
    "onnx": FormatSpec(
        name="onnx", suffixes=(".onnx",), targets=TARGETS,
        supports_int8=False, supports_qat=False, supports_dynamic=True, supports_quality_input=True,
        export_fn=_onnx_fn, description="FP32 ONNX; TensorRT decides FP16 at engine build",
    ),
    "onnx_qdq": FormatSpec(
        name="onnx_qdq", suffixes=(".onnx",), targets=TARGETS,
        supports_int8=True, supports_qat=True, supports_dynamic=False, supports_quality_input=False,
        export_fn=_onnx_fn, requires_int8=True,
        description="INT8 ONNX with symmetric signed QuantizeLinear/DequantizeLinear (TensorRT-ready)",
    ),
}

#: What ``--target`` picks when ``--format`` is not given: (fp32 format, int8 format).
DEFAULT_FORMAT: dict[str, tuple[str, str]] = {
    "cpu": ("openvino", "openvino"),
    "jetson": ("onnx", "onnx_qdq"),
    "desktop-gpu": ("onnx", "onnx_qdq"),
}

#: User-facing ``--format`` names that resolve by precision: (fp32 format, int8 format, targets).
ALIASES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "tensorrt": ("onnx", "onnx_qdq", GPU_TARGETS),
    "onnx": ("onnx", "onnx_qdq", TARGETS),
}

CLI_FORMATS = tuple(sorted({*FORMATS, *ALIASES}))


@dataclass(frozen=True)
class Request:
    """The options that decide whether a format can be used (a subset of the CLI's)."""

    target: str
    format: str | None = None
    int8: bool = False
    qat: bool = False
    dynamic: bool = False
    quality_input: bool = False


def resolve(req: Request) -> FormatSpec:
    """The format for a request, or :class:`UnsupportedOption` naming the first reason it fails."""
    if req.target not in TARGETS:
        raise UnsupportedOption(f"unknown target {req.target!r}; choose one of {', '.join(TARGETS)}")
    if req.qat and not req.int8:
        raise UnsupportedOption("--qat fine-tunes an INT8 model: add --int8")
    if req.format is None:
        name = DEFAULT_FORMAT[req.target][int(req.int8)]
    elif req.format in ALIASES:
        fp32, int8, targets = ALIASES[req.format]
        if req.target not in targets:
            raise UnsupportedOption(
                f"--format {req.format} is for {', '.join(targets)}, not --target {req.target}")
        name = int8 if req.int8 else fp32
    elif req.format in FORMATS:
        name = req.format
    else:
        raise UnsupportedOption(f"unknown format {req.format!r}; choose one of {', '.join(CLI_FORMATS)}")
    spec = FORMATS[name]
    if req.target not in spec.targets:
        raise UnsupportedOption(
            f"format {name} runs on {', '.join(spec.targets)}, not --target {req.target}")
    if req.int8 and not spec.supports_int8:
        raise UnsupportedOption(f"format {name} has no INT8 variant")
    if spec.requires_int8 and not req.int8:
        raise UnsupportedOption(f"format {name} is INT8 only: add --int8 (or use --format onnx)")
    if req.qat and not spec.supports_qat:
        raise UnsupportedOption(f"format {name} does not support --qat")
    if req.dynamic and not spec.supports_dynamic:
        raise UnsupportedOption(
            f"format {name} needs a fixed --size: INT8 engines are calibrated and built per input size")
    if req.quality_input and not spec.supports_quality_input:
        raise UnsupportedOption(f"format {name} cannot keep the quality as an input: use --quality LEVEL")
    if req.quality_input and req.int8:
        raise UnsupportedOption(
            "--int8 folds the quality level into the graph (the embedding path would be quantised "
            "too): use --quality LEVEL")
    return spec


def model_files(spec: FormatSpec, stem: str = "model") -> list[str]:
    """The file names a format writes, in manifest order (the first is the one a backend opens)."""
    return [f"{stem}{s}" for s in spec.suffixes]


def is_onnx(spec: FormatSpec) -> bool:
    return spec.suffixes == (".onnx",)


def suffix_of(path: str | Path) -> str:
    return Path(path).suffix.lower()
