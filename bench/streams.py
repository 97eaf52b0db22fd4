"""End-to-end FPS and memory against resolution and number of streams: ``qt-run`` as a user runs it.

For each resolution (360p, 720p, 1080p) and each stream count (1, 2, 4), that many ``qt-run``
processes restore their own clip (file -> null sink, OpenVINO, the artifact's INT8 or FP32 IR)
at the same time; the table reports the frames per second of all streams together, per stream,
and each process's peak RSS (from its ``--summary``). A dynamic artifact (``qt-export --dynamic``)
runs every size at full resolution; a static one would tile. Writes ``streams.json`` and
``streams.png`` (FPS and RSS plotted against resolution, a line per stream count).

  python bench/streams.py runs/hd_speed/dehaze-edge_guided-int8 --out runs/streams
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from claim import REPO
from machine import describe_machine  # bench/machine.py: the CPU and its ISA
from runtime_bench import synthetic_clip

SIZES = ((640, 360), (1280, 720), (1920, 1080))
STREAMS = (1, 2, 4)


def run_streams(artifact: Path, clip: Path, streams: int, frames: int, work: Path) -> dict:
    """``streams`` qt-run processes at once; their summaries combined."""
    env = {**os.environ, "OPENVINO_TELEMETRY_OPT_OUT": "1"}
    procs, summaries = [], []
    for i in range(streams):
        summary = work / f"summary-{streams}-{i}.json"
        cmd = [sys.executable, "-m", "qt_runtime.cli", str(artifact), "--source", str(clip), "--sink", "null",
               "--max-frames", str(frames), "--loop", "--summary", str(summary)]
        procs.append((subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), summary))
    for proc, summary in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"qt-run failed ({proc.returncode}): {err.decode()[-400:]}")
        summaries.append(json.loads(summary.read_text()))
    per_stream = [s["fps_mean"] for s in summaries]
    return {"streams": streams, "fps_total": sum(per_stream), "fps_per_stream": min(per_stream),
            "rss_peak_mb": max(s["rss_mb"]["peak"] for s in summaries)}


def plot(results: list[dict], machine: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_fps, ax_rss) = plt.subplots(1, 2, figsize=(10, 4))
    for n in STREAMS:
        rows = [r for r in results if r["streams"] == n]
        labels = [r["size"] for r in rows]
        ax_fps.plot(labels, [r["fps_total"] for r in rows], marker="o", label=f"{n} stream(s), total")
        ax_rss.plot(labels, [r["rss_peak_mb"] for r in rows], marker="o", label=f"{n} stream(s)")
    ax_fps.axhline(30, color="grey", ls=":", lw=1)
    ax_fps.set(title="qt-run end to end", ylabel="frames / s (all streams)", yscale="log")
    ax_rss.set(title="memory", ylabel="peak RSS per process (MB)")
    for ax in (ax_fps, ax_rss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(machine.split("|")[0] + "|" + machine.split("|")[1], fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from qt_core.atomic import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path, help="an artifact folder written by qt-export (OpenVINO)")
    parser.add_argument("--frames", type=int, default=150, help="frames per stream and run")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "streams")
    args = parser.parse_args(argv)
    machine = describe_machine()
    print(machine, flush=True)
    results, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for w, h in SIZES:
            clip = synthetic_clip(work / f"clip-{w}x{h}.avi", (h, w), frames=50)
            for n in STREAMS:
                r = {"size": f"{w}x{h}", **run_streams(args.artifact, clip, n, args.frames, work)}
                results.append(r)
                rows.append(f"| {r['size']} | {n} | {r['fps_total']:.1f} | {r['fps_per_stream']:.1f} | {r['rss_peak_mb']:.0f} |")
                print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "streams.json", json.dumps(
        {"machine": machine, "artifact": str(args.artifact), "results": results}, indent=1))
    plot(results, machine, args.out / "streams.png")
    print("\n".join(["", "| size | streams | FPS (all) | FPS per stream | peak RSS per process (MB) |",
                     "|---|---|---|---|---|", *rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
