"""Export benchmark (not a test): edge_unet at 640x360 on this CPU, one row per engine/precision.

  python bench/export_bench.py [--ckpt runs/x/last.ckpt] [--calib FOOTAGE] [--size 640x360]
                               [--iters 50] [--qat-steps 200]

Rows: PyTorch eager FP32, ONNX Runtime FP32, OpenVINO FP32 (f32 execution), OpenVINO default
precision (bf16 where the CPU has AMX/AVX512-BF16), OpenVINO INT8 PTQ, OpenVINO INT8 QAT.
Columns: FPS, latency p50/p99 (batch 1, synchronous), RSS growth while loading + running,
PSNR vs the FP32 PyTorch output on held-out frames, IQA ensemble score. Prints a markdown table
plus the execution precisions OpenVINO reports for its convolutions (to tell whether INT8
kernels really run). Targets: OV INT8 >= 1.6x OV FP32 and >= 30 FPS; QAT recovers >= half of
the PSNR PTQ loses.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from machine import describe_machine  # bench/machine.py: the CPU and its ISA


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, iters: int) -> tuple[float, float, float]:
    for _ in range(3):
        fn(x)
    lat = []
    for _ in range(iters):
        t = time.perf_counter()
        fn(x)
        lat.append(time.perf_counter() - t)
    lat_ms = np.array(lat) * 1e3
    return 1e3 / lat_ms.mean(), float(np.percentile(lat_ms, 50)), float(np.percentile(lat_ms, 99))


def ov_runner(model, precision: str | None):
    import openvino as ov

    cfg = {"PERFORMANCE_HINT": "LATENCY"}
    if precision:
        cfg["INFERENCE_PRECISION_HINT"] = precision
    compiled = ov.Core().compile_model(model, "CPU", cfg)
    request = compiled.create_infer_request()
    convs = Counter(
        op.get_rt_info()["runtimePrecision"].astype(str)
        for op in compiled.get_runtime_model().get_ordered_ops()
        if op.get_rt_info()["layerType"].astype(str) == "Convolution"
    )

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()

    return run, dict(convs)


def main() -> None:
    import torch

    from qt_core.metrics import psnr as psnr_db
    from qt_export.checkpoint_view import QualityMode, export_view, load_model
    from qt_export.export import synthetic_frames
    from qt_export.formats import ExportSettings
    from qt_export.gate import ensemble_scorer
    from qt_export.onnx_export import export_onnx
    from qt_export.openvino_export import convert
    from qt_export.quantize import QATOptions, QuantOptions, ptq_openvino, ptq_torch, qat
    from qt_train.models import FoldedQuality, build_backbone
    from qt_train.schema import MethodConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path)
    ap.add_argument("--calib", type=Path, action="append", default=[])
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--calib-frames", type=int, default=64)
    ap.add_argument("--qat-steps", type=int, default=QATOptions().steps)
    ap.add_argument("--keep-fp", default=None, help="default: the backbone's own (int8_keep_fp)")
    args = ap.parse_args()
    print(describe_machine(), flush=True)  # numbers belong to one CPU class
    w, h = (int(v) for v in args.size.split("x"))

    if args.ckpt:
        loaded = load_model(args.ckpt)
        view = export_view(loaded, QualityMode("folded", loaded.top_level))
    else:  # an untrained backbone at the default run's top level
        torch.manual_seed(0)
        view = FoldedQuality(build_backbone("edge_unet").eval(), MethodConfig().top_level).eval()
    if args.calib:
        from calibration.frames import select_frames

        frames = select_frames(args.calib, n=args.calib_frames + 8, size=(h, w), iqa=False).frames
    else:
        frames = synthetic_frames(args.calib_frames + 8, (h, w), seed=1)
    data = frames.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    calib, held = data[:-8], data[-8:]
    calib_t = [torch.from_numpy(f[None]) for f in calib]
    x = held[:1]
    with torch.no_grad():
        ref = np.concatenate([view(torch.from_numpy(f[None])).numpy() for f in held])
    backbone = view.backbone if hasattr(view, "backbone") else view
    keep = (tuple(backbone.int8_keep_fp) if args.keep_fp is None
            else tuple(r for r in args.keep_fp.split(",") if r and r != "none"))
    qopts = QuantOptions(keep_fp=keep)

    rows = []
    scorer = ensemble_scorer()

    def row(name: str, make: Callable[[], tuple[Callable, dict]]) -> None:
        before = rss_mb()
        run, convs = make()
        fps, p50, p99 = timed(run, x, args.iters)
        mem = rss_mb() - before
        out = np.concatenate([run(f[None]) for f in held])
        psnr = float(np.mean(psnr_db(out, ref)))
        score = float(np.mean(scorer(out)))
        rows.append((name, fps, p50, p99, mem, psnr, score, convs))
        print(f"  done: {name}", flush=True)

    def torch_eager():
        def run(a):
            with torch.no_grad():
                return view(torch.from_numpy(a)).numpy()
        return run, {}

    tmp = Path(tempfile.mkdtemp())

    def onnxrt():
        import onnxruntime as ort

        path = export_onnx(view, tmp / "m.onnx", torch.from_numpy(x), ExportSettings())
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return (lambda a: sess.run(["output"], {"input": a})[0]), {}

    fp_ov = convert(view, torch.from_numpy(x), ExportSettings())
    row("PyTorch eager FP32", torch_eager)
    row("ONNX Runtime FP32", onnxrt)
    row("OpenVINO FP32 (f32)", lambda: ov_runner(fp_ov, "f32"))
    row("OpenVINO default precision", lambda: ov_runner(fp_ov, None))
    row("OpenVINO INT8 PTQ", lambda: ov_runner(ptq_openvino(fp_ov, calib_t, qopts), "f32"))

    def qat_model():
        q = ptq_torch(copy.deepcopy(view), calib_t, qopts)

        def reference(t):
            with torch.no_grad():
                return view(t)

        q = qat(q, reference, torch.from_numpy(calib), QATOptions(steps=args.qat_steps))
        return ov_runner(convert(q, torch.from_numpy(x), ExportSettings()), "f32")

    if args.qat_steps > 0:
        row("OpenVINO INT8 QAT", qat_model)

    print(f"\nedge_unet {w}x{h}, batch 1, {torch.get_num_threads()} torch threads\n")
    print("| engine | FPS | p50 ms | p99 ms | RSS +MB | PSNR vs FP32 | IQA score | conv precisions |")
    print("|---|---|---|---|---|---|---|---|")
    for name, fps, p50, p99, mem, psnr, score, convs in rows:
        print(f"| {name} | {fps:.1f} | {p50:.1f} | {p99:.1f} | {mem:.0f} | {psnr:.2f} | {score:.4f} | {convs} |")


if __name__ == "__main__":
    main()
