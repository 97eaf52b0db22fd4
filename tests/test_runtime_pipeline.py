"""Runtime pipeline: sources/sinks tables, fitting, quality knob, temporal filter, faults, stats, CLI.

Everything here is in-process and small (tiny torch-free artifacts from tests/runtime_models.py);
the loopback network streams and subprocess signal tests live in test_runtime_streams.py.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from qt_core.pixels import to_uint8
from qt_runtime.artifact import load_artifact
from qt_runtime.backends import open_backend
from qt_runtime.backends.base import Backend
from qt_runtime.cli import human_summary, main
from qt_runtime.pipeline import Pipeline, PipelineOptions, QualityKnob, fit_frame
from qt_runtime.sinks import ImageFolderSink, NullSink, SinkError, SinkOptions, VideoFileSink, open_sink
from qt_runtime.sources import (
    FolderSource,
    Source,
    SourceError,
    SourceOptions,
    backoff_delays,
    jetson_csi_pipeline,
    open_source,
    opencv_has_gstreamer,
)
from qt_runtime.stats import Gap, LatencyWindow, RunStats, SizeChange, rss_bytes
from qt_runtime.temporal import FlickerMeter, TemporalFilter, TemporalOptions
from qt_train.data.video import count_frames
from tests.runtime_models import make_onnx_artifact, reference_forward

# -- helpers ---------------------------------------------------------------------------------------

def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """RGB uint8 frames -> an MJPG .avi (or mp4v .mp4) with cv2.VideoWriter."""
    h, w = frames[0].shape[:2]
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


class ListSource(Source):
    """In-memory frames; ``script`` items: an array (a frame), None (a corrupt frame), "fail"
    (the read fails: a stall for live sources); ``open_failures`` reopen attempts fail first."""

    kind = "test"

    def __init__(self, script: list, live: bool = False, open_failures: int = 0, delay: float = 0.0,
                 opts: SourceOptions | None = None) -> None:
        super().__init__("test://list", opts or SourceOptions(backoff_initial_s=0.01, backoff_max_s=0.05))
        self.live = live
        self.script = list(script)
        self.open_failures = open_failures
        self.delay = delay
        self.opens = 0
        self.pos = 0

    def _open(self) -> None:
        self.opens += 1
        if 1 < self.opens <= 1 + self.open_failures:
            raise SourceError("still down")

    def _read(self):
        if self.delay:
            time.sleep(self.delay)
        if self.pos >= len(self.script):
            return False, None
        item = self.script[self.pos]
        self.pos += 1
        if isinstance(item, str) and item == "fail":
            return False, None
        return True, item

    def _close(self) -> None:
        pass


class ShiftBackend(Backend):
    """A stand-in model: output = input + a per-call brightness offset from ``offsets`` (cycled)."""

    name = "shift"

    def __init__(self, artifact, offsets=(0.0,), delay: float = 0.0) -> None:
        super().__init__(artifact, "CPU")
        self.offsets = list(offsets)
        self.calls = 0
        self.delay = delay

    def _run(self, batch, quality):
        if self.delay:
            time.sleep(self.delay)
        off = self.offsets[self.calls % len(self.offsets)]
        self.calls += 1
        return np.clip(batch + np.float32(off), 0.0, 1.0)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    return {
        "dyn": make_onnx_artifact(root / "dyn"),
        "quality": make_onnx_artifact(root / "quality", quality_input=True),
        "static": make_onnx_artifact(root / "static", size=(32, 32)),
        "ov_static": make_onnx_artifact(root / "ov_static", size=(32, 32), fmt="openvino"),
    }


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def run_pipeline(source, backend, sink=None, **opts):
    if isinstance(source, (ListSource, FolderSource)):
        source.open()
    pipe = Pipeline(source, backend, sink or NullSink(), PipelineOptions(progress=False, **opts))
    return pipe, pipe.run()


# -- sources ---------------------------------------------------------------------------------------

def test_source_table_kinds(tmp_path, small_video):
    assert open_source(str(small_video)).kind == "file"
    (tmp_path / "f").mkdir()
    cv2.imwrite(str(tmp_path / "f" / "b.png"), noise(8, 8))
    cv2.imwrite(str(tmp_path / "f" / "a.png"), noise(8, 8, 1))
    folder = open_source(str(tmp_path / "f"))
    assert folder.kind == "folder" and not folder.live and folder.frame_count == 2
    assert [p.name for p in folder._files] == ["a.png", "b.png"]
    with pytest.raises(SourceError, match="not a camera index, URL"):
        open_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceError, match="empty"):
        open_source("  ")


def test_gstreamer_and_jetson_preset_fail_clearly_without_gstreamer():
    pipe = jetson_csi_pipeline(1, 1280, 720, 60)
    assert pipe.startswith("nvarguscamerasrc sensor-id=1") and "width=1280,height=720,framerate=60/1" in pipe
    assert pipe.rstrip().endswith("sync=false") and "appsink" in pipe
    if opencv_has_gstreamer():
        pytest.skip("this OpenCV has GStreamer")
    for spec in ("jetson-csi", "jetson-csi:0:1280x720@60", "videotestsrc ! videoconvert ! appsink"):
        with pytest.raises(SourceError, match="no GStreamer support"):
            open_source(spec)
    with pytest.raises(SourceError, match="bad jetson-csi preset"):
        open_source("jetson-csi:nonsense")


def test_backoff_doubles_and_caps():
    opts = SourceOptions(retry_max_tries=6, backoff_initial_s=0.5, backoff_max_s=3.0)
    assert list(backoff_delays(opts)) == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_file_source_yields_rgb_frames_with_timestamps(small_video):
    with open_source(str(small_video)) as src:
        frames = list(src.frames())
    assert len(frames) == 20 and frames[0].image.dtype == np.uint8 and frames[0].image.shape == (48, 64, 3)
    assert [f.index for f in frames] == list(range(20))
    assert frames[1].timestamp == pytest.approx(0.1, abs=0.02)  # 10 fps
    assert abs(int(frames[5].image.mean()) - 50) <= 3


def test_corrupt_frames_are_skipped_and_counted():
    good = noise(16, 24)
    script = [good, None, good, np.zeros((16, 24, 7), np.uint8), good, np.zeros((8, 8, 3), np.uint8), good]
    src = ListSource(script).open()
    frames = list(src.frames())
    assert len(frames) == 4 and src.health.corrupt == 3
    assert [f.index for f in frames] == [0, 1, 2, 3]


def test_live_source_reconnects_with_backoff_and_reports_gap():
    good = noise(16, 24)
    src = ListSource([good, good, "fail", good, good], live=True, open_failures=2).open()
    frames = []
    for f in src.frames():
        frames.append(f)
        if len(frames) == 4:
            break
    assert len(frames) == 4
    assert src.health.reconnects == 1 and src.opens == 4  # first open + 2 failures + success
    (gap,) = src.health.take_gaps()
    assert gap.tries == 3 and gap.seconds >= 0.01 + 0.02


def test_live_source_gives_up_after_retry_budget():
    opts = SourceOptions(retry_max_tries=3, backoff_initial_s=0.01, backoff_max_s=0.02)
    src = ListSource([noise(8, 8), "fail"], live=True, open_failures=99, opts=opts).open()
    with pytest.raises(SourceError, match="after 3 reconnect tries"):
        list(src.frames())


# -- sinks -----------------------------------------------------------------------------------------

def test_sink_table(tmp_path):
    assert isinstance(open_sink("null"), NullSink)
    assert isinstance(open_sink(str(tmp_path / "frames")), ImageFolderSink)
    assert isinstance(open_sink(str(tmp_path / "out.mp4")), VideoFileSink)
    with pytest.raises(SinkError, match="does not exist"):
        open_sink(str(tmp_path / "nope" / "out.mp4"))
    with pytest.raises(SinkError, match="mjpeg://HOST:PORT"):
        open_sink("mjpeg://nohost")


def test_window_sink_without_display_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError, match="needs a display"):
        open_sink("window")


@pytest.mark.parametrize("codec,suffix", [("opencv", ".mp4"), ("opencv", ".avi"), ("ffmpeg", ".mp4")])
def test_video_sink_writes_playable_file(tmp_path, codec, suffix):
    if codec == "ffmpeg" and shutil.which("ffmpeg") is None:
        pytest.skip("no ffmpeg")
    path = tmp_path / f"out{suffix}"
    sink = open_sink(str(path), SinkOptions(fps=10, codec=codec))
    for i in range(12):
        img = noise(33, 50, i)  # odd height: the ffmpeg route pads to even
        sink.write(img, img, i)
    sink.close()
    assert count_frames(path, exact=True) == 12


# -- fitting, colour, quality ------------------------------------------------------------------------

def test_dynamic_model_output_matches_reference(artifacts):
    backend = open_backend(load_artifact(artifacts["dyn"]))
    img = noise(40, 48)
    pipe = Pipeline(ListSource([img]), backend, NullSink(), PipelineOptions(progress=False))
    batch, plan = pipe.prepare(img)
    out = pipe.restore(pipe.infer(batch, plan), plan, img.shape[:2])
    ref = reference_forward(img.transpose(2, 0, 1)[None].astype(np.float32) / 255)[0].transpose(1, 2, 0)
    assert out.dtype == np.uint8 and out.shape == img.shape
    # bytes out: the reference rounded to the nearest level (one level of slack for float order)
    assert np.abs(out.astype(np.int16) - np.rint(ref * 255)).max() <= 1
    backend.close()


@pytest.mark.parametrize("name", ["static", "ov_static"])
def test_tile_policy_restores_large_frames_at_full_resolution(artifacts, name):
    backend = open_backend(load_artifact(artifacts[name]))
    img = noise(50, 90)
    pipe = Pipeline(ListSource([img]), backend, NullSink(), PipelineOptions(progress=False, tile_overlap=8))
    batch, plan = pipe.prepare(img)
    assert batch is None
    out = pipe.restore(pipe.infer(batch, plan), plan, img.shape[:2])
    ref = reference_forward(img.transpose(2, 0, 1)[None].astype(np.float32) / 255)[0].transpose(1, 2, 0)
    assert out.shape == (50, 90, 3) and out.dtype == np.uint8
    # tile borders see zero padding inside the model, blended away by the overlap window
    assert np.abs(out / 255.0 - ref)[2:-2, 2:-2].mean() < 4e-3
    backend.close()


@pytest.mark.parametrize("policy", ["resize", "letterbox"])
def test_resize_and_letterbox_policies_return_frame_size(artifacts, policy):
    backend = open_backend(load_artifact(artifacts["static"]))
    img = noise(24, 60)
    pipe = Pipeline(ListSource([img]), backend, NullSink(), PipelineOptions(progress=False, policy=policy))
    batch, plan = pipe.prepare(img)
    assert batch.shape == (1, 32, 32, 3) and batch.dtype == np.uint8
    out = pipe.restore(pipe.infer(batch, plan), plan, img.shape[:2])
    assert out.shape == (24, 60, 3) and out.dtype == np.uint8
    backend.close()


def test_fit_frame_pads_dynamic_models_to_their_multiple():
    batch, placement = fit_frame(np.zeros((30, 41, 3), np.uint8), None, 8, "tile")
    assert batch.shape == (1, 32, 48, 3) and placement.content == (0, 0, 30, 41)


def test_fit_frame_refuses_float_frames():
    with pytest.raises(ValueError, match="RGB uint8"):
        fit_frame(np.zeros((32, 32, 3), np.float32), (32, 32), 8, "tile")


def test_quality_knob_keys_and_limits():
    quit_called = []
    knob = QualityKnob(7.0, 8, True, on_quit=lambda: quit_called.append(1))
    knob.handle_key(ord("+"))
    assert knob.value == 7.0  # capped at levels - 1
    knob.handle_key(ord("-"))
    knob.handle_key(ord("-"))
    assert knob.value == 5.0
    knob.handle_key(ord("2"))
    assert knob.value == 2.0
    knob.handle_key(ord("9"))
    assert knob.value == 7.0
    knob.handle_key(ord("q"))
    assert quit_called == [1]
    folded = QualityKnob(7.0, 8, False)
    folded.handle_key(ord("3"))
    assert folded.value == 7.0


def test_quality_level_reaches_the_model(artifacts):
    backend = open_backend(load_artifact(artifacts["quality"]))
    img = np.full((16, 16, 3), 128, np.uint8)
    outs = {}
    for q in (2.0, 7.0):
        pipe = Pipeline(ListSource([img]), backend, NullSink(), PipelineOptions(progress=False, quality=q))
        batch, plan = pipe.prepare(img)
        outs[q] = pipe.restore(pipe.infer(batch, plan), plan, img.shape[:2]).astype(np.float64)
    assert np.mean(outs[7.0] - outs[2.0]) / 255 == pytest.approx(5 * 0.01, abs=2e-3)
    backend.close()


def test_quality_on_folded_artifact_is_bad_input(artifacts, tmp_path, small_video, capsys):
    rc = main([str(artifacts["dyn"]), "--source", str(small_video), "--sink", "null", "--quality", "3",
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "folded" in err and len(err.strip().splitlines()) == 1


def test_to_uint8_rounds():
    assert to_uint8(np.array([[[0.5 / 255, 1.6 / 255, 1.0]]], np.float32)).tolist() == [[[0, 2, 255]]]


# -- temporal stability ------------------------------------------------------------------------------

def synthetic_scene(n: int = 36, h: int = 72, w: int = 96, side: int = 14, step: int = 2) -> list[np.ndarray]:
    """Static textured background with a bright square moving right by ``step`` px per frame."""
    bg = noise(h, w, 3).astype(np.float32) / 255 * 0.6
    frames = []
    for t in range(n):
        f = bg.copy()
        x = 5 + step * t
        f[20:20 + side, x:x + side] = 0.95
        frames.append(f)
    return frames


def test_temporal_filter_halves_flicker_without_ghosting():
    frames = synthetic_scene()
    rng = np.random.default_rng(0)
    offsets = rng.normal(0.0, 0.03, len(frames)).astype(np.float32)  # the "model": brightness flicker
    plain, smooth = FlickerMeter(), FlickerMeter()
    filt = TemporalFilter(TemporalOptions())
    lag, err = [], []
    for t, (f, off) in enumerate(zip(frames, offsets, strict=True)):
        out = np.clip(f + off, 0, 1)
        filtered = filt(f, out)
        plain.update(f, out)
        smooth.update(f, filtered)
        if t > 5:
            x = 5 + 2 * t
            # pixels the square just covered and just uncovered changed: they must show the new output
            for cols in (slice(x + 12, x + 14), slice(x - 2, x)):
                lag.append(float(np.abs(filtered[20:34, cols] - out[20:34, cols]).mean()))
            # a ghost (old background inside the square, old square behind it) would be off by > 0.2
            err.append(float(np.abs(filtered[20:34, x - 2:x + 14] - f[20:34, x - 2:x + 14]).mean()))
    p, s = plain.summary()["output_static_flicker"], smooth.summary()["output_static_flicker"]
    assert p / s >= 2.0, (p, s)
    assert max(lag) < 0.01, max(lag)
    assert max(err) < 0.08, max(err)


def test_temporal_mode_in_pipeline_reports_flicker(artifacts, tmp_path):
    frames = [(f * 255).round().astype(np.uint8) for f in synthetic_scene(30)]
    folder = tmp_path / "scene"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    offsets = np.random.default_rng(1).normal(0, 0.03, 64)
    results = {}
    for temporal in (None, TemporalOptions()):
        backend = ShiftBackend(load_artifact(artifacts["dyn"]), offsets)
        _, res = run_pipeline(FolderSource(str(folder), SourceOptions()), backend, flicker=True,
                              temporal=temporal)
        assert res.ok and res.summary["frames_out"] == 30
        results[temporal is not None] = res.summary["flicker"]["output_static_flicker"]
    assert results[False] / results[True] >= 2.0


# -- pipeline behaviour --------------------------------------------------------------------------------

def test_file_pipeline_drops_nothing_and_writes_every_frame(artifacts, tmp_path):
    frames = [noise(24, 32, i) for i in range(25)]
    video = write_video(tmp_path / "in.avi", frames)
    backend = ShiftBackend(load_artifact(artifacts["dyn"]), delay=0.005)
    sink = ImageFolderSink(str(tmp_path / "out"), SinkOptions())
    _, res = run_pipeline(open_source(str(video)), backend, sink, queue_depth=1)
    s = res.summary
    assert res.ok and s["end"] == "end" and s["frames_in"] == s["frames_out"] == 25 and s["dropped_frames"] == 0
    assert len(list((tmp_path / "out").glob("*.png"))) == 25
    for stage in ("capture", "pre", "infer", "post", "sink"):
        assert s["latency"][stage]["count"] == 25 and s["latency"][stage]["p99_ms"] >= s["latency"][stage]["p50_ms"]


def test_live_pipeline_keeps_only_the_latest_frame(artifacts):
    frames = [noise(16, 16, i % 4) for i in range(60)]
    src = ListSource(frames + ["fail"], live=True, delay=0.002,
                     opts=SourceOptions(retry_max_tries=1, backoff_initial_s=0.01))
    backend = ShiftBackend(load_artifact(artifacts["dyn"]), delay=0.03)
    _, res = run_pipeline(src, backend, max_frames=5)
    s = res.summary
    assert s["frames_out"] == 5 and s["end"] == "max_frames"
    assert s["dropped_frames"] > 0 and s["frames_in"] > s["frames_out"]


def test_max_frames_on_a_file(artifacts, small_video):
    backend = open_backend(load_artifact(artifacts["dyn"]))
    _, res = run_pipeline(open_source(str(small_video)), backend, max_frames=7)
    assert res.summary["frames_out"] == 7 and res.summary["end"] == "max_frames"


def test_source_lost_ends_run_with_error_and_closes_sink(artifacts, tmp_path):
    src = ListSource([noise(16, 16)] * 3 + ["fail"], live=True, open_failures=99,
                     opts=SourceOptions(retry_max_tries=2, backoff_initial_s=0.01))
    sink = ImageFolderSink(str(tmp_path / "o"), SinkOptions())
    _, res = run_pipeline(src, ShiftBackend(load_artifact(artifacts["dyn"])), sink)
    assert not res.ok and res.reason == "error" and isinstance(res.error, SourceError)
    s = res.summary
    assert s["frames_out"] >= 1 and s["frames_out"] + s["dropped_frames"] == 3 and "reconnect tries" in s["error"]
    assert len(list((tmp_path / "o").glob("*.png"))) == s["frames_out"]


def test_stop_from_another_thread_finishes_cleanly(artifacts):
    src = ListSource([noise(16, 16)] * 10_000, delay=0.001)
    pipe = Pipeline(src.open(), ShiftBackend(load_artifact(artifacts["dyn"])), NullSink(),
                    PipelineOptions(progress=False))
    threading.Timer(0.3, pipe.stop).start()
    res = pipe.run()
    assert res.ok and res.reason == "stopped" and 0 < res.summary["frames_out"] < 10_000


def test_async_backend_keeps_frame_order(artifacts, tmp_path):
    frames = [np.full((16, 16, 3), 10 * i, np.uint8) for i in range(20)]
    ov_dyn = load_artifact(make_onnx_artifact(tmp_path / "ov", fmt="openvino"))
    backend = open_backend(ov_dyn, num_requests=3, hint="THROUGHPUT")
    seen = []

    class Order(NullSink):
        def write(self, original, restored, index):
            seen.append((index, int(original[0, 0, 0])))

    pipe, res = run_pipeline(ListSource(frames), backend, Order(), queue_depth=3)
    assert pipe._async and res.ok
    assert seen == [(i, 10 * i) for i in range(20)]
    backend.close()


def test_memory_stays_flat_over_a_few_hundred_frames(artifacts, tmp_path):
    video = write_video(tmp_path / "loop.avi", [noise(48, 64, i) for i in range(20)])
    backend = open_backend(load_artifact(artifacts["dyn"]))

    def run(n: int) -> None:
        src = open_source(str(video), SourceOptions(loop=True))
        _, res = run_pipeline(src, backend, max_frames=n, temporal=TemporalOptions())
        assert res.ok and res.summary["frames_out"] == n
        src.close()

    run(60)  # warm-up: allocator pools, backend buffers
    before = rss_bytes()
    run(300)
    growth = rss_bytes() - before
    assert growth < 25 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 300 frames"
    backend.close()


# -- stats -----------------------------------------------------------------------------------------

def test_latency_window_is_bounded_and_reports_percentiles():
    w = LatencyWindow(size=100)
    for i in range(1000):
        w.add(i / 1000)
    s = w.summary()
    assert s["count"] == 1000 and s["p50_ms"] == pytest.approx(949.5, abs=1) and s["max_recent_ms"] == 999.0
    assert len(w._ring) == 100


def test_run_stats_summary_is_json(tmp_path):
    stats = RunStats()
    with stats.timed("infer"):
        pass
    stats.frame_done()
    stats.finish()
    json.dumps(stats.summary())


def test_human_summary_names_the_stream_faults_only_when_there_were_any():
    """The one line a user reads says when the camera went quiet or changed size; a clean run stays short."""
    stats = RunStats()
    with stats.timed("infer"):
        pass
    stats.frame_done()
    clean = human_summary(stats.summary())
    assert "gap" not in clean and "resolution" not in clean and "reconnect" not in clean, clean
    stats.add_gap(Gap(started=0.0, seconds=2.5, tries=3))
    stats.add_gap(Gap(started=9.0, seconds=1.0, tries=1))
    stats.add_size_change(SizeChange(frame=40, before=(96, 160), after=(96, 240)))
    stats.reconnects = 1
    line = human_summary(stats.summary())
    assert ", 1 reconnect," in line and "2 gaps (3.5 s without frames)" in line, line
    assert "1 resolution change (last 160x96 -> 240x96)" in line and "\n" not in line, line


# -- CLI -------------------------------------------------------------------------------------------

def test_cli_runs_and_writes_summary(artifacts, small_video, tmp_path, capsys):
    summary = tmp_path / "s" / "summary.json"
    rc = main([str(artifacts["quality"]), "--source", str(small_video), "--sink", str(tmp_path / "out.avi"),
               "--quality", "3.5", "--temporal", "--summary", str(summary), "--no-progress", "--json"])
    assert rc == 0
    data = json.loads(summary.read_text())
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["frames_out"] == printed["frames_out"] == 20 and data["quality"] == 3.5
    assert "flicker" in data and count_frames(tmp_path / "out.avi", exact=True) == 20


@pytest.mark.parametrize("extra,hint,precision", [([], "THROUGHPUT", "f32"),
                                                   (["--hint", "LATENCY", "--precision", "bf16"], "LATENCY", "bf16")])
def test_cli_openvino_hint_and_precision(artifacts, small_video, tmp_path, extra, hint, precision):
    """A file gets THROUGHPUT unless told otherwise; --precision reaches OpenVINO's config."""
    summary = tmp_path / "summary.json"
    rc = main([str(artifacts["ov_static"]), "--source", str(small_video), "--sink", "null", "--no-progress",
               "--decode-threads", "1", "--summary", str(summary), *extra])
    data = json.loads(summary.read_text())
    assert rc == 0 and data["frames_out"] == 20
    config = data["backend"]["config"]
    assert config["PERFORMANCE_HINT"] == hint and config["INFERENCE_PRECISION_HINT"] == precision


