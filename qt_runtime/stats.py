"""Run statistics for the frame pipeline: FPS, per-stage latency, drops, faults, memory.

Everything here is bounded: latencies live in fixed-size rings (percentiles describe the most recent
window, which is what an operator watching a live stream cares about), counters are plain integers.
A pipeline that runs for days must not grow a list per frame.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STAGES: tuple[str, ...] = ("capture", "pre", "infer", "post", "sink")
#: Capture done -> sink written, per frame: the latency a viewer sees (reported beside the stages).
END_TO_END = "end_to_end"

# Lifetime histogram for the whole-run p99: log-spaced bins, 40 per decade from 10 us to 1000 s
# (2.9 % wide), so a run of days keeps 321 counters, not a list per frame.
_HIST_LO, _HIST_PER_DECADE, _HIST_DECADES = 1e-5, 40, 8
_HIST_BINS = _HIST_PER_DECADE * _HIST_DECADES + 1


class LatencyWindow:
    """The last ``size`` durations of one stage (seconds), lifetime count and mean, and a lifetime
    log histogram for the whole-run p99."""

    def __init__(self, size: int = 2048) -> None:
        self._ring = np.zeros(size, np.float64)
        self._next = 0
        self._filled = 0
        self.count = 0
        self.total = 0.0
        self._hist = np.zeros(_HIST_BINS, np.int64)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        b = int(_HIST_PER_DECADE * math.log10(max(seconds, _HIST_LO) / _HIST_LO))
        with self._lock:
            self._ring[self._next] = seconds
            self._next = (self._next + 1) % len(self._ring)
            self._filled = min(self._filled + 1, len(self._ring))
            self.count += 1
            self.total += seconds
            self._hist[min(b, _HIST_BINS - 1)] += 1

    def run_percentile(self, q: float) -> float:
        """The ``q``-th percentile (seconds) over the whole run: the upper edge of its histogram bin."""
        with self._lock:
            hist = self._hist.copy()
        n = int(hist.sum())
        if n == 0:
            return 0.0
        b = int(np.searchsorted(np.cumsum(hist), math.ceil(n * q / 100.0)))
        return _HIST_LO * 10 ** ((b + 1) / _HIST_PER_DECADE)

    def summary(self) -> dict[str, float | int]:
        """Milliseconds: p50/p99/max over the recent window, mean and p99 (to 3 %) over the whole run."""
        with self._lock:
            recent = self._ring[: self._filled].copy()
            count, total = self.count, self.total
        if count == 0:
            return {"count": 0}
        p50, p99 = np.percentile(recent, [50, 99])
        return {
            "count": count,
            "mean_ms": round(1e3 * total / count, 3),
            "p50_ms": round(1e3 * float(p50), 3),
            "p99_ms": round(1e3 * float(p99), 3),
            "max_recent_ms": round(1e3 * float(recent.max()), 3),
            "p99_run_ms": round(1e3 * self.run_percentile(99.0), 3),
        }


class FpsMeter:
    """Frames per second over a sliding window of the last ``window`` completion times."""

    def __init__(self, window: int = 64) -> None:
        self._times: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        with self._lock:
            self._times.append(time.perf_counter() if now is None else now)

    def fps(self) -> float:
        with self._lock:
            if len(self._times) < 2:
                return 0.0
            span = self._times[-1] - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else 0.0


@dataclass(frozen=True)
class Gap:
    """A stretch with no frames from a live source: when it began (wall clock) and how long it lasted."""

    started: float
    seconds: float
    tries: int


@dataclass(frozen=True)
class SizeChange:
    """The source's frame size changed (a camera mode switch, a stream restarted at another size)."""

    frame: int  # index of the first frame at the new size
    before: tuple[int, int]  # (height, width)
    after: tuple[int, int]


class RunStats:
    """Counters and timers one pipeline run shares between its stage threads.

    Each counter is written by one stage only, so plain ints are enough; the gap list is capped.
    """

    MAX_GAPS = 100

    def __init__(self, window: int = 2048) -> None:
        self.latency = {stage: LatencyWindow(window) for stage in (*STAGES, END_TO_END)}
        self.fps_meter = FpsMeter()
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0
        self.corrupt = 0
        self.reconnects = 0
        self.gaps: deque[Gap] = deque(maxlen=self.MAX_GAPS)
        self.gap_seconds_total = 0.0
        self.gap_count = 0
        self.size_changes: deque[SizeChange] = deque(maxlen=self.MAX_GAPS)
        self.size_change_count = 0
        self.started = time.perf_counter()
        self.finished: float | None = None
        self.rss_start = rss_bytes()
        self.rss_peak = self.rss_start
        self.extra: dict[str, object] = {}

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the duration of the ``with`` body to ``stage``'s latency window."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.latency[stage].add(time.perf_counter() - t0)

    def frame_done(self) -> None:
        self.frames_out += 1
        self.fps_meter.tick()
        if self.frames_out % 32 == 0:
            self.rss_peak = max(self.rss_peak, rss_bytes())

    def add_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)
        self.gap_count += 1
        self.gap_seconds_total += gap.seconds

    def add_size_change(self, change: SizeChange) -> None:
        self.size_changes.append(change)
        self.size_change_count += 1

    def finish(self) -> None:
        self.finished = time.perf_counter()
        self.rss_peak = max(self.rss_peak, rss_bytes())

    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else time.perf_counter()
        return end - self.started

    def summary(self) -> dict[str, object]:
        """A JSON-ready dict: throughput, latency per stage, drops and faults, memory."""
        elapsed = self.elapsed()
        rss_now = rss_bytes()
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "elapsed_s": round(elapsed, 3),
            "fps_mean": round(self.frames_out / elapsed, 3) if elapsed > 0 else 0.0,
            "fps_recent": round(self.fps_meter.fps(), 3),
            "latency": {stage: w.summary() for stage, w in self.latency.items()},
            "dropped_frames": self.dropped,
            "corrupt_frames_skipped": self.corrupt,
            "reconnects": self.reconnects,
            "gaps": {
                "count": self.gap_count,
                "total_s": round(self.gap_seconds_total, 3),
                "recent": [
                    {"started": round(g.started, 3), "seconds": round(g.seconds, 3), "tries": g.tries}
                    for g in self.gaps
                ],
            },
            "resolution_changes": {
                "count": self.size_change_count,
                "recent": [{"frame": c.frame, "from": f"{c.before[1]}x{c.before[0]}", "to": f"{c.after[1]}x{c.after[0]}"}
                           for c in self.size_changes],
            },
            "rss_mb": {
                "start": round(self.rss_start / 2**20, 1),
                "end": round(rss_now / 2**20, 1),
                "peak": round(max(self.rss_peak, rss_now) / 2**20, 1),
            },
            **self.extra,
        }


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 where it is not available)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def write_summary(summary: dict[str, object], path: Path) -> None:
    """Write the summary JSON atomically so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class Progress:
    """A tqdm bar on stderr for file sources; a no-op where tqdm is missing or the bar is off.

    tqdm is optional for the runtime (an edge install may not have it), hence the lazy import.
    """

    def __init__(self, total: int | None, enabled: bool, desc: str = "qt-run") -> None:
        self._bar = None
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        import sys

        self._bar = tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, dynamic_ncols=True,
                         mininterval=0.5)

    def update(self, stats: RunStats) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        if stats.frames_out % 16 == 0:
            self._bar.set_postfix(fps=f"{stats.fps_meter.fps():.1f}", drop=stats.dropped,
                                  corrupt=stats.corrupt, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
