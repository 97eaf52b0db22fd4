"""The frame pipeline: capture -> preprocess -> infer -> postprocess -> sink as overlapping stages.

One thread per stage, joined by bounded queues, so decoding frame t+2, normalising t+1 and running
the model on t overlap (OpenCV, numpy and the backends release the GIL in their heavy parts).

Back-pressure differs by source. A file must lose nothing, so every hand-off blocks when the next
stage is busy. A live source must not fall behind reality, so capture writes into a one-frame slot
that the next frame overwrites (latest-frame policy; each overwrite is a counted drop) and the
stages after it hold at most ``queue_depth`` frames: latency stays bounded however slow the model.

Frames that do not fit a static model input are tiled with overlap and blended
(:mod:`qt_runtime.tiling`), or resized/letterboxed, per ``policy``. Every queue and every statistic
is bounded, so memory stays flat on a stream that runs for days.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qt_core.pixels import to_uint8
from qt_runtime.backends.base import Backend
from qt_runtime.colour import from_model_range, to_model_range
from qt_runtime.sinks import Sink
from qt_runtime.sources import Frame, Source, SourceError
from qt_runtime.stats import END_TO_END, Progress, RunStats
from qt_runtime.temporal import FlickerMeter, TemporalFilter, TemporalOptions
from qt_runtime.tiling import Placement, fit_to_input, restore_from_input, tile_infer

POLICIES = ("tile", "resize", "letterbox")
_END = object()  # end-of-stream marker passed down the stages
_POLL_S = 0.1  # how often a blocked stage looks at the abort flag


@dataclass(frozen=True)
class PipelineOptions:
    """``policy``: what to do with frames that differ from a static model input. ``tile_overlap``:
    pixels shared by neighbouring tiles (blended). ``quality``: initial level for artifacts with a
    quality input (None: the manifest default). ``temporal``: flicker suppression options, None for
    off. ``flicker``: measure static-region flicker (costs a little CPU per frame). ``queue_depth``:
    frames each hand-off may hold, and requests in flight (3: with OpenVINO's two throughput streams
    on 2 cores, 2 left a stream idle between frames). ``max_frames``: stop after this many frames.
    ``use_async``: use the backend's request queue when it has a real one. ``progress``: tqdm bar
    (None: files only)."""

    policy: str = "tile"
    tile_overlap: int = 16
    quality: float | None = None
    temporal: TemporalOptions | None = None
    flicker: bool = False
    queue_depth: int = 3
    max_frames: int | None = None
    use_async: bool = True
    progress: bool | None = None

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy {self.policy!r}: expected one of {list(POLICIES)}")
        if self.queue_depth < 1:
            raise ValueError("queue_depth must be >= 1")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError("max_frames must be >= 1")


class QualityKnob:
    """The quality level the infer stage reads for each frame; the window's keys change it.

    ``+``/``-`` step by one level, digits set a level, ``q``/Esc ask the pipeline to stop.
    """

    def __init__(self, default: float | None, levels: int, adjustable: bool,
                 on_quit: Callable[[], None] | None = None) -> None:
        self.levels = levels
        self.adjustable = adjustable
        self._value = default
        self._on_quit = on_quit
        self._lock = threading.Lock()

    @property
    def value(self) -> float | None:
        with self._lock:
            return self._value

    def set(self, level: float) -> None:
        if not self.adjustable:
            return
        with self._lock:
            self._value = float(min(max(level, 0.0), self.levels - 1))

    def handle_key(self, key: int) -> None:
        ch = chr(key) if 0 <= key < 256 else ""
        if ch in ("q", "\x1b"):
            if self._on_quit is not None:
                self._on_quit()
        elif ch in ("+", "="):
            self.set((self.value or 0.0) + 1.0)
        elif ch in ("-", "_"):
            self.set((self.value or 0.0) - 1.0)
        elif ch.isdigit():
            self.set(float(ch))


class LatestSlot:
    """A one-item mailbox for live sources: a new frame replaces an unread one (counted as dropped)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False
        self.dropped = 0

    def put(self, item: Any, abort: threading.Event | None = None) -> None:
        with self._cond:
            if self._full and self._item is not _END:
                self.dropped += 1
            if not (self._full and self._item is _END):
                self._item, self._full = item, True
            self._cond.notify()

    def get(self, timeout: float) -> Any:
        with self._cond:
            if not self._cond.wait_for(lambda: self._full, timeout=timeout):
                raise queue.Empty
            item, self._item, self._full = self._item, None, False
            return item


