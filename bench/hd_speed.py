"""Inference speed at camera resolutions: GMAC and OpenVINO FPS (FP32 and INT8) at 360p, 720p, 1080p.

For each checkpoint: ``qt-export --target cpu --dynamic`` once in FP32 and once INT8 (PTQ on the
calibration frames, gated like any export), then the IR is reshaped to each resolution and run
with OpenVINO's THROUGHPUT hint on all cores (f32 for the float parts), batch 1, as
``benchmark_app`` does, with an ``AsyncInferQueue``. Numbers belong to the CPU class printed first.

  python bench/hd_speed.py --ckpt runs/fidelity/dehaze/edge_guided/last.ckpt --ckpt runs/fidelity/dehaze/edge_unet/last.ckpt \\
      --calib runs/calib-dehaze/lq --out runs/hd_speed
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from claim import REPO
from machine import describe_machine  # bench/machine.py: the CPU and its ISA

SIZES = ((640, 360), (1280, 720), (1920, 1080))


# INT8 roles kept in float per backbone (edge_guided: also its guided-filter maths).
KEEP_FP = {"edge_guided": "first,last,guided"}


def export(ckpt: Path, arch: str, out: Path, calib: Path | None, int8: bool) -> Path:
    from qt_export.cli import main as qt_export

    if (out / "manifest.json").exists():
        return out
    argv = [str(ckpt), "--target", "cpu", "--dynamic", "--size", "640x360", "--out", str(out)]
    if int8:
        argv += ["--int8", "--calib", str(calib), "--keep-fp", KEEP_FP.get(arch, "first,last")]
    if qt_export(argv) != 0:
        raise SystemExit(f"qt-export failed for {ckpt} (int8={int8})")
    return out


def fps(xml: Path, w: int, h: int, seconds: float) -> float:
    import numpy as np
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(xml))
    model.reshape({model.inputs[0].get_any_name(): [1, 3, h, w]})
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"})
    queue = ov.AsyncInferQueue(compiled)
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    for _ in range(2 * len(queue)):
        queue.start_async({0: x})
    queue.wait_all()
    done, tick = 0, time.perf_counter()
    while time.perf_counter() - tick < seconds or done < 10:
        queue.start_async({0: x})
        done += 1
    queue.wait_all()
    return done / (time.perf_counter() - tick)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from qt_runtime import telemetry

    telemetry.disable()
    from qt_core.atomic import atomic_write_text
    from qt_train.checkpoint import load_checkpoint, model_from_state
    from qt_train.models.profile import count_macs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", action="append", type=Path, required=True)
    parser.add_argument("--calib", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "hd_speed")
    args = parser.parse_args(argv)
    machine = describe_machine()
    print(machine, flush=True)
    rows, results = [], []
    for ckpt in args.ckpt:
        state = load_checkpoint(ckpt)
        arch = state["arch"]
        model = model_from_state(state, str(ckpt)).eval()
        tag = f"{ckpt.parent.parent.name}-{ckpt.parent.name}"
        fp32 = export(ckpt, arch, args.out / f"{tag}-fp32", args.calib, False)
        int8 = export(ckpt, arch, args.out / f"{tag}-int8", args.calib, True)
        for w, h in SIZES:
            gmac = count_macs(model, h, w) / 1e9
            f_fp32 = fps(fp32 / "model.xml", w, h, args.seconds)
            f_int8 = fps(int8 / "model.xml", w, h, args.seconds)
            results.append({"ckpt": str(ckpt), "arch": arch, "size": f"{w}x{h}", "gmac": gmac,
                            "fps_fp32": f_fp32, "fps_int8": f_int8})
            rows.append(f"| {arch} | {w}x{h} | {gmac:.2f} | {f_fp32:.1f} | {f_int8:.1f} | {f_int8 / f_fp32:.2f}x |")
            print(rows[-1], flush=True)
    table = "\n".join([machine, "", "| backbone | size | GMAC | OpenVINO FP32 FPS | INT8 FPS | INT8 / FP32 |",
                       "|---|---|---|---|---|---|", *rows])
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "hd_speed.json", json.dumps({"machine": machine, "results": results}, indent=1))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
