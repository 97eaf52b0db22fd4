"""Runtime benchmark: end-to-end pipeline FPS (file -> null sink) vs inference-only FPS, and a soak.

  python bench/runtime_bench.py ARTIFACT [--source clip.mp4] [--size 360x640] [--frames 300]
                                [--backend openvino] [--device CPU] [--hint LATENCY|THROUGHPUT]
                                [--num-requests N] [--policy tile] [--temporal]
  python bench/runtime_bench.py ARTIFACT --soak-minutes 10 [--sample-seconds 5]

Without ``--source`` a synthetic clip at the model's input size (or ``--size``) is written to a
temporary folder, so the two numbers compare the same frames. The gap between them is what the
pipeline costs (decode, colour conversion, fitting, post-processing, encode) beyond the model.
Inference-only is measured four ways (float or uint8-frame input, one call at a time or overlapped);
``pipeline_over_model`` divides by the fastest of them; ``--rounds`` repeats everything (medians).
Soak mode loops the clip through the pipeline and samples RSS every few seconds; growth is reported
against the first sample after warm-up. Prints one JSON object; ``--out`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import describe_machine  # bench/machine.py: the CPU and its ISA

from qt_runtime.artifact import load_artifact  # noqa: E402
from qt_runtime.backends import default_backend, open_backend  # noqa: E402
from qt_runtime.backends.openvino_backend import default_hint  # noqa: E402
from qt_runtime.pipeline import Pipeline, PipelineOptions  # noqa: E402
from qt_runtime.sinks import NullSink  # noqa: E402
from qt_runtime.sources import SourceOptions, open_source  # noqa: E402
from qt_runtime.stats import rss_bytes  # noqa: E402
from qt_runtime.temporal import TemporalOptions  # noqa: E402


def synthetic_clip(path: Path, hw: tuple[int, int], frames: int = 100, fps: float = 25.0) -> Path:
    """Textured background with a moving box: decodes like real video, costs nothing to make."""
    h, w = hw
    rng = np.random.default_rng(0)
    bg = cv2.resize(rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8), (w, h))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    for i in range(frames):
        f = bg.copy()
        x = (7 * i) % max(1, w - h // 4)
        cv2.rectangle(f, (x, h // 3), (x + h // 4, h // 3 + h // 4), (30, 220, 60), -1)
        writer.write(f)
    writer.release()
    return path


def inference_fps(backend, hw: tuple[int, int], n: int, quality: float | None, frames: bool = False,
                  overlap: bool = False) -> dict[str, float]:
    """The model's ceiling on one pre-made input, after a warm-up: float NCHW through ``infer`` or
    uint8 frames through ``infer_frames`` (the form the pipeline uses), one call at a time or with
    the backend's request queue kept full (``overlap``, as the pipeline runs it)."""
    spec = backend.input_spec
    rng = np.random.default_rng(1)
    if frames:
        x = rng.integers(0, 256, (spec.batch or 1, *hw, 3), dtype=np.uint8)
        run, start = backend.infer_frames, backend.infer_frames_async
    else:
        x = rng.random((spec.batch or 1, 3, *hw), dtype=np.float32)
        run, start = backend.infer, backend.infer_async
    if overlap:
        for _ in range(6):
            start(x, quality)
        backend.wait_all()
        t0 = time.perf_counter()
        for _ in range(n):
            start(x, quality)
        backend.wait_all()
        return {"fps": round(n / (time.perf_counter() - t0), 2)}
    for _ in range(3):
        run(x, quality)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        run(x, quality)
        times.append(time.perf_counter() - t0)
    t = np.array(times)
    return {"fps": round(len(t) / t.sum(), 2), "p50_ms": round(1e3 * float(np.median(t)), 3),
            "p99_ms": round(1e3 * float(np.percentile(t, 99)), 3)}


def decode_fps(source: str, n: int) -> dict[str, float]:
    """The source alone (decode + RGB): its wall and CPU time per frame. On a machine whose cores
    the model already fills, that CPU time is what the pipeline must take from the model."""
    src = open_source(source, SourceOptions(loop=True))
    frames = src.frames()
    next(frames)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        next(frames)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    frames.close()
    src.close()
    return {"fps": round(n / wall, 1), "cpu_ms_per_frame": round(1e3 * cpu / n, 3)}