class BlockingSlot:
    """A bounded FIFO whose ``put`` waits (files: nothing may be dropped) but still sees aborts."""

    def __init__(self, depth: int) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.dropped = 0

    def put(self, item: Any, abort: threading.Event | None = None) -> None:
        while True:
            try:
                self._q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                if abort is not None and abort.is_set():
                    return

    def get(self, timeout: float) -> Any:
        return self._q.get(timeout=timeout)


@dataclass
class _Work:
    """One frame on its way through the stages."""

    index: int
    timestamp: float
    image: np.ndarray  # original RGB uint8
    batch: np.ndarray | None = None  # uint8 NHWC, fitted to the model input (None when tiled)
    plan: Any = None
    output: np.ndarray | None = None  # uint8 NHWC from the backend (float HWC for a tiled frame)
    restored: np.ndarray | None = None  # RGB uint8, original size
    t_infer: float = 0.0
    t_captured: float = 0.0  # perf_counter when capture handed it on (end-to-end latency)


@dataclass
class PipelineResult:
    """How the run ended and its statistics (``summary`` is what ``--summary`` writes)."""

    summary: dict[str, Any]
    reason: str  # "end" | "max_frames" | "stopped" | "error"
    error: BaseException | None = None
    stats: RunStats = field(repr=False, default_factory=RunStats)

    @property
    def ok(self) -> bool:
        return self.error is None


def truncation(reason: str, source: Any, frames_in: int, corrupt: int) -> dict[str, int] | None:
    """A file that ended before the frame count its header declares (a cut-off download, a full
    disk): ``{"expected", "read"}``, else None. Loops, live sources and early stops do not count."""
    expected = getattr(source, "frame_count", None)
    if reason != "end" or source.live or not expected or getattr(source.opts, "loop", False):
        return None
    read = frames_in + corrupt
    return {"expected": int(expected), "read": read} if read < expected else None


