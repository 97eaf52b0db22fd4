"""Stream faults on loopback, each with real streams and real files: a source stalled past the read
timeout (reconnected, or a clean stop once the retry budget is spent), packets damaged in flight by
a relay between ffmpeg and qt-run, a resolution change mid-stream, and a sink whose disk fills.

The source killed and restarted is ``test_runtime_streams.py::test_udp_stream_killed_and_restarted_…``,
the truncated file ``test_runtime_pipeline.py::test_truncated_video_file_is_reported``. Every process
is started and stopped by the test, every address is 127.0.0.1, timeouts are generous (the machine
is shared) and nothing asserts a speed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from qt_runtime.sinks import SinkError, SinkOptions, VideoFileSink, letterbox
from qt_runtime.sources import Source, SourceOptions
from qt_train.data.video import count_frames
from tests.runtime_models import make_onnx_artifact
from tests.test_runtime_streams import env, free_udp_port, needs_ffmpeg, qt_run, serve_udp, stop_proc

pytestmark = needs_ffmpeg


def make_clip(path: Path, w: int, h: int, frames: int = 50) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    assert writer.isOpened()
    for i in range(frames):
        f = np.full((h, w, 3), 60 + 2 * i, np.uint8)
        cv2.rectangle(f, (2 * i, h // 4), (2 * i + 20, h // 2), (0, 255, 0), -1)
        writer.write(f)
    writer.release()
    return path


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return make_onnx_artifact(tmp_path_factory.mktemp("art") / "tiny")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 160, 96)


def wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"qt-run ended before {what}: {proc.communicate()[1][-2000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def finish(proc: subprocess.Popen, timeout: float = 90.0) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def one_line_error(err: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("qt-run: error: ")]
    assert len(errors) == 1, err
    return errors[0]


# -- a stalled source ---------------------------------------------------------------------------------

def test_stall_past_the_read_timeout_is_reported_and_reconnected(artifact, clip, tmp_path):
    """The sender freezes (SIGSTOP: the socket stays, no packets) for 3 s, longer than the 1 s read
    timeout: qt-run reports a gap, reconnects when packets flow again and finishes."""
    port = free_udp_port()
    frames_dir, summary = tmp_path / "frames", tmp_path / "s.json"
    sender = serve_udp(clip, port)
    reader = subprocess.Popen(
        qt_run(str(artifact), "--source", f"udp://127.0.0.1:{port}", "--sink", str(frames_dir) + "/",
               "--max-frames", "60", "--summary", str(summary), "--read-timeout", "1", "--open-timeout", "3",
               "--retry-max-seconds", "30"),
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(list(frames_dir.glob("*.png"))) >= 10, reader, "the first frames")
        sender.send_signal(signal.SIGSTOP)
        time.sleep(3.0)
        sender.send_signal(signal.SIGCONT)
        rc, err = finish(reader)
    finally:
        sender.send_signal(signal.SIGCONT)
        stop_proc(sender)
    assert rc == 0, err
    data = json.loads(summary.read_text())
    assert data["frames_out"] == 60 and data["reconnects"] >= 1, data
    # the gap is counted from the last frame the reader got, which the kernel may have buffered
    # after the freeze began: bounded by the read timeout, not by the 3 s freeze
    assert data["gaps"]["count"] >= 1 and data["gaps"]["total_s"] >= 1.0, data["gaps"]


def test_stall_past_the_retry_budget_stops_cleanly_and_the_video_plays(artifact, clip, tmp_path):
    """A sender that never comes back: after the retry budget qt-run stops with one error line,
    exit 1, the summary written, and the mp4 it wrote so far finished under its name and playable."""
    port = free_udp_port()
    out, summary = tmp_path / "out.mp4", tmp_path / "s.json"
    sender = serve_udp(clip, port)
    reader = subprocess.Popen(
        qt_run(str(artifact), "--source", f"udp://127.0.0.1:{port}", "--sink", str(out), "--codec", "ffmpeg",
               "--summary", str(summary), "--read-timeout", "1", "--open-timeout", "1",
               "--retry-max-tries", "3", "--retry-max-seconds", "6"),
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(p.stat().st_size > 3000 for p in tmp_path.glob(".out.*.partial.mp4")), reader,
                 "frames in the video")
        sender.send_signal(signal.SIGSTOP)  # frozen for good
        rc, err = finish(reader)
    finally:
        sender.send_signal(signal.SIGCONT)
        stop_proc(sender)
    assert rc == 1, err
    assert "no frames for" in one_line_error(err) and "reconnect tries" in err
    data = json.loads(summary.read_text())
    assert data["end"] == "error" and data["gaps"]["count"] == 0 and data["frames_out"] > 0, data
    assert not list(tmp_path.glob(".out.*")), "the temporary name was left behind"
    assert count_frames(out, exact=True) == data["frames_out"]


# -- damaged packets ----------------------------------------------------------------------------------

class CorruptingRelay:
    """UDP 127.0.0.1:``in_port`` -> 127.0.0.1:``out_port``, flipping bytes inside ``rate`` of the
    datagrams (never the TS sync bytes, so the demuxer keeps its framing and the codec sees the damage)."""

    def __init__(self, out_port: int, rate: float, seed: int = 0) -> None:
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.rx.settimeout(0.2)
        self.in_port = self.rx.getsockname()[1]
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.out_port, self.rate = out_port, rate
        self.rng = random.Random(seed)
        self.packets = self.damaged = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = bytearray(self.rx.recv(65536))
            except OSError:  # includes the receive timeout
                continue
            self.packets += 1
            if self.rng.random() < self.rate:
                self.damaged += 1
                for _ in range(8):
                    i = self.rng.randrange(len(data))
                    if i % 188:
                        data[i] ^= 0xFF
            self.tx.sendto(bytes(data), ("127.0.0.1", self.out_port))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.rx.close()
        self.tx.close()


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_damaged_packets_do_not_stop_the_stream(artifact, clip, tmp_path, rate):
    """5 % and 30 % of the datagrams damaged in flight: FFmpeg conceals what it can (those frames
    come through OpenCV looking whole), reads it gives up on are retried on the same connection and
    counted as corrupt frames; qt-run never crashes and keeps restoring the stream."""
    out_port = free_udp_port()
    relay = CorruptingRelay(out_port, rate)
    sender = serve_udp(clip, relay.in_port)
    summary = tmp_path / "s.json"
    try:
        res = subprocess.run(
            qt_run(str(artifact), "--source", f"udp://127.0.0.1:{out_port}", "--sink", str(tmp_path / "f") + "/",
                   "--max-frames", "80", "--summary", str(summary), "--read-timeout", "2", "--open-timeout", "5",
                   "--retry-max-seconds", "60"),
            env=env(), capture_output=True, text=True, timeout=120)
    finally:
        stop_proc(sender)
        relay.close()
    assert relay.damaged > 0
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    data = json.loads(summary.read_text())
    print(f"rate {rate}: {relay.damaged} of {relay.packets} datagrams damaged; corrupt frames "
          f"{data['corrupt_frames_skipped']}, reconnects {data['reconnects']}")
    assert data["frames_out"] == 80 and len(list((tmp_path / "f").glob("*.png"))) == 80
    assert isinstance(data["corrupt_frames_skipped"], int) and data["corrupt_frames_skipped"] >= 0


class FailingReads(Source):
    """A live source whose reads fail at once ``fails`` times between good frames (what OpenCV
    returns when the decoder rejects damaged packets), and whose reconnects are counted."""

    kind = "test"
    live = True

    def __init__(self, fails: int, opts: SourceOptions) -> None:
        super().__init__("test://failing", opts)
        self.fails, self.pos, self.opens = fails, 0, 0
        self.frame = np.full((16, 24, 3), 100, np.uint8)

    def _open(self) -> None:
        self.opens += 1

    def _read(self):
        self.pos += 1
        return (True, self.frame) if self.pos % (self.fails + 1) == 0 else (False, None)

    def _failed_fast(self, seconds: float) -> bool:
        return True

    def _close(self) -> None:
        pass


def test_fast_failed_reads_are_corrupt_frames_not_reconnects():
    opts = SourceOptions(max_fast_failures=5, backoff_initial_s=0.01)
    src = FailingReads(2, opts).open()
    frames = [f for _, f in zip(range(10), src.frames(), strict=False)]
    assert len(frames) == 10 and src.health.corrupt == 20 and src.health.reconnects == 0 and src.opens == 1
    many = FailingReads(8, opts).open()  # more than 5 in a row: the connection is reopened
    frames = [f for _, f in zip(range(3), many.frames(), strict=False)]
    assert len(frames) == 3 and many.health.reconnects >= 1


# -- resolution change ------------------------------------------------------------------------------

def test_resolution_change_mid_stream_is_reported_and_letterboxed(artifact, clip, tmp_path):
    """The camera comes back at another size and aspect (160x96 -> 240x96): the source reports the
    change, the model runs at the new size, and the mp4 (one size per file) gets the new frames
    letterboxed into 160x96, never stretched; every frame is in the file."""
    wide = make_clip(tmp_path / "wide.mp4", 240, 96)
    port = free_udp_port()
    out, summary = tmp_path / "out.mp4", tmp_path / "s.json"
    sender = serve_udp(clip, port)
    reader = subprocess.Popen(
        qt_run(str(artifact), "--source", f"udp://127.0.0.1:{port}", "--sink", str(out), "--codec", "ffmpeg",
               "--max-frames", "150", "--summary", str(summary), "--read-timeout", "1", "--open-timeout", "3",
               "--retry-max-seconds", "30"),
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(p.stat().st_size > 3000 for p in tmp_path.glob(".out.*.partial.mp4")), reader,
                 "frames in the video")
        stop_proc(sender)
        time.sleep(2.0)
        sender = serve_udp(wide, port)
        rc, err = finish(reader)
    finally:
        stop_proc(sender)
    assert rc == 0, err
    data = json.loads(summary.read_text())
    changes = data["resolution_changes"]
    assert changes["count"] == 1 and changes["recent"][0]["from"] == "160x96", changes
    assert changes["recent"][0]["to"] == "240x96" and changes["sink_refitted_frames"] > 0, changes
    assert count_frames(out, exact=True) == 150
    cap = cv2.VideoCapture(str(out))
    last = None
    while (got := cap.read())[0]:
        last = got[1]
    cap.release()
    assert last.shape == (96, 160, 3)
    # 240x96 fitted into 160x96 is 160x64: 16 black rows above and below, the picture between
    assert last[:12].max() < 40 and last[-12:].max() < 40 and last[24:72].mean() > 50


def test_size_change_needs_a_second_frame_to_count():
    """One odd-sized frame is a damaged one (counted corrupt); two in a row are a new size."""
    from tests.test_runtime_pipeline import ListSource

    a, b = np.zeros((16, 24, 3), np.uint8), np.zeros((20, 20, 3), np.uint8)
    src = ListSource([a, a, b, a, a, b, b, b]).open()
    frames = list(src.frames())
    assert [f.image.shape[:2] for f in frames] == [(16, 24)] * 4 + [(20, 20)] * 3
    assert src.health.corrupt == 1
    (change,) = src.health.take_size_changes()
    assert change.frame == 4 and change.before == (16, 24) and change.after == (20, 20)


def test_letterbox_keeps_the_aspect():
    img = np.full((96, 240, 3), 200, np.uint8)
    out = letterbox(img, (96, 160))
    assert out.shape == (96, 160, 3) and out[:16].max() == 0 and out[-16:].max() == 0 and out[16:80].min() == 200


# -- a sink whose disk fills -----------------------------------------------------------------------

def mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, check=False).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small"
    if not mount_tmpfs(mnt, "8m"):
        pytest.skip("mounting a tmpfs needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture(scope="module")
def noisy_clip(tmp_path_factory) -> Path:
    """Noise compresses badly: a few seconds of it fill a small disk."""
    path = tmp_path_factory.mktemp("noisy") / "noise.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
    rng = np.random.default_rng(0)
    for _ in range(20):
        writer.write(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize("codec,name", [("ffmpeg", "out.mp4"), ("opencv", "out.avi")])
def test_disk_filling_up_stops_cleanly_and_the_video_plays(artifact, noisy_clip, small_disk, tmp_path, codec, name):
    """An 8 MB disk: qt-run stops before it is full with one error line (exit 1), finishes the file
    under its name (no temporary left) and every frame it counted is in it."""
    out, summary = small_disk / name, tmp_path / "s.json"
    res = subprocess.run(qt_run(str(artifact), "--source", str(noisy_clip), "--loop", "--sink", str(out),
                                "--codec", codec, "--summary", str(summary), "--no-progress"),
                         env=env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "disk nearly full" in one_line_error(res.stderr)
    data = json.loads(summary.read_text())
    assert data["end"] == "error" and data["frames_out"] > 0
    assert out.exists() and not list(small_disk.glob(f".{out.stem}.*"))
    assert count_frames(out, exact=True) == data["frames_out"]


def test_a_disk_full_under_ffmpeg_leaves_a_playable_mp4(small_disk):
    """With the free-space check off, the disk really fills under the ffmpeg writer (ENOSPC): the
    write fails with a SinkError naming it, and the fragmented MP4 plays up to its last fragment."""
    out = small_disk / "full.mp4"
    sink = VideoFileSink(str(out), SinkOptions(fps=25, codec="ffmpeg", min_free_bytes=0))
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    with pytest.raises(SinkError, match="No space left on device"):
        for i in range(100_000):
            frame = np.roll(frame, 7, axis=1)
            sink.write(frame, frame, i)
    sink.close()
    assert out.exists() and sink.frames > 25
    assert count_frames(out, exact=True) >= 25  # at least the first whole fragment


def test_a_folder_of_mixed_sizes_passes_every_image(tmp_path):
    """Images of a folder are independent: each size is taken as it is and each change recorded."""
    from qt_runtime.sources import FolderSource

    for i, (h, w) in enumerate([(16, 24), (20, 20), (16, 24), (20, 20)]):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((h, w, 3), 90, np.uint8))
    src = FolderSource(str(tmp_path), SourceOptions()).open()
    assert [f.image.shape[:2] for f in src.frames()] == [(16, 24), (20, 20), (16, 24), (20, 20)]
    assert src.health.corrupt == 0 and len(src.health.take_size_changes()) == 3
