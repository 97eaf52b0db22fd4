"""Load: 4 concurrent streams for 10 minutes: frames, drops, latency p99 and memory over time.

Four ``qt-run`` processes (one per stream, as a user runs them on a box; not one process with four
pipelines) each restore a looped clip (file -> null sink) through the same artifact for
``--duration`` seconds, then get SIGTERM (the graceful stop: frames in flight finish, the summary is
written). Meanwhile each process's RSS is sampled from ``/proc/PID/status`` every ``--sample-every``
seconds. Reported per stream and in total: frames in/out, dropped (0 for files: they block rather
than drop), corrupt, end-to-end latency p99 over the whole run (capture -> sink, from the summary's
lifetime histogram) and the infer stage's, FPS, and RSS: the mean of the first and of the last
quarter of the samples taken after ``--warmup`` seconds, and the growth between them (the issue asks
< 5 %). Without an artifact, the tiny torch-free OpenVINO model of tests/runtime_models.py is made
(dynamic input: frames run at full size). Prints the CPU line first; writes ``load.json``.

  OMP_NUM_THREADS=1 python bench/load.py --duration 600 --out runs/load       # the full form
  python bench/load.py --duration 10 --warmup 2 --out /tmp/load               # a behaviour check
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe_machine  # bench/machine.py: the CPU and its ISA (adds the repo to sys.path)

REPO = Path(__file__).resolve().parents[1]


def vm_rss(pid: int) -> int | None:
    """Resident set size of ``pid`` in bytes, None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_growth(samples: list[tuple[float, int]], warmup: float) -> dict[str, float | int]:
    """First- and last-quarter means (MB) of the samples after ``warmup`` seconds, and the growth (%)."""
    kept = [r for t, r in samples if t >= warmup]
    if len(kept) < 4:
        return {"samples": len(kept)}
    q = len(kept) // 4
    first, last = sum(kept[:q]) / q, sum(kept[-q:]) / q
    return {"samples": len(kept), "first_quarter_mb": round(first / 2**20, 1),
            "last_quarter_mb": round(last / 2**20, 1), "peak_mb": round(max(kept) / 2**20, 1),
            "growth_pct": round(100.0 * (last - first) / first, 2)}


def tiny_artifact(work: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from tests.runtime_models import make_onnx_artifact

    return make_onnx_artifact(work / "tiny-openvino", fmt="openvino")


def run_load(artifact: Path, clip: Path, streams: int, duration: float, sample_every: float, warmup: float,
             work: Path, extra: list[str]) -> dict:
    env = {**os.environ, "OPENVINO_TELEMETRY_OPT_OUT": "1", "PYTHONPATH": str(REPO)}
    procs = []
    for i in range(streams):
        summary = work / f"summary-{i}.json"
        cmd = [sys.executable, "-m", "qt_runtime.cli", str(artifact), "--source", str(clip), "--loop",
               "--sink", "null", "--no-progress", "--summary", str(summary), *extra]
        log = open(work / f"stderr-{i}.txt", "w")  # noqa: SIM115 (closed below)
        procs.append((subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log), summary, log))
    t0 = time.monotonic()
    samples: list[list[tuple[float, int]]] = [[] for _ in procs]
    try:
        while (now := time.monotonic() - t0) < duration:
            for (proc, _, _), series in zip(procs, samples, strict=True):
                rss = vm_rss(proc.pid) if proc.poll() is None else None
                if rss is not None:
                    series.append((now, rss))
            if any(proc.poll() is not None for proc, _, _ in procs):
                break  # a stream died: stop the others and report it
            time.sleep(min(sample_every, max(0.0, duration - now)))
    finally:
        for proc, _, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _, log in procs:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    wall = time.monotonic() - t0
    rows = []
    for i, ((proc, summary, _), series) in enumerate(zip(procs, samples, strict=True)):
        row: dict = {"stream": i, "exit": proc.returncode}
        if proc.returncode != 0 or not summary.exists():
            row["error"] = (work / f"stderr-{i}.txt").read_text()[-600:]
            rows.append(row)
            continue
        s = json.loads(summary.read_text())
        row.update(frames_in=s["frames_in"], frames_out=s["frames_out"], dropped=s["dropped_frames"],
                   corrupt=s["corrupt_frames_skipped"], fps=s["fps_mean"], end=s["end"],
                   latency_p99_ms=s["latency"]["end_to_end"].get("p99_run_ms"),
                   latency_mean_ms=s["latency"]["end_to_end"].get("mean_ms"),
                   infer_p99_ms=s["latency"]["infer"].get("p99_run_ms"),
                   rss=rss_growth(series, warmup), rss_series_mb=[(round(t, 1), round(r / 2**20, 1)) for t, r in series])
        rows.append(row)
    return {"streams": rows, "wall_s": round(wall, 1)}