class Pipeline:
    """Runs one source through one backend into one sink; :meth:`run` blocks until the end.

    :meth:`stop` (from a signal handler, a key, another thread) ends capture and lets the frames in
    flight finish so the sink is flushed and closed properly.
    """

    def __init__(self, source: Source, backend: Backend, sink: Sink | None,
                 opts: PipelineOptions | None = None) -> None:
        self.source, self.backend, self.sink = source, backend, sink
        self.opts = opts or PipelineOptions()
        spec = backend.input_spec
        self.spec = spec
        if self.opts.quality is not None:
            spec.quality_value(self.opts.quality)  # raises a clear error for folded artifacts / bad levels
        self.quality = QualityKnob(self.opts.quality if self.opts.quality is not None else spec.quality_default,
                                   spec.quality_levels, spec.quality_mode == "input", on_quit=self.stop)
        manifest = backend.artifact.manifest
        self._in_range = tuple(manifest.input.range)
        self._out_range = tuple(manifest.output.range)
        self._in_bgr = manifest.input.bgr
        self._out_bgr = manifest.output.bgr
        if spec.size is not None:  # compile for the frames to come before the clock starts
            backend.warm_up((spec.batch or 1, *spec.size, 3))
        self.stats = RunStats()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._errors: list[BaseException] = []
        self._reason = "end"
        self._temporal = TemporalFilter(self.opts.temporal) if self.opts.temporal is not None else None
        self._flicker = FlickerMeter() if (self.opts.flicker or self.opts.temporal is not None) else None
        self._async = self.opts.use_async and _has_real_async(backend)

    # -- control ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Graceful stop: no new frames; frames in flight finish; the sink is closed."""
        if not self._stop.is_set():
            self._reason = "stopped"
        self._stop.set()

    def _fail(self, exc: BaseException, abort: bool = True) -> None:
        """Record an error and stop; ``abort`` also drops the frames in flight (a broken stage)."""
        self._errors.append(exc)
        self._reason = "error"
        self._stop.set()
        if abort:
            self._abort.set()

    # -- run ---------------------------------------------------------------------------------------
    def run(self) -> PipelineResult:
        """Run to the end of the source, ``max_frames``, :meth:`stop` or an error; always closes the sink."""
        if self.sink is None:
            raise ValueError("Pipeline.run needs a sink (set pipeline.sink before running)")
        live = self.source.live
        q_cap: LatestSlot | BlockingSlot = LatestSlot() if live else BlockingSlot(self.opts.queue_depth)
        q_pre = BlockingSlot(self.opts.queue_depth)
        q_inf = BlockingSlot(self.opts.queue_depth)
        q_post = BlockingSlot(self.opts.queue_depth)
        show_bar = self.opts.progress if self.opts.progress is not None else not live
        progress = Progress(self.source.frame_count, show_bar)
        stages = [
            ("capture", self._capture, (q_cap,)),
            ("pre", self._pre_stage, (q_cap, q_pre)),
            ("infer", self._infer_stage, (q_pre, q_inf)),
            ("post", self._post_stage, (q_inf, q_post)),
            ("sink", self._sink_stage, (q_post, progress)),
        ]
        threads = [threading.Thread(target=self._guard, args=(fn, *args), name=f"qt-{name}", daemon=True)
                   for name, fn, args in stages]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():  # short joins keep the main thread responsive to signals
                    t.join(timeout=0.2)
        finally:
            progress.close()
            self.stats.dropped = q_cap.dropped
            self._drain_health()
            try:
                self.sink.close()
            except BaseException as exc:  # a sink that cannot finish its file is a failed run
                self._errors.append(exc)
                self._reason = "error"
            self.stats.finish()
        summary = self.stats.summary()
        summary["end"] = self._reason
        summary["source"] = {"spec": self.source.spec, "kind": self.source.kind, "live": live}
        summary["backend"] = _describe(self.backend)
        refitted = getattr(self.sink, "refitted", 0)
        if refitted:  # frames of a new size letterboxed into the size the output opened with
            summary["resolution_changes"]["sink_refitted_frames"] = refitted
        summary["policy"] = self.opts.policy
        summary["quality"] = self.quality.value if self.spec.quality_mode == "input" else None
        summary["temporal"] = self._temporal is not None
        if self._flicker is not None:
            summary["flicker"] = self._flicker.summary()
        short = truncation(self._reason, self.source, int(summary.get("frames_in", 0)),
                           int(summary.get("corrupt_frames_skipped", 0)))
        if short is not None:
            summary["truncated"] = short
        error = self._errors[0] if self._errors else None
        if error is not None:
            summary["error"] = f"{type(error).__name__}: {error}"
        return PipelineResult(summary, self._reason, error, self.stats)

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as exc:
            self._fail(exc)

    def _get(self, slot: LatestSlot | BlockingSlot) -> Any:
        """Next item, or _END when the run aborted (an error elsewhere)."""
        while True:
            if self._abort.is_set():
                return _END
            try:
                return slot.get(timeout=_POLL_S)
            except queue.Empty:
                continue

    def _drain_health(self) -> None:
        health = self.source.health
        self.stats.corrupt = health.corrupt
        self.stats.reconnects = health.reconnects
        for gap in health.take_gaps():
            self.stats.add_gap(gap)
        for change in health.take_size_changes():
            self.stats.add_size_change(change)

    # -- stages ------------------------------------------------------------------------------------
    def _capture(self, out: LatestSlot | BlockingSlot) -> None:
        n = 0
        frames = self.source.frames(self._stop)
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    frame: Frame = next(frames)
                except StopIteration:
                    break
                except SourceError as exc:  # the source is gone: finish the frames already captured
                    self._fail(exc, abort=False)
                    break
                self.stats.latency["capture"].add(time.perf_counter() - t0)
                self.stats.frames_in += 1
                self._drain_health()
                out.put(_Work(frame.index, frame.timestamp, frame.image, t_captured=time.perf_counter()),
                        self._abort)
                n += 1
                if self.opts.max_frames is not None and n >= self.opts.max_frames and not self.source.live:
                    self._reason = "max_frames"
                    break
        finally:
            frames.close()
            out.put(_END, self._abort)

    def _pre_stage(self, inp: LatestSlot | BlockingSlot, out: BlockingSlot) -> None:
        while (work := self._get(inp)) is not _END:
            with self.stats.timed("pre"):
                work.batch, work.plan = self.prepare(work.image)
            out.put(work, self._abort)
        out.put(_END, self._abort)

    def _infer_stage(self, inp: BlockingSlot, out: BlockingSlot) -> None:
        if self._async:
            self._infer_async_loop(inp, out)
            return
        while (work := self._get(inp)) is not _END:
            with self.stats.timed("infer"):
                work.output = self.infer(work.batch, work.plan)
            work.batch = None
            out.put(work, self._abort)
        out.put(_END, self._abort)

    def _infer_async_loop(self, inp: BlockingSlot, out: BlockingSlot) -> None:
        """Keep up to ``queue_depth`` requests in flight; callbacks may finish out of order, so the
        results are put downstream in frame order from a small reorder buffer."""
        done: dict[int, _Work] = {}
        lock = threading.Condition()
        order: list[int] = []  # frame indices started and not yet handed on, oldest first

        def on_done(output: np.ndarray, work: _Work) -> None:
            work.output = output
            self.stats.latency["infer"].add(time.perf_counter() - work.t_infer)
            with lock:
                done[work.index] = work
                lock.notify_all()

        def flush(keep: int) -> None:
            """Hand finished frames downstream in start order, waiting until at most ``keep`` remain
            in flight (this wait is what bounds the requests in flight)."""
            while order:
                with lock:
                    if order[0] not in done:
                        if len(order) <= keep:
                            return
                        lock.wait(timeout=_POLL_S)
                        if self._abort.is_set():
                            return
                        continue
                    work = done.pop(order.pop(0))
                work.batch = None
                out.put(work, self._abort)

        try:
            while (work := self._get(inp)) is not _END:
                if isinstance(work.plan, TilePlan):  # a tiled frame runs synchronously, after those in flight
                    self.backend.wait_all()
                    flush(0)
                    with self.stats.timed("infer"):
                        work.output = self.infer(work.batch, work.plan)
                    out.put(work, self._abort)
                    continue
                flush(self.opts.queue_depth - 1)
                if self._abort.is_set():
                    return
                work.t_infer = time.perf_counter()
                with lock:
                    order.append(work.index)
                self.backend.infer_frames_async(work.batch, self.quality.value, on_done, work)
            self.backend.wait_all()
            flush(0)
        finally:
            out.put(_END, self._abort)

    def _post_stage(self, inp: BlockingSlot, out: BlockingSlot) -> None:
        while (work := self._get(inp)) is not _END:
            with self.stats.timed("post"):
                restored = self.restore(work.output, work.plan, work.image.shape[:2])
                if self._temporal is not None:  # the filter averages in float, or small changes would stick
                    as_float = np.multiply(restored, np.float32(1.0 / 255.0), dtype=np.float32)
                    restored = to_uint8(self._temporal(work.image, as_float))
                if self._flicker is not None:
                    self._flicker.update(work.image, restored)
                work.restored, work.output = restored, None
            out.put(work, self._abort)
        out.put(_END, self._abort)

    def _sink_stage(self, inp: BlockingSlot, progress: Progress) -> None:
        written, limit = 0, self.opts.max_frames
        while (work := self._get(inp)) is not _END:
            if limit is not None and written >= limit:
                continue  # live source past --max-frames: drain what is in flight, write nothing
            with self.stats.timed("sink"):
                self.sink.write(work.image, work.restored, work.index)
            self.stats.latency[END_TO_END].add(time.perf_counter() - work.t_captured)
            self.stats.frame_done()
            progress.update(self.stats)
            written += 1
            if limit is not None and written >= limit and self.source.live:
                self._reason = "max_frames"
                self._stop.set()

    # -- per-frame maths (public so tests and the benchmark can call them directly) -----------------
    def prepare(self, image: np.ndarray) -> tuple[np.ndarray | None, Any]:
        """RGB uint8 frame -> (uint8 NHWC batch, Placement), or (None, TilePlan) for tiling."""
        return fit_frame(image, self.spec.size, self.spec.multiple, self.opts.policy, self.spec.batch,
                         in_range=self._in_range, bgr=self._in_bgr)

    def infer(self, batch: np.ndarray | None, plan: Any) -> np.ndarray:
        """One frame through the backend: uint8 NHWC out, or float HWC (model range) for tiles."""
        if isinstance(plan, TilePlan):
            return tile_frame(self.backend, plan, self.quality.value, self.opts.tile_overlap)
        return self.backend.infer_frames(batch, self.quality.value)

    def restore(self, output: np.ndarray, plan: Any, hw: tuple[int, int]) -> np.ndarray:
        """What :meth:`infer` returned -> RGB uint8 HWC at the frame's size."""
        if isinstance(plan, TilePlan):
            return to_uint8(from_model_range(output, self._out_range, self._out_bgr))
        return unfit_frame(output, plan, hw)


