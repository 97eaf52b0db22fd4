"""Real streams, loopback only: qt-run as a subprocess on video files, UDP MPEG-TS served by ffmpeg on
127.0.0.1 (killed mid-stream and restarted), HTTP MJPEG from our own sink, and SIGTERM mid-write.

Every process is started and stopped by the test, every address is in 127.0.0.0/8, and each test
bounds its own time.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from qt_runtime.sinks import open_sink
from qt_runtime.sources import SourceOptions, open_source
from qt_train.data.video import count_frames
from tests.runtime_models import make_onnx_artifact

ROOT = Path(__file__).resolve().parents[1]
FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="needs the ffmpeg binary (make sysdeps)")


def qt_run(*args: str) -> list[str]:
    return [sys.executable, "-m", "qt_runtime.cli", *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e["OMP_NUM_THREADS"] = "1"  # the machine is shared with a benchmark: keep tests light
    return e


def free_udp_port() -> int:
    """A free UDP port for a listener that starts later, taken *below* the kernel's ephemeral range.
    A port from bind(0) lies inside that range, and until the listener binds it any socket opened
    meanwhile (FFmpeg's sender, a relay's sockets) can be handed the same number: a flaky "address
    already in use" (seen in tests/test_stream_faults.py)."""
    low = 32768  # Linux's default start of the ephemeral range
    with contextlib.suppress(OSError, ValueError, IndexError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 10000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free UDP port below the ephemeral range (starts at {low})")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return make_onnx_artifact(tmp_path_factory.mktemp("art") / "tiny")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 50-frame 160x96 mp4v clip at 25 fps: a moving green box on a brightening background."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (160, 96))
    assert writer.isOpened()
    for i in range(50):
        f = np.full((96, 160, 3), 40 + 3 * i, np.uint8)
        cv2.rectangle(f, (2 * i, 20), (2 * i + 30, 50), (0, 255, 0), -1)
        writer.write(f)
    writer.release()
    return path