@pytest.mark.parametrize("argv,needle", [
    (["{missing}", "--source", "{video}"], "not a folder"),
    (["{dyn}", "--source", "{missing}"], "not a camera index"),
    (["{dyn}", "--source", "{video}", "--sink", "window"], "display"),
    (["{dyn}", "--source", "{video}", "--policy", "stretch"], "invalid choice"),
    (["{dyn}"], "--source"),
    (["{dyn}", "--source", "{video}", "--max-frames", "0"], "max-frames"),
    (["{dyn}", "--source", "{video}", "--hint", "THROUGHPUT"], "openvino backend only"),
    (["{dyn}", "--source", "{video}", "--decode-threads", "0"], "decode threads"),
    (["{dyn}", "--source", "{video}", "--queue-depth", "0"], "queue_depth"),
])
def test_cli_bad_input_is_one_line_and_exit_2(artifacts, small_video, tmp_path, capsys, monkeypatch,
                                               argv, needle):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    subst = {"missing": tmp_path / "missing", "video": small_video, "dyn": artifacts["dyn"]}
    rc = main([a.format(**subst) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and len(err.splitlines()) == 1 and err.startswith("qt-run")


@pytest.mark.parametrize("gate", ["failed", "missing"])
def test_cli_refuses_an_ungated_artifact_unless_allowed(artifacts, small_video, tmp_path, capsys, gate):
    """An artifact whose export gate failed (or that has none) does not run by accident."""
    import dataclasses
    import shutil

    from qt_runtime.manifest import read_manifest, write_manifest

    art = tmp_path / "art"
    shutil.copytree(artifacts["quality"], art)
    m = read_manifest(art / "manifest.json")
    write_manifest(art / "manifest.json", dataclasses.replace(
        m, gate=None if gate == "missing" else dataclasses.replace(m.gate, passed=False)))
    argv = [str(art), "--source", str(small_video), "--sink", "null", "--no-progress", "--max-frames", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "export gate" in err and "--allow-ungated" in err and len(err.strip().splitlines()) == 1
    assert main([*argv, "--allow-ungated"]) == 0


def test_existing_video_output_is_refused_without_force(artifacts, small_video, tmp_path, capsys):
    out = tmp_path / "out.avi"
    out.write_bytes(b"an earlier result")
    argv = [str(artifacts["quality"]), "--source", str(small_video), "--sink", str(out), "--no-progress"]
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"an earlier result"
    assert main([*argv, "--force"]) == 0
    assert count_frames(out, exact=True) == 20 and not list(tmp_path.glob(".out.*"))  # no partial left


def test_unwritable_summary_is_refused_before_the_run(artifacts, small_video, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    rc = main([str(artifacts["quality"]), "--source", str(small_video), "--sink", "null", "--no-progress",
               "--summary", str(tmp_path / "a-file" / "summary.json")])
    err = capsys.readouterr()
    assert rc == 2 and "cannot write there" in err.err and err.out == ""  # nothing ran


def test_truncated_video_file_is_reported(artifacts, tmp_path, capsys):
    """A file cut off mid-way exited 0 with half the frames and no word about it."""
    import cv2

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(40):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = clip.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    summary = tmp_path / "s.json"
    rc = main([str(artifacts["quality"]), "--source", str(cut), "--sink", "null", "--no-progress",
               "--summary", str(summary)])
    data = json.loads(summary.read_text())
    assert rc == 0 and data["truncated"]["expected"] == 40 and data["truncated"]["read"] < 40
    assert "truncated or damaged" in capsys.readouterr().err
