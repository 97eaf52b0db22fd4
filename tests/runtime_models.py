"""Tiny artifacts for runtime tests, built with ``onnx.helper`` — no torch.

The model is a 3x3 conv (3 -> 3 channels, padding 1) followed by ``clip(0, 1)``; with
``quality_input=True`` it also takes ``quality`` (float32 [1]) and adds ``quality * 0.01`` before
the clip. :func:`reference_forward` is the same computation in numpy, so backends can be checked
against it. ``fmt="onnx_qdq"`` wraps the conv in int8 QuantizeLinear/DequantizeLinear pairs.

Stable API (used by runtime core and pipeline tests):
``make_onnx_artifact(dir, size=None|(H, W), quality_input=False, fmt="onnx"|"openvino"|"onnx_qdq")``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from qt_core.hashing import hash_files
from qt_runtime.manifest import (
    CalibrationInfo,
    GateInfo,
    InputInfo,
    Manifest,
    OutputInfo,
    QualityInfo,
    write_manifest,
)

QUALITY_GAIN = 0.01
ACT_SCALE = 1.0 / 127.0  # int8 activation scale for the Q/DQ variant (input range [0, 1])


def conv_weights() -> tuple[np.ndarray, np.ndarray]:
    """Deterministic weights: mostly identity plus a little mixing, so outputs stay in range."""
    rng = np.random.default_rng(1234)
    w = rng.normal(0.0, 0.03, (3, 3, 3, 3)).astype(np.float32)
    for c in range(3):
        w[c, c, 1, 1] += 0.8
    b = np.array([0.02, -0.01, 0.05], np.float32)
    return w, b


def _weight_qparams(w: np.ndarray) -> tuple[np.ndarray, np.float32]:
    scale = np.float32(np.abs(w).max() / 127.0)
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    return q, scale


def reference_forward(x: np.ndarray, quality: float | None = None, qdq: bool = False) -> np.ndarray:
    """numpy reference of the tiny model on an NCHW float32 batch."""
    w, b = conv_weights()
    x = x.astype(np.float32)
    if qdq:
        x = np.clip(np.round(x / np.float32(ACT_SCALE)), -128, 127).astype(np.float32) * np.float32(ACT_SCALE)
        q, scale = _weight_qparams(w)
        w = q.astype(np.float32) * scale
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, 3, h, wd), np.float32)
    for ky in range(3):
        for kx in range(3):
            out += np.einsum("oi,nihw->nohw", w[:, :, ky, kx], xp[:, :, ky:ky + h, kx:kx + wd])
    out += b[None, :, None, None]
    if quality is not None:
        out += np.float32(quality) * np.float32(QUALITY_GAIN)
    return np.clip(out, 0.0, 1.0)


def make_onnx_model(size: tuple[int, int] | None = None, quality_input: bool = False, qdq: bool = False,
                    batch: int | None = None, opset: int = 17):
    """The tiny model as an ``onnx.ModelProto`` (dynamic N/H/W unless given)."""
    from onnx import TensorProto, helper, numpy_helper

    w, b = conv_weights()
    n = batch if batch is not None else "N"
    h, wd = size if size is not None else ("H", "W")
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, 3, h, wd])]
    nodes = []
    inits = [numpy_helper.from_array(b, "conv_b")]
    if qdq:
        q, scale = _weight_qparams(w)
        inits += [
            numpy_helper.from_array(q, "conv_w_q"),
            numpy_helper.from_array(np.array(scale, np.float32), "w_scale"),
            numpy_helper.from_array(np.array(0, np.int8), "zp"),
            numpy_helper.from_array(np.array(ACT_SCALE, np.float32), "x_scale"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["input", "x_scale", "zp"], ["x_q"]),
            helper.make_node("DequantizeLinear", ["x_q", "x_scale", "zp"], ["x_dq"]),
            helper.make_node("DequantizeLinear", ["conv_w_q", "w_scale", "zp"], ["conv_w"]),
        ]
        conv_in = "x_dq"
    else:
        inits.append(numpy_helper.from_array(w, "conv_w"))
        conv_in = "input"
    nodes.append(helper.make_node("Conv", [conv_in, "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]))
    pre_clip = "conv"
    if quality_input:
        inputs.append(helper.make_tensor_value_info("quality", TensorProto.FLOAT, [1]))
        inits.append(numpy_helper.from_array(np.array([QUALITY_GAIN], np.float32), "q_gain"))
        nodes += [
            helper.make_node("Mul", ["quality", "q_gain"], ["q_shift"]),
            helper.make_node("Add", ["conv", "q_shift"], ["shifted"]),
        ]
        pre_clip = "shifted"
    inits += [numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
              numpy_helper.from_array(np.array(1.0, np.float32), "hi")]
    nodes.append(helper.make_node("Clip", [pre_clip, "lo", "hi"], ["output"]))
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [n, 3, h, wd])]
    graph = helper.make_graph(nodes, "tiny_conv", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="qualiteacher-edge-tests")
    model.ir_version = 8
    return model


def make_manifest(files: tuple[str, ...], sha256: dict[str, str], *, fmt: str, size, quality_input: bool,
                  precision: str) -> Manifest:
    """A manifest that matches what :func:`make_onnx_model` wrote."""
    quality = (QualityInfo(mode="input", levels=8, level=None, input_name="quality", default=7)
               if quality_input else QualityInfo(mode="folded", levels=8, level=7))
    return Manifest(
        arch="tiny_conv", task="test", format=fmt, files=files, sha256=sha256, precision=precision,
        input=InputInfo(name="input", size=tuple(size) if size else None, multiple=8 if size is None else 1),
        output=OutputInfo(name="output"), quality=quality,
        target="desktop-gpu" if fmt == "onnx_qdq" else "cpu",
        gate=GateInfo(passed=True, psnr_vs_fp32=99.0, score_drop=0.0, bounds={}),
        calibration=CalibrationInfo(hash="0" * 16, frames=8, source="tests") if precision == "int8" else None,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        toolkit_version="test")


def make_onnx_artifact(dir: str | Path, size: tuple[int, int] | None = None, quality_input: bool = False,
                       fmt: str = "onnx", batch: int | None = None) -> Path:
    """Write a complete, valid artifact folder (model file(s) + manifest.json) and return it.

    ``fmt``: ``"onnx"`` (fp32 ONNX), ``"openvino"`` (fp32 IR via ``openvino.convert_model``), or
    ``"onnx_qdq"`` (int8 Q/DQ ONNX).
    """
    import onnx

    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    model = make_onnx_model(size, quality_input, qdq=fmt == "onnx_qdq", batch=batch)
    if fmt in ("onnx", "onnx_qdq"):
        onnx.save(model, str(out / "model.onnx"))
        files: tuple[str, ...] = ("model.onnx",)
    elif fmt == "openvino":
        import openvino as ov

        tmp = out / "_tmp_model.onnx"
        onnx.save(model, str(tmp))
        ov.save_model(ov.convert_model(str(tmp)), str(out / "model.xml"), compress_to_fp16=False)
        tmp.unlink()
        files = ("model.xml", "model.bin")
    else:
        raise ValueError(f"unknown fmt {fmt!r}")
    precision = "int8" if fmt == "onnx_qdq" else "fp32"
    manifest = make_manifest(files, hash_files(out, files), fmt=fmt, size=size,
                             quality_input=quality_input, precision=precision)
    write_manifest(out, manifest)
    return out
