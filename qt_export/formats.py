"""The export formats as data: one ``FormatSpec`` per format (the export half of the format
table; the runtime half is ``qt_runtime/formats.py``), and the option checks that read it.

Why a table: adding a format is one exporter module and one entry in each half (docs/design.md,
extension points), and every "is this combination allowed" question is answered here, before
any work, with the reason — ``run_export`` has no branch on a format's name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qt_runtime.formats import ARTIFACT_FORMATS, ArtifactFormat

TARGETS = ("cpu", "jetson", "desktop-gpu")
GPU_TARGETS = ("jetson", "desktop-gpu")


class UnsupportedOption(ValueError):
    """An option combination a format cannot honour; raised before any work starts."""


@dataclass(frozen=True)
class ExportSettings:
    """What an ``export_fn`` needs besides the module: graph inputs and shapes."""

    dynamic: bool = False
    quality_input: bool = False
    quality: float | None = None  # the quality input's trace value: the artifact's default level
    opset: int = 17
    stem: str = "model"


@dataclass(frozen=True)
class FormatSpec:
    """One export format: what it supports, and its hooks as ``"module:function"`` strings (imported
    only when called, so this table loads no exporter and the exporters can import this module).

    export(module, stage_dir, example, settings) -> [file names]: write the model file(s).
    ptq(view, frames, quant_options, example, settings) -> module: the INT8 PTQ candidate.
    finish_qat(qat_module, example) -> module: turn an NNCF QAT module into what ``export`` takes
        (None: as it is).
    inspect(folder, files) -> dict: checks of the written files, kept in the manifest's ``extra``.
    The file layout and the backends that open it are the runtime half, ``runtime``.
    """

    name: str
    targets: tuple[str, ...]
    supports_dynamic: bool
    supports_quality_input: bool
    export: str
    ptq: str | None = None  # None: no INT8 variant
    finish_qat: str | None = None
    supports_qat: bool = False
    requires_int8: bool = False
    signed_activations: bool = False  # INT8 activations quantised as signed (TensorRT's Q/DQ rule)
    inspect: str | None = None

    @property
    def supports_int8(self) -> bool:
        return self.ptq is not None

    @property
    def runtime(self) -> ArtifactFormat:
        return ARTIFACT_FORMATS[self.name]

    @property
    def description(self) -> str:
        return self.runtime.description

    def hook(self, which: str) -> Callable[..., Any] | None:
        """The named hook, imported now (None when the format has none)."""
        ref = getattr(self, which)
        if ref is None:
            return None
        module, _, fn = ref.partition(":")
        return getattr(importlib.import_module(module), fn)

    @property
    def export_fn(self) -> Callable[..., list[str]]:
        fn = self.hook("export")
        assert fn is not None
        return fn


FORMATS: dict[str, FormatSpec] = {
    "openvino": FormatSpec(
        name="openvino", targets=("cpu",), supports_dynamic=True, supports_quality_input=True,
        export="qt_export.openvino_export:export_openvino_artifact", ptq="qt_export.openvino_export:ptq_ir",
        supports_qat=True,
    ),
    "onnx": FormatSpec(
        name="onnx", targets=TARGETS, supports_dynamic=True, supports_quality_input=True,
        export="qt_export.onnx_export:export_onnx_artifact",
    ),
    "onnx_qdq": FormatSpec(
        name="onnx_qdq", targets=TARGETS, supports_dynamic=False, supports_quality_input=False,
        export="qt_export.onnx_export:export_onnx_artifact", ptq="qt_export.onnx_export:ptq_qdq",
        finish_qat="qt_export.onnx_export:finish_qat_qdq", supports_qat=True, requires_int8=True,
        signed_activations=True, inspect="qt_export.onnx_export:inspect_qdq",
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
