"""OpenVINO IR (model.xml + model.bin) from a torch module, FP32 weights kept as FP32.

Why convert the torch module directly (not the ONNX file): an NNCF-quantised torch module
converts to an IR with FakeQuantize ops (the form OpenVINO's CPU plugin runs as INT8), while
its unstripped ONNX export would contain NNCF custom ops. ``compress_to_fp16=False`` keeps the
FP32 IR bit-comparable with PyTorch; the runtime decides the execution precision.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from .formats import ExportSettings
from .onnx_export import INPUT_NAME, OUTPUT_NAME, QUALITY_NAME, example_inputs


def name_ports(model: Any, quality_input: bool) -> Any:
    """Give the IR the contract's tensor names (``input``/``quality``/``output``)."""
    names = [INPUT_NAME, QUALITY_NAME] if quality_input else [INPUT_NAME]
    if len(model.inputs) != len(names) or len(model.outputs) != 1:
        raise ValueError(f"expected {len(names)} input(s) and 1 output, got "
                         f"{len(model.inputs)} and {len(model.outputs)}")
    for port, name in zip(model.inputs, names, strict=True):
        port.get_tensor().set_names({name})
        port.get_node().set_friendly_name(name)
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    return model


def convert(module: Any, example: Any, settings: ExportSettings) -> Any:
    """``openvino.convert_model`` of a torch module with the input shapes fixed or dynamic."""
    import openvino as ov
    import torch

    inputs = example_inputs(example, settings)
    n, c, h, w = example.shape
    img_shape = [-1, c, -1, -1] if settings.dynamic else [-1, c, h, w]
    shapes = [ov.PartialShape(img_shape)]
    if settings.quality_input:
        shapes.append(ov.PartialShape([1]))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes on the (constant) pad arithmetic
        model = ov.convert_model(module, example_input=inputs, input=shapes)
    return name_ports(model, settings.quality_input)


def save_ir(model: Any, stage: Path, stem: str = "model") -> list[str]:
    import openvino as ov

    xml = Path(stage) / f"{stem}.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return [xml.name, xml.with_suffix(".bin").name]


def export_openvino_artifact(module: Any, stage: Path, example: Any, settings: ExportSettings) -> list[str]:
    """``export_fn`` of the OpenVINO format. ``module`` may also be an ``openvino.Model``
    (already converted, e.g. quantised by NNCF's OpenVINO backend)."""
    import openvino as ov

    model = module if isinstance(module, ov.Model) else convert(module, example, settings)
    return save_ir(model, stage, settings.stem)


def ptq_ir(view: Any, frames: list, qopts: Any, example: Any, settings: ExportSettings) -> Any:
    """``ptq`` hook of ``openvino``: convert to an IR, then NNCF PTQ with OpenVINO's backend (the
    IR keeps FakeQuantize ops, which the CPU plugin runs as INT8)."""
    from .quantize import ptq_openvino

    return ptq_openvino(convert(view, example, ExportSettings(dynamic=settings.dynamic)), frames, qopts)
