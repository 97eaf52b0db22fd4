"""Check that a Q/DQ ONNX graph is what TensorRT's explicit-quantisation mode accepts.

Why walk the graph ourselves: a non-zero or uint8 zero point (NNCF's default after a ReLU) only
fails much later, on the device, when TensorRT builds the engine. Rules checked on every
QuantizeLinear/DequantizeLinear:

- zero point present, of type int8, all values 0 (symmetric, signed);
- scale finite and > 0;
- a weight quantizer (its input is a constant) is per-channel on axis 0 (output channels of a
  Conv weight) or per-tensor; an activation quantizer is per-tensor;
- every QuantizeLinear feeds a DequantizeLinear (TensorRT fuses pairs), and there is at least one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class QDQError(ValueError):
    """The graph breaks a Q/DQ rule; the message lists the first few offending nodes."""


@dataclass(frozen=True)
class QDQReport:
    quantize: int
    dequantize: int
    weight_pairs: int
    activation_pairs: int
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems and self.quantize > 0


class _Values:
    """Constant values of a graph: initializers and Constant nodes, seen through Identity chains."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.values: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.alias: dict[str, str] = {}
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self.values[node.output[0]] = numpy_helper.to_array(attr.t)
            elif node.op_type == "Identity":
                self.alias[node.output[0]] = node.input[0]

    def get(self, name: str) -> np.ndarray | None:
        seen = 0
        while name not in self.values and name in self.alias and seen < 64:
            name, seen = self.alias[name], seen + 1
        return self.values.get(name)


def _axis(node: Any) -> int:
    for attr in node.attribute:
        if attr.name == "axis":
            return int(attr.i)
    return 1  # the ONNX default


def inspect_qdq(model_or_path: Any) -> QDQReport:
    """Walk every Q/DQ node and collect rule violations (does not raise)."""
    import onnx

    model = onnx.load(str(model_or_path)) if isinstance(model_or_path, (str, Path)) else model_or_path
    graph = model.graph
    values = _Values(graph)
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    problems: list[str] = []
    nq = ndq = weights = acts = 0
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        is_q = node.op_type == "QuantizeLinear"
        nq += is_q
        ndq += not is_q
        where = f"{node.op_type} {node.name or node.output[0]}"
        scale = values.get(node.input[1])
        zp = values.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None:
            problems.append(f"{where}: scale is not a constant")
        elif not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            problems.append(f"{where}: scale must be finite and > 0 (min {float(np.min(scale)):.3g})")
        if zp is None:
            problems.append(f"{where}: zero point missing (it sets the int8 type; TensorRT needs it)")
        elif zp.dtype != np.int8:
            problems.append(f"{where}: zero point is {zp.dtype}, TensorRT needs int8 (signed)")
        elif np.any(zp != 0):
            problems.append(f"{where}: zero point is not 0 (asymmetric), TensorRT needs symmetric")
        if not is_q:
            continue
        is_weight = values.get(node.input[0]) is not None
        per_channel = scale is not None and scale.size > 1
        if is_weight:
            weights += 1
            if per_channel and _axis(node) != 0:
                problems.append(f"{where}: per-channel weight scale on axis {_axis(node)}, expected 0")
        else:
            acts += 1
            if per_channel:
                problems.append(f"{where}: activation scale is per-channel; TensorRT wants per-tensor")
        nexts = consumers.get(node.output[0], [])
        if not nexts or any(n.op_type != "DequantizeLinear" for n in nexts):
            problems.append(f"{where}: output does not go (only) into a DequantizeLinear")
    if nq == 0:
        problems.append("no QuantizeLinear nodes: this is not a Q/DQ INT8 graph")
    return QDQReport(quantize=nq, dequantize=ndq, weight_pairs=weights, activation_pairs=acts,
                     problems=tuple(problems))


def check_qdq(model_or_path: Any) -> QDQReport:
    """:func:`inspect_qdq`, raising :class:`QDQError` when any rule is broken."""
    report = inspect_qdq(model_or_path)
    if report.problems:
        shown = "; ".join(report.problems[:3])
        more = f" (+{len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
        raise QDQError(f"Q/DQ graph is not TensorRT-ready: {shown}{more}")
    return report
