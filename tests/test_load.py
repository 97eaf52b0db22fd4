"""The load benchmark's short form as a behaviour check (bench/load.py; the full form runs 4 streams
for 10 minutes, its figures are in docs/reliability.md): 4 qt-run processes for 10 s, every stream
ends by the graceful stop with its summary, files drop nothing, and RSS is sampled over time. No
speed is asserted: the machine is shared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_load_short_form(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENVINO_TELEMETRY_OPT_OUT": "1"}
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "load.py"), "--duration", "10", "--warmup", "2",
                          "--sample-every", "0.5", "--size", "160x96", "--out", str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert res.stdout.startswith("CPU: "), res.stdout[:200]  # the CPU line first, as every benchmark
    report = json.loads((tmp_path / "load.json").read_text())
    assert report["stream_count"] == 4 and report["mode"] == "one qt-run process per stream"
    rows = report["streams"]
    assert len(rows) == 4 and all("error" not in r for r in rows), rows
    for r in rows:
        assert r["end"] == "stopped" and r["frames_out"] == r["frames_in"] > 0 and r["dropped"] == 0
        assert r["latency_p99_ms"] > 0 and r["infer_p99_ms"] > 0
        assert r["rss"]["samples"] >= 4 and r["rss"]["first_quarter_mb"] > 0 and "growth_pct" in r["rss"]
    assert report["total"]["frames_out"] == sum(r["frames_out"] for r in rows)
    assert "| stream | frames in | frames out | dropped |" in res.stdout


def test_load_refuses_bad_arguments(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "load.py"), "--size", "big", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--size" in res.stderr.strip().splitlines()[-1]


def test_whole_run_p99_is_within_its_bin():
    """The lifetime p99 the load table reports comes from a fixed log histogram (3 % bins)."""
    from qt_runtime.stats import LatencyWindow

    w = LatencyWindow(size=16)  # the recent window forgets; the histogram does not
    for ms in range(1, 1001):
        w.add(ms / 1000)
    s = w.summary()
    assert 990 <= s["p99_run_ms"] <= 990 * 1.03 and s["p99_ms"] > 990  # recent window: the last 16 only
    assert LatencyWindow().run_percentile(99) == 0.0
