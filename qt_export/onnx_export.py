"""Torch module -> ONNX (opset 17, TorchScript exporter) with the contract's input/output names.

Why the TorchScript exporter (``dynamo=False``): it is the one both quality views and NNCF's
stripped Q/DQ modules (torch.ao FakeQuantize -> QuantizeLinear/DequantizeLinear) are tested with.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from .formats import ExportSettings

INPUT_NAME = "input"
QUALITY_NAME = "quality"
OUTPUT_NAME = "output"


def example_inputs(example: Any, settings: ExportSettings) -> tuple:
    """The positional inputs the view takes: ``(x,)`` or ``(x, quality)``, the quality at the
    artifact's default level (``settings.quality``: the run's top level unless --quality)."""
    import torch

    if settings.quality_input:
        if settings.quality is None:
            raise ValueError("a quality input needs ExportSettings.quality (the artifact's default level)")
        return (example, torch.tensor([float(settings.quality)], dtype=torch.float32))
    return (example,)


def export_onnx(module: Any, path: str | Path, example: Any, settings: ExportSettings) -> Path:
    """Write ``module`` to ``path``; batch is dynamic, H and W too when ``settings.dynamic``."""
    import torch

    path = Path(path)
    inputs = example_inputs(example, settings)
    names = [INPUT_NAME, QUALITY_NAME] if settings.quality_input else [INPUT_NAME]
    axes = {0: "batch", 2: "height", 3: "width"} if settings.dynamic else {0: "batch"}
    dynamic_axes = {INPUT_NAME: axes, OUTPUT_NAME: dict(axes)}
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy exporter's deprecation notice and tracer notes on shape arithmetic (the
        # pad-to-multiple, which is constant for a fixed size) are expected here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, inputs, str(path), opset_version=settings.opset, dynamo=False,
            input_names=names, output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    return path


def export_onnx_artifact(module: Any, stage: Path, example: Any, settings: ExportSettings) -> list[str]:
    """``export_fn`` of the ONNX formats: one ``model.onnx``; returns the file names written."""
    name = f"{settings.stem}.onnx"
    export_onnx(module, Path(stage) / name, example, settings)
    return [name]


def ptq_qdq(view: Any, frames: list, qopts: Any, example: Any, settings: ExportSettings) -> Any:
    """``ptq`` hook of ``onnx_qdq``: NNCF PTQ of the torch module, stripped to torch.ao
    FakeQuantize so it exports as QuantizeLinear/DequantizeLinear pairs."""
    from .quantize import ptq_torch, strip_qdq

    return strip_qdq(ptq_torch(view, frames, qopts), example)


def finish_qat_qdq(quantized: Any, example: Any) -> Any:
    """``finish_qat`` hook of ``onnx_qdq``: the QAT module stripped like the PTQ one."""
    from .quantize import strip_qdq

    return strip_qdq(quantized, example)


def inspect_qdq(folder: Path, files: list[str]) -> dict[str, Any]:
    """``inspect`` hook of ``onnx_qdq``: TensorRT's Q/DQ rules checked on the written graph."""
    from .qdq_check import check_qdq

    qdq = check_qdq(Path(folder) / files[0])
    return {"qdq": {"pairs": qdq.quantize, "weights": qdq.weight_pairs, "activations": qdq.activation_pairs}}