def qt_run_cli(artifact: Path, source: str, frames: int, extra: list[str]) -> dict[str, float]:
    """The same file through the real ``qt-run`` command (a fresh process, null sink): a cross-check
    that the Pipeline measured above is what users get. Its FPS counts from the pipeline's start."""
    with tempfile.TemporaryDirectory(prefix="qt-bench-cli-") as tmp:
        summary = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "qt_runtime.cli", str(artifact), "--source", source, "--sink", "null",
               "--loop", "--max-frames", str(frames), "--no-progress", "--summary", str(summary), *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        if proc.returncode != 0:
            raise RuntimeError(f"qt-run failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        s = json.loads(summary.read_text())
    return {"fps": s["fps_mean"], "frames": s["frames_out"], "hint": s["backend"].get("config", {}).get(
        "PERFORMANCE_HINT")}


def pipeline_run(backend, source_path: str, opts: PipelineOptions, loop: bool = False):
    source = open_source(source_path, SourceOptions(loop=loop))
    pipe = Pipeline(source, backend, NullSink(), opts)
    return pipe, source


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", type=Path)
    p.add_argument("--source", help="video file to run (default: a synthetic clip at the model size)")
    p.add_argument("--size", help="HxW of the synthetic clip (default: the model input, else 360x640)")
    p.add_argument("--frames", type=int, default=300, help="frames for each measurement")
    p.add_argument("--backend", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--hint", default=None, help="OpenVINO performance hint (default: qt-run's for a file, THROUGHPUT)")
    p.add_argument("--num-requests", type=int, default=None, help="OpenVINO async requests")
    p.add_argument("--policy", default="tile", choices=("tile", "resize", "letterbox"))
    p.add_argument("--quality", type=float, default=None)
    p.add_argument("--temporal", action="store_true")
    p.add_argument("--no-async", action="store_true")
    p.add_argument("--queue-depth", type=int, default=PipelineOptions.queue_depth,
                   help="frames each stage hand-off may hold (= requests in flight)")
    p.add_argument("--rounds", type=int, default=3,
                   help="repeat inference-only + end-to-end this often; medians are reported (a shared CPU is noisy)")
    p.add_argument("--soak-minutes", type=float, default=0.0, help="soak for this long instead of the FPS runs")
    p.add_argument("--sample-seconds", type=float, default=5.0, help="RSS sampling period in soak mode")
    p.add_argument("--warmup-seconds", type=float, default=10.0, help="soak: RSS baseline taken after this")
    p.add_argument("--out", type=Path, help="also write the JSON result here")
    a = p.parse_args(argv)
    print(describe_machine(), flush=True)  # numbers belong to one CPU class

    artifact = load_artifact(a.artifact)
    options = {k: v for k, v in (("hint", a.hint), ("num_requests", a.num_requests)) if v is not None}
    if (a.backend or default_backend(artifact)) == "openvino" and "hint" not in options:
        options["hint"] = default_hint(live=False)  # what qt-run picks for a file
    backend = open_backend(artifact, a.backend, a.device, **options)
    spec = backend.input_spec
    if a.size:
        h, w = (int(v) for v in a.size.lower().split("x"))
    else:
        h, w = spec.size or (360, 640)
    tmp = tempfile.TemporaryDirectory(prefix="qt-bench-")
    source = a.source or str(synthetic_clip(Path(tmp.name) / "clip.avi", (h, w)))
    opts = PipelineOptions(policy=a.policy, quality=a.quality, use_async=not a.no_async, progress=False,
                           queue_depth=a.queue_depth,
                           temporal=TemporalOptions() if a.temporal else None)
    result: dict[str, object] = {"artifact": str(a.artifact), "backend": backend.describe(), "frame_hw": [h, w],
                                 "policy": a.policy, "temporal": a.temporal}
    try:
        if a.soak_minutes > 0:
            result["soak"] = soak(backend, source, opts, a.soak_minutes * 60, a.sample_seconds, a.warmup_seconds)
        else:
            model_hw = spec.size or (-(-h // spec.multiple) * spec.multiple, -(-w // spec.multiple) * spec.multiple)
            result.update(fps_rounds(backend, source, opts, tuple(model_hw), a.frames, a.quality, a.rounds))
            extra = [f for f, on in (("--no-async", a.no_async), ("--temporal", a.temporal)) if on]
            extra += ["--policy", a.policy, "--queue-depth", str(a.queue_depth)]
            for flag, value in (("--backend", a.backend), ("--device", a.device), ("--hint", a.hint),
                                ("--quality", a.quality)):
                if value is not None:
                    extra += [flag, str(value)]
            result["qt_run_cli"] = qt_run_cli(a.artifact, source, a.frames, extra)
    finally:
        backend.close()
        tmp.cleanup()
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    return 0


def fps_rounds(backend, source: str, opts: PipelineOptions, model_hw: tuple[int, int], frames: int,
               quality: float | None, rounds: int) -> dict:
    """``rounds`` x (four inference-only ceilings, then the pipeline), back to back so that both sides
    of each ratio see the same machine state; medians over the rounds.

    The ceilings: float NCHW (the exported model) and uint8 frames (the model with the I/O conversion
    the pipeline uses), one call at a time and with requests overlapped. ``pipeline_over_model``
    divides by the fastest of the four, so no choice of baseline flatters it;
    ``pipeline_over_exported_model`` divides by the faster float one (the artifact as exported).
    """
    per_round = []
    for _ in range(max(1, rounds)):
        modes = {f"{form}_{how}": inference_fps(backend, model_hw, frames, quality, frames=form == "frames",
                                                overlap=how == "async")
                 for form in ("float", "frames") for how in ("sync", "async")}
        pipe, src = pipeline_run(backend, source, PipelineOptions(**{**opts.__dict__, "max_frames": frames}),
                                 loop=True)
        run = pipe.run()
        src.close()
        per_round.append((modes, run.summary))
    med = lambda xs: round(float(np.median(xs)), 3)  # noqa: E731
    ceilings = {k: med([m[k]["fps"] for m, _ in per_round]) for k in per_round[0][0]}
    best = [max(v["fps"] for v in m.values()) for m, _ in per_round]
    exported = [max(m["float_sync"]["fps"], m["float_async"]["fps"]) for m, _ in per_round]
    e2e = [s["fps_mean"] for _, s in per_round]
    last = per_round[-1][1]
    return {
        "decode_only": decode_fps(source, frames),
        "inference_only": {"fps": med(best), "modes": ceilings},
        "end_to_end": {"fps": med(e2e), "frames": last["frames_out"], "latency": last["latency"],
                       "dropped": last["dropped_frames"], "rss_mb": last["rss_mb"]},
        "rounds": [{"best_inference_fps": b, "end_to_end_fps": e, "ratio": round(e / b, 3)}
                   for b, e in zip(best, e2e, strict=True)],
        "pipeline_over_model": med([e / b for b, e in zip(best, e2e, strict=True)]),
        "pipeline_over_exported_model": med([e / x for x, e in zip(exported, e2e, strict=True)]),
    }


def soak(backend, source: str, opts: PipelineOptions, seconds: float, period: float, warmup: float) -> dict:
    """Loop the source through the pipeline for ``seconds``; RSS every ``period`` s (bounded list:
    one sample per period, a 10-hour soak at 5 s is 7200 ints)."""
    pipe, src = pipeline_run(backend, source, opts, loop=True)
    samples: list[tuple[float, int, int]] = []
    done = threading.Event()

    def sampler() -> None:
        t0 = time.monotonic()
        while not done.wait(period):
            samples.append((round(time.monotonic() - t0, 1), rss_bytes(), pipe.stats.frames_out))
            if time.monotonic() - t0 >= seconds:
                pipe.stop()

    t = threading.Thread(target=sampler, daemon=True)
    t.start()
    run = pipe.run()
    done.set()
    t.join()
    src.close()
    base = next((s for s in samples if s[0] >= warmup), samples[0] if samples else None)
    last = samples[-1] if samples else None
    growth = None if not (base and last and base[1]) else round(100.0 * (last[1] - base[1]) / base[1], 2)
    return {
        "seconds": round(run.summary["elapsed_s"], 1), "frames": run.summary["frames_out"],
        "fps": run.summary["fps_mean"], "rss_mb_baseline": round(base[1] / 2**20, 1) if base else None,
        "rss_mb_end": round(last[1] / 2**20, 1) if last else None, "rss_growth_pct": growth,
        "rss_mb_samples": [(s[0], round(s[1] / 2**20, 1)) for s in samples],
    }


if __name__ == "__main__":
    sys.exit(main())