def _has_real_async(backend: Backend) -> bool:
    """True when the backend overrides ``infer_async`` (the base class just runs synchronously)."""
    return type(backend).infer_async is not Backend.infer_async


def _describe(backend: Backend) -> dict[str, Any]:
    try:
        return backend.describe()
    except Exception:
        return {"backend": getattr(backend, "name", type(backend).__name__)}


# -- fitting frames to the model input -------------------------------------------------------------

@dataclass(frozen=True)
class TilePlan:
    """A frame that goes through :func:`qt_runtime.tiling.tile_infer` (HWC, model range)."""

    image: np.ndarray
    tile: tuple[int, int]
    batch: int
    fixed_batch: bool


def fit_frame(image: np.ndarray, size: tuple[int, int] | None, multiple: int, policy: str,
              batch: int | None = None, *, in_range: tuple[float, float] = (0.0, 1.0),
              bgr: bool = False) -> tuple[np.ndarray | None, Any]:
    """RGB uint8 HWC frame -> (uint8 NHWC batch, Placement) or (None, TilePlan).

    Frames stay bytes: the backend converts them (:meth:`Backend.infer_frames`), and fitting
    uint8 is cheaper than fitting floats. A dynamic model gets the frame padded to its ``multiple``
    whatever the policy (nothing to tile or resize); a static model gets the frame as is when it
    already fits, else ``policy``. Tiles need float blending, so a TilePlan holds the frame in the
    model's range (``in_range``, ``bgr``).
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 HxWx3 frame, got {image.dtype} {list(image.shape)}")
    h, w = image.shape[:2]
    if size is None or (h, w) == tuple(size):
        fitted, placement = fit_to_input(image, size, "pad", multiple=multiple)
    elif policy == "tile":
        n = batch or 4
        return None, TilePlan(to_model_range(image, in_range, bgr), (int(size[0]), int(size[1])), n,
                              batch is not None)
    else:  # byte 0 is the bottom of the model's range, the letterbox fill
        fitted, placement = fit_to_input(image, size, policy, multiple=multiple, pad_value=0)
    frames = np.ascontiguousarray(fitted)[None]
    if batch is not None and batch > 1:  # static-batch model: repeat the frame, keep the first result
        frames = np.repeat(frames, batch, axis=0)
    return frames, placement


def tile_frame(backend: Backend, plan: TilePlan, quality: float | None, overlap: int) -> np.ndarray:
    """Infer a tiled frame; returns HWC float32 in the model's output range."""
    overlap = max(0, min(overlap, min(plan.tile) // 4))
    return tile_infer(plan.image, lambda b: backend.infer(b, quality), plan.tile, overlap, plan.batch,
                      fixed_batch=plan.fixed_batch)


def unfit_frame(output: np.ndarray, placement: Placement, hw: tuple[int, int]) -> np.ndarray:
    """Restored uint8 NHWC batch -> the first frame, cropped and resized back to ``hw``."""
    img = restore_from_input(output[0], placement)
    if img.shape[:2] != tuple(hw):  # defensive: a model that changes size is a contract breach
        raise ValueError(f"model output {output.shape[1:3]} does not map back to the frame size {hw}")
    return img