def serve_udp(clip: Path, port: int) -> subprocess.Popen:
    """ffmpeg plays ``clip`` in a loop at real time as MPEG-TS to udp://127.0.0.1:port."""
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
           "-c:v", "mpeg2video", "-q:v", "4", "-g", "10", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_proc(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_qt_run_file_to_file(artifact, clip, tmp_path):
    out, summary = tmp_path / "out.avi", tmp_path / "summary.json"
    res = subprocess.run(qt_run(str(artifact), "--source", str(clip), "--sink", str(out), "--summary", str(summary),
                                "--no-progress"), env=env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    data = json.loads(summary.read_text())
    assert data["frames_out"] == 50 and data["dropped_frames"] == 0 and data["source"]["live"] is False
    assert count_frames(out, exact=True) == 50


@needs_ffmpeg
def test_qt_run_reads_udp_stream(artifact, clip, tmp_path):
    port = free_udp_port()
    sender = serve_udp(clip, port)
    try:
        summary = tmp_path / "s.json"
        res = subprocess.run(qt_run(str(artifact), "--source", f"udp://127.0.0.1:{port}", "--sink", "null",
                                    "--max-frames", "20", "--summary", str(summary), "--read-timeout", "2"),
                             env=env(), capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        data = json.loads(summary.read_text())
        assert data["frames_out"] == 20 and data["source"]["live"] is True and data["end"] == "max_frames"
    finally:
        stop_proc(sender)


@pytest.mark.slow
@needs_ffmpeg
def test_udp_stream_killed_and_restarted_reconnects_and_reports_gap(artifact, clip, tmp_path):
    port = free_udp_port()
    frames_dir, summary = tmp_path / "frames", tmp_path / "s.json"
    sender = serve_udp(clip, port)
    reader = subprocess.Popen(
        qt_run(str(artifact), "--source", f"udp://127.0.0.1:{port}", "--sink", str(frames_dir) + "/",
               "--max-frames", "40", "--summary", str(summary), "--read-timeout", "1", "--open-timeout", "2",
               "--retry-max-seconds", "20"),
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while len(list(frames_dir.glob("*.png"))) < 10:  # the stream is flowing through qt-run
            assert time.monotonic() < deadline and reader.poll() is None, "qt-run produced no frames"
            time.sleep(0.1)
        stop_proc(sender)  # the camera dies mid-stream
        time.sleep(2.0)
        sender = serve_udp(clip, port)  # ... and comes back
        _, err = reader.communicate(timeout=25)
        assert reader.returncode == 0, err
    finally:
        stop_proc(sender)
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    data = json.loads(summary.read_text())
    print("gaps:", data["gaps"], "reconnects:", data["reconnects"])
    assert data["frames_out"] == 40 and data["reconnects"] >= 1
    assert data["gaps"]["count"] >= 1 and data["gaps"]["total_s"] >= 1.5
    assert len(list(frames_dir.glob("*.png"))) == 40


def test_mjpeg_sink_served_on_loopback_is_readable_as_a_source(tmp_path):
    sink = open_sink("mjpeg://127.0.0.1:0")
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set():
            img = np.full((48, 64, 3), (7 * i) % 256, np.uint8)
            sink.write(img, img, i)
            i += 1
            time.sleep(0.02)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        src = open_source(f"http://127.0.0.1:{sink.port}/", SourceOptions(read_timeout_s=2, open_timeout_s=3))
        assert src.live and src.kind == "url"
        got = []
        for frame in src.frames():
            got.append(frame.image.shape)
            if len(got) == 10:
                break
        src.close()
        assert got == [(48, 64, 3)] * 10
    finally:
        stop.set()
        feeder.join(timeout=5)
        sink.close()


@needs_ffmpeg
@pytest.mark.slow
def test_udp_sink_stream_is_readable(artifact, clip, tmp_path):
    port = free_udp_port()
    writer = subprocess.Popen(qt_run(str(artifact), "--source", str(clip), "--loop", "--sink",
                                     f"udp://127.0.0.1:{port}", "--fps", "25", "--no-progress", "--max-frames", "400"),
                              env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        src = open_source(f"udp://127.0.0.1:{port}", SourceOptions(read_timeout_s=3, open_timeout_s=10))
        for frame in src.frames():
            assert frame.image.shape == (96, 160, 3)
            if frame.index == 9:
                break
        src.close()
    finally:
        writer.send_signal(signal.SIGTERM)
        writer.wait(timeout=20)


@pytest.mark.parametrize("codec", ["ffmpeg", "opencv"])
def test_sigterm_flushes_and_closes_the_mp4(artifact, clip, tmp_path, codec):
    if codec == "ffmpeg" and FFMPEG is None:
        pytest.skip("no ffmpeg")
    out = tmp_path / "out.mp4"
    summary = tmp_path / "s.json"
    proc = subprocess.Popen(qt_run(str(artifact), "--source", str(clip), "--loop", "--sink", str(out),
                                   "--codec", codec, "--no-progress", "--summary", str(summary)),
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not any(p.stat().st_size > 2000 for p in tmp_path.glob(".out.*.partial.mp4")):
            assert time.monotonic() < deadline and proc.poll() is None, "qt-run did not start writing"
            assert not out.exists()  # frames go to a temporary name until the sink closes
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    data = json.loads(summary.read_text())
    assert data["end"] == "stopped" and data["frames_out"] > 0
    assert count_frames(out, exact=True) == data["frames_out"]


def _png_bomb(path: Path, side: int) -> None:
    """A tiny PNG that declares side x side grey pixels of zeros (compresses ~1000:1)."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    idat = b"".join(z.compress(b"\0" * (side + 1)) for _ in range(side)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_folder_source_skips_a_decompression_bomb_and_a_broken_file(artifact, tmp_path):
    """A small PNG declaring 12000x12000 px is refused before decoding (it took seconds and GBs),
    and neither it nor a broken file ends the folder: both are counted as corrupt frames."""
    frames = tmp_path / "frames"
    frames.mkdir()
    good = np.full((96, 160, 3), 90, np.uint8)
    cv2.imwrite(str(frames / "0001.png"), good)
    _png_bomb(frames / "0002.png", 12000)
    (frames / "0003.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    cv2.imwrite(str(frames / "0004.png"), good)
    assert (frames / "0002.png").stat().st_size < 200_000
    summary = tmp_path / "s.json"
    res = subprocess.run(qt_run(str(artifact), "--source", str(frames), "--sink", str(tmp_path / "out") + "/",
                                "--summary", str(summary), "--no-progress"),
                         env=env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    data = json.loads(summary.read_text())
    assert data["frames_out"] == 2 and data["corrupt_frames_skipped"] == 2, data
    assert data["rss_mb"]["peak"] < 1024
