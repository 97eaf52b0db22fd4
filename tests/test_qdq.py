"""Q/DQ graph checks: hand-built graphs for each rule, and a real NNCF -> strip -> ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qt_export.qdq_check import QDQError, check_qdq, inspect_qdq


def _graph(zp_dtype=np.int8, zp_value: int = 0, scale: float = 0.02, weight_axis: int = 0):
    """input -> Q/DQ -> Conv(weight via Q/DQ per-channel) -> output."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.array(scale, np.float32), "s_act"),
        numpy_helper.from_array(np.array(zp_value, zp_dtype), "z_act"),
        numpy_helper.from_array(np.full(4, 0.01, np.float32), "s_w"),
        numpy_helper.from_array(np.zeros(4, np.int8), "z_w"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "s_act", "z_act"], ["xq"], name="qx"),
        helper.make_node("DequantizeLinear", ["xq", "s_act", "z_act"], ["xd"], name="dqx"),
        helper.make_node("QuantizeLinear", ["w", "s_w", "z_w"], ["wq"], name="qw", axis=weight_axis),
        helper.make_node("DequantizeLinear", ["wq", "s_w", "z_w"], ["wd"], name="dqw", axis=weight_axis),
        helper.make_node("Conv", ["xd", "wd"], ["output"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_good_graph_passes() -> None:
    report = check_qdq(_graph())
    assert report.ok and report.quantize == 2 and report.weight_pairs == 1 and report.activation_pairs == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"zp_dtype": np.uint8}, "uint8"),
        ({"zp_value": 3}, "asymmetric"),
        ({"scale": 0.0}, "> 0"),
        ({"weight_axis": 1}, "axis 1"),
    ],
)
def test_rule_violations(kwargs, match: str) -> None:
    with pytest.raises(QDQError, match=match):
        check_qdq(_graph(**kwargs))


def test_float_graph_is_not_qdq() -> None:
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1])])
    report = inspect_qdq(helper.make_model(g))
    assert not report.ok and "no QuantizeLinear" in report.problems[0]


@pytest.mark.slow
def test_real_nncf_export_is_tensorrt_ready(tmp_path: Path) -> None:
    """NNCF PTQ (symmetric, signed forced) -> strip -> ONNX: every Q/DQ pair passes, and without
    forcing signed activations NNCF's uint8 quantizers are caught."""
    import onnxruntime as ort
    import torch

    from qt_export.formats import ExportSettings
    from qt_export.onnx_export import export_onnx
    from qt_export.quantize import QuantOptions, ptq_torch, strip_qdq
    from qt_train.models import FoldedQuality, build_backbone

    torch.manual_seed(0)
    view = FoldedQuality(build_backbone("edge_unet", widths=(8, 16, 16)).eval(), 7).eval()
    frames = [torch.rand(1, 3, 48, 64) for _ in range(6)]
    x = frames[0]
    for signed in (True, False):
        q = ptq_torch(view, frames, QuantOptions(keep_fp=("first", "last"), signed_activations=signed))
        path = export_onnx(strip_qdq(q, x), tmp_path / f"q{int(signed)}.onnx", x, ExportSettings())
        report = inspect_qdq(path)
        if signed:
            assert report.ok, report.problems
            assert report.weight_pairs >= 8 and report.activation_pairs >= 8
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            with torch.no_grad():
                ref = view(x).numpy()
            got = sess.run(["output"], {"input": x.numpy()})[0]
            assert np.abs(got - ref).mean() < 0.02  # INT8, but close to FP32
        else:
            assert any("uint8" in p for p in report.problems)