def table(result: dict) -> list[str]:
    lines = ["| stream | frames in | frames out | dropped | corrupt | FPS | latency p99 (ms) | infer p99 (ms) "
             "| RSS first quarter (MB) | RSS last quarter (MB) | growth |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["streams"]:
        if "error" in r:
            lines.append(f"| {r['stream']} | failed (exit {r['exit']}) | | | | | | | | | |")
            continue
        g = r["rss"]
        lines.append(f"| {r['stream']} | {r['frames_in']} | {r['frames_out']} | {r['dropped']} | {r['corrupt']} "
                     f"| {r['fps']:.1f} | {r['latency_p99_ms']:.0f} | {r['infer_p99_ms']:.0f} "
                     f"| {g.get('first_quarter_mb', '-')} | {g.get('last_quarter_mb', '-')} "
                     f"| {g.get('growth_pct', '-')} % |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path, nargs="?", default=None,
                        help="an artifact folder (default: the tiny OpenVINO test model, made here)")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 10 minutes)")
    parser.add_argument("--size", default="640x360", help="clip frame size WxH")
    parser.add_argument("--sample-every", type=float, default=5.0, help="RSS sampling period (s)")
    parser.add_argument("--warmup", type=float, default=30.0,
                        help="RSS samples before this many seconds (model compile, first allocations) are left out")
    parser.add_argument("--max-growth", type=float, default=5.0, help="RSS growth (%%) the load must hold")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "load")
    parser.add_argument("qt_run_args", nargs=argparse.REMAINDER, help="after --: extra qt-run arguments")
    args = parser.parse_args(argv)
    if args.streams < 1 or args.duration <= 0 or args.sample_every <= 0 or args.warmup < 0:
        parser.error("--streams, --duration and --sample-every must be positive, --warmup >= 0")
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size {args.size!r}: expected WxH, e.g. 320x240")
    extra = [a for a in args.qt_run_args if a != "--"]
    machine = describe_machine()
    print(machine, flush=True)
    sys.path.insert(0, str(REPO))
    from runtime_bench import synthetic_clip

    from qt_core.atomic import atomic_write_text

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        artifact = args.artifact or tiny_artifact(work)
        clip = synthetic_clip(work / f"clip-{w}x{h}.avi", (h, w), frames=50)
        result = run_load(artifact, clip, args.streams, args.duration, args.sample_every, args.warmup, work, extra)
    ok_rows = [r for r in result["streams"] if "error" not in r]
    growths = [r["rss"]["growth_pct"] for r in ok_rows if "growth_pct" in r["rss"]]
    total = {
        "frames_in": sum(r["frames_in"] for r in ok_rows), "frames_out": sum(r["frames_out"] for r in ok_rows),
        "dropped": sum(r["dropped"] for r in ok_rows), "fps": round(sum(r["fps"] for r in ok_rows), 1),
        "latency_p99_ms_worst": max((r["latency_p99_ms"] for r in ok_rows), default=None),
        "rss_growth_pct_worst": max(growths, default=None),
        "failed_streams": len(result["streams"]) - len(ok_rows),
    }
    held = (total["failed_streams"] == 0 and total["dropped"] == 0 and growths and len(growths) == len(ok_rows)
            and max(growths) < args.max_growth)
    report = {"machine": machine, "artifact": str(args.artifact or "tiny OpenVINO test model (dynamic)"),
              "size": f"{w}x{h}", "stream_count": args.streams, "duration_s": args.duration,
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "mode": "one qt-run process per stream",
              "qt_run_args": extra, "total": total, "held": bool(held), **result}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "load.json", json.dumps(report, indent=1))
    print("\n".join(["", f"{args.streams} qt-run processes, {args.size} looped clip -> null, {args.duration:g} s "
                     f"(wall {result['wall_s']} s)", *table(result),
                     f"total: {total['frames_out']} frames out, {total['dropped']} dropped, {total['fps']} FPS, "
                     f"worst latency p99 {total['latency_p99_ms_worst']} ms, worst RSS growth "
                     f"{total['rss_growth_pct_worst']} % (limit {args.max_growth:g} %): "
                     f"{'held' if held else 'NOT held'}"]))
    return 0 if total["failed_streams"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
