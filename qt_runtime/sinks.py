"""Frame sinks: one table maps a ``--sink`` string to where restored frames go.

Every sink takes ``write(original, restored, index)`` with RGB uint8 HxWx3 frames (the window shows
both side by side; the others keep only the restored one) and ``close()``, which must leave a
playable file behind however the run ends (the pipeline calls it on SIGINT/SIGTERM too). Sinks open
lazily on the first frame because the frame size is only known then.

Video files: H.264 through an ``ffmpeg`` subprocess when an ffmpeg binary with libx264 is on PATH,
else ``cv2.VideoWriter`` (mp4v for .mp4/.mov/.mkv, MJPG for .avi). Why prefer ffmpeg: pip builds of
OpenCV ship without an H.264 encoder (licensing), and mp4v files are several times larger at the same
quality and do not play in browsers. The child runs in its own session so a terminal Ctrl-C reaches
only us and we, not the signal, decide when its input ends and the MP4 trailer is written. MP4s are
fragmented (a fragment per second), so a file cut short by a full disk, a SIGKILL or a power loss
still plays up to its last whole fragment; and before each frame the sinks that write files check
the free space and stop cleanly (one-line error, the file finished and playable) when it runs low.

Files and streams hold one frame size. A source whose size changes mid-run (a camera mode switch, a
stream restarted at another size) is re-fitted explicitly: its frames are letterboxed into the size
the output opened with (aspect kept, black bars, never stretched) and counted in ``refitted``.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import shutil
import socketserver
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".m4v")
STREAM_SCHEMES = ("udp", "tcp", "rtp", "srt", "rtmp")


class SinkError(RuntimeError):
    """A sink cannot be opened or written (no display, no ffmpeg, unwritable path)."""


@dataclass(frozen=True)
class SinkOptions:
    """``fps``: frame rate written into files/streams (from the source, else 25). ``crf``: H.264
    quality (lower is better, 18 is visually lossless). ``jpeg_quality``: MJPEG stream quality.
    ``codec``: force ``"ffmpeg"`` or ``"opencv"`` for video files (default: ffmpeg when available).
    ``on_key``: called with each key pressed in the window (quality knob, quit). ``force``:
    replace an existing output video (refused otherwise). ``min_free_bytes``: file sinks stop
    (SinkError) when less than this plus two raw frames is free on the output's filesystem."""

    fps: float = 25.0
    crf: int = 20
    jpeg_quality: int = 85
    codec: str | None = None
    window_name: str = "qt-run: original | restored"
    image_ext: str = ".png"
    on_key: Callable[[int], None] | None = None
    force: bool = False
    min_free_bytes: int = 4 * 2**20


class Sink(Protocol):
    kind: str

    def write(self, original: np.ndarray, restored: np.ndarray, index: int) -> None: ...

    def close(self) -> None: ...


def ffmpeg_binary() -> str | None:
    return shutil.which("ffmpeg")


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def letterbox(rgb: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``rgb`` scaled to fit inside ``hw`` with its aspect kept, centred on black."""
    h, w = hw
    fh, fw = rgb.shape[:2]
    scale = min(h / fh, w / fw)
    nh, nw = max(1, min(h, round(fh * scale))), max(1, min(w, round(fw * scale)))
    out = np.zeros((h, w, 3), np.uint8)
    y, x = (h - nh) // 2, (w - nw) // 2
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out[y:y + nh, x:x + nw] = cv2.resize(rgb, (nw, nh), interpolation=interp)
    return out


def check_free_space(path: Path, frame_bytes: int, min_free: int, what: str) -> None:
    """SinkError when the filesystem holding ``path`` has less than ``min_free`` + two frames free:
    stopping before the disk is full leaves room to finish the file (trailer, index) so it plays."""
    if min_free <= 0:
        return
    try:
        st = os.statvfs(path)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if free < min_free + 2 * frame_bytes:
        raise SinkError(f"{what}: disk nearly full ({free / 2**20:.1f} MB free on the filesystem of {path}); "
                        "stopped writing and finished the file so it plays; free space or choose another --sink")


class NullSink:
    """Discards frames: benchmarks and dry runs."""

    kind = "null"

    def __init__(self, spec: str = "null", opts: SinkOptions | None = None) -> None:
        self.frames = 0

    def write(self, original: np.ndarray, restored: np.ndarray, index: int) -> None:
        self.frames += 1

    def close(self) -> None:
        pass


class FfmpegPipe:
    """An ffmpeg child fed raw RGB frames on stdin; :meth:`close` ends the input and waits for it."""

    def __init__(self, args: list[str], size: tuple[int, int], fps: float, what: str) -> None:
        exe = ffmpeg_binary()
        if exe is None:
            raise SinkError(f"{what} needs the ffmpeg binary on PATH (apt-get install ffmpeg)")
        w, h = size
        cmd = [exe, "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "pipe:0", *args]
        self.what = what
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, start_new_session=True)

    def write(self, rgb: np.ndarray) -> None:
        try:
            self._proc.stdin.write(np.ascontiguousarray(rgb).tobytes())
        except (BrokenPipeError, OSError) as exc:
            err = self._stderr()
            raise SinkError(f"{self.what}: ffmpeg stopped ({err or exc})") from exc

    def _stderr(self) -> str:
        try:
            self._proc.wait(timeout=5)
            return (self._proc.stderr.read() or b"").decode(errors="replace").strip().splitlines()[-1:][0]
        except (subprocess.TimeoutExpired, IndexError, ValueError, OSError):
            return ""

    def close(self, timeout: float = 30.0) -> None:
        if self._proc.stdin and not self._proc.stdin.closed:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stderr:
            self._proc.stderr.close()


class VideoFileSink:
    """Restored frames into a video file (see the module docstring for the codec choice)."""

    kind = "video"

    def __init__(self, spec: str, opts: SinkOptions) -> None:
        self.path = Path(spec)
        self.opts = opts
        if not self.path.parent.exists():
            raise SinkError(f"folder {self.path.parent} for sink {spec!r} does not exist")
        if self.path.exists() and not opts.force:
            raise SinkError(f"{self.path} already exists; pass --force to replace it or choose another --sink")
        # Frames go to a temporary name beside the target, renamed over it on close: an
        # interrupted run never leaves a half-written file under the name asked for.
        self.partial = self.path.with_name(f".{self.path.stem}.{os.getpid()}.partial{self.path.suffix}")
        codec = opts.codec or ("ffmpeg" if self.path.suffix.lower() != ".avi" and _has_x264() else "opencv")
        if codec not in ("ffmpeg", "opencv"):
            raise SinkError(f"unknown video codec route {codec!r}; use ffmpeg or opencv")
        self.codec = codec
        self._pipe: FfmpegPipe | None = None
        self._writer: cv2.VideoWriter | None = None
        self.hw: tuple[int, int] | None = None  # the size the file opened with
        self.frames = 0
        self.refitted = 0

    def _open(self, w: int, h: int) -> None:
        self.hw = (h, w)
        if self.codec == "ffmpeg":
            # yuv420p needs even sizes; pad by one pixel rather than fail on odd camera modes.
            # MP4/MOV: fragmented, a keyframe and a fragment every second, so a file cut short (full
            # disk, SIGKILL, power loss) plays up to its last whole fragment; MKV is robust as it is.
            gop = str(max(1, round(self.opts.fps)))
            mux = (["-movflags", "+frag_keyframe+empty_moov+default_base_moof"]
                   if self.path.suffix.lower() in (".mp4", ".mov", ".m4v") else [])
            mux += ["-flush_packets", "1"]  # each packet reaches the file at once, not in 32 KB blocks
            args = ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", "veryfast",
                    "-crf", str(self.opts.crf), "-pix_fmt", "yuv420p", "-g", gop, *mux, str(self.partial)]
            self._pipe = FfmpegPipe(args, (w, h), self.opts.fps, f"video sink {self.path}")
        else:
            fourcc = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
            writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*fourcc), self.opts.fps, (w, h))
            if not writer.isOpened():
                raise SinkError(f"cv2.VideoWriter cannot write {self.path} ({fourcc})")
            self._writer = writer

    def write(self, original: np.ndarray, restored: np.ndarray, index: int) -> None:
        if self.hw is not None and restored.shape[:2] != self.hw:
            restored = letterbox(restored, self.hw)
            self.refitted += 1
        check_free_space(self.partial.parent, restored.nbytes, self.opts.min_free_bytes, f"video sink {self.path}")
        if self._pipe is None and self._writer is None:
            self._open(restored.shape[1], restored.shape[0])
        if self._pipe is not None:
            self._pipe.write(restored)
        else:
            self._writer.write(_bgr(restored))
        self.frames += 1

    def close(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            # cv2.VideoWriter reports no write errors: frames "written" to a full disk left a 0-byte file
            if self.frames and (not self.partial.exists() or self.partial.stat().st_size == 0):
                with contextlib.suppress(OSError):
                    self.partial.unlink()
                raise SinkError(f"video sink {self.path}: cv2.VideoWriter wrote nothing for {self.frames} frames "
                                "(disk full or unwritable?)")
        if self.partial.exists() and self.frames == 0:  # a writer that failed on its first frame
            self.partial.unlink()
        if self.partial.exists():
            os.replace(self.partial, self.path)  # the finished, playable file appears at once


class ImageFolderSink:
    """One lossless image per frame, named by frame index so the order survives sorting."""

    kind = "folder"

    def __init__(self, spec: str, opts: SinkOptions) -> None:
        self.folder = Path(spec.rstrip("/") or "/")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ext = opts.image_ext
        self.min_free = opts.min_free_bytes
        self.frames = 0

    def write(self, original: np.ndarray, restored: np.ndarray, index: int) -> None:
        path = self.folder / f"{index:08d}{self.ext}"
        check_free_space(self.folder, restored.nbytes, self.min_free, f"folder sink {self.folder}")
        if not cv2.imwrite(str(path), _bgr(restored)):
            raise SinkError(f"cannot write {path}")
        self.frames += 1

    def close(self) -> None:
        pass


def display_available() -> bool:
    """True when a window can be shown: a display server is set and OpenCV has a GUI backend."""
    if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    return not re.search(r"GUI:\s*NONE", cv2.getBuildInformation())


class WindowSink:
    """Original | restored side by side in an OpenCV window; keys go to ``opts.on_key``."""

    kind = "window"

    def __init__(self, spec: str, opts: SinkOptions) -> None:
        if not display_available():
            raise SinkError("sink 'window' needs a display (DISPLAY/WAYLAND_DISPLAY unset) and an OpenCV "
                            "with a GUI backend (opencv-python, not -headless); use a file or udp:// sink")
        self.opts = opts
        self.name = spec.split(":", 1)[1] if ":" in spec else opts.window_name
        try:
            cv2.namedWindow(self.name, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise SinkError(f"cannot open a window: {exc}") from exc

    def write(self, original: np.ndarray, restored: np.ndarray, index: int) -> None:
        if original.shape != restored.shape:
            original = cv2.resize(original, (restored.shape[1], restored.shape[0]))
        cv2.imshow(self.name, _bgr(np.hstack([original, restored])))
        key = cv2.waitKey(1)
        if key >= 0 and self.opts.on_key is not None:
            self.opts.on_key(key & 0xFF)

    def close(self) -> None:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.name)


class StreamSink:
    """Restored frames as a network stream by an ffmpeg child: MPEG-TS over udp/tcp/srt, FLV to rtmp.

    MPEG-2 video inside MPEG-TS would need no licence-encumbered encoder, but H.264 is what players
    expect, so libx264 with ``zerolatency`` is used when present.
    """

    kind = "stream"

    def __init__(self, spec: str, opts: SinkOptions) -> None:
        self.url, self.opts = spec, opts
        if ffmpeg_binary() is None:
            raise SinkError(f"network sink {spec!r} needs the ffmpeg binary on PATH")
        self._pipe: FfmpegPipe | None = None
        self.hw: tuple[int, int] | None = None
        self.frames = 0
        self.refitted = 0

    def write(self, original: np.ndarray, restored: np.ndarray, index: int) -> None:
        if self._pipe is not None and restored.shape[:2] != self.hw:
            restored = letterbox(restored, self.hw)  # raw frames of another size would be misread
            self.refitted += 1
        if self._pipe is None:
            h, w = self.hw = restored.shape[:2]
            enc = (["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
                    "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-g", str(max(1, round(self.opts.fps)))]
                   if _has_x264() else ["-c:v", "mpeg2video", "-q:v", "4"])
            fmt = "flv" if self.url.startswith("rtmp") else "mpegts"
            url = self.url
            if url.startswith("udp://") and "pkt_size" not in url:
                url += ("&" if "?" in url else "?") + "pkt_size=1316"
            self._pipe = FfmpegPipe([*enc, "-f", fmt, url], (w, h), self.opts.fps, f"network sink {self.url}")
        self._pipe.write(restored)
        self.frames += 1

    def close(self) -> None:
        if self._pipe is not None:
            self._pipe.close(timeout=5)
            self._pipe = None


class _LatestJpeg:
    """The newest encoded frame and a condition that wakes client threads when it changes."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.seq = 0
        self.closed = False


class _MjpegHandler(http.server.BaseHTTPRequestHandler):
    latest: _LatestJpeg  # set on a per-server subclass
    boundary = "qtframe"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={self.boundary}")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        seen = 0
        latest = self.latest
        try:
            while True:
                with latest.cond:
                    latest.cond.wait_for(lambda s=seen: latest.closed or latest.seq != s, timeout=1.0)
                    if latest.closed:
                        return
                    if latest.seq == seen or latest.jpeg is None:
                        continue
                    jpeg, seen = latest.jpeg, latest.seq
                self.wfile.write(f"--{self.boundary}\r\nContent-Type: image/jpeg\r\n"
                                 f"Content-Length: {len(jpeg)}\r\n\r\n".encode("ascii"))
                self.wfile.write(jpeg)
                self.wfile.write(b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's naming)
        pass  # one line per request on stderr would drown the progress bar


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class MjpegHttpSink:
    """Serves the restored stream as MJPEG over HTTP (``mjpeg://HOST:PORT``): any browser or
    ``cv2.VideoCapture('http://HOST:PORT/')`` can watch it; slow clients skip frames, never queue them."""

    kind = "mjpeg"

    def __init__(self, spec: str, opts: SinkOptions) -> None:
        m = re.fullmatch(r"mjpeg://([^:/]*|\[[^\]]+\]):(\d+)/?", spec)
        if not m:
            raise SinkError(f"bad MJPEG sink {spec!r}; use mjpeg://HOST:PORT (e.g. mjpeg://127.0.0.1:8090)")
        host, port = m.group(1).strip("[]") or "127.0.0.1", int(m.group(2))
        self.opts = opts
        self._latest = _LatestJpeg()
        handler = type("Handler", (_MjpegHandler,), {"latest": self._latest})
        try:
            self._server = _Server((host, port), handler)
        except OSError as exc:
            raise SinkError(f"cannot serve MJPEG on {host}:{port}: {exc}") from exc
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="qt-mjpeg", daemon=True)
        self._thread.start()
        self.frames = 0

    def write(self, original: np.ndarray, restored: np.ndarray, index: int) -> None:
        ok, buf = cv2.imencode(".jpg", _bgr(restored), [cv2.IMWRITE_JPEG_QUALITY, self.opts.jpeg_quality])
        if not ok:
            raise SinkError("JPEG encoding failed")
        with self._latest.cond:
            self._latest.jpeg = buf.tobytes()
            self._latest.seq += 1
            self._latest.cond.notify_all()
        self.frames += 1

    def close(self) -> None:
        with self._latest.cond:
            self._latest.closed = True
            self._latest.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


_X264: list[bool] = []


def _has_x264() -> bool:
    """Whether the ffmpeg on PATH has libx264 (asked once per process, on first use)."""
    if not _X264:
        exe = ffmpeg_binary()
        ok = False
        if exe:
            try:
                out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, timeout=10).stdout
                ok = b"libx264" in out
            except (OSError, subprocess.TimeoutExpired):
                ok = False
        _X264.append(ok)
    return _X264[0]


# -- the table ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SinkKind:
    name: str
    example: str
    matches: Callable[[str], bool]
    make: Callable[[str, SinkOptions], Sink]


def _is_video(spec: str) -> bool:
    return Path(spec).suffix.lower() in VIDEO_SUFFIXES


def _is_stream(spec: str) -> bool:
    return re.match(rf"^({'|'.join(STREAM_SCHEMES)})://", spec) is not None


SINKS: tuple[SinkKind, ...] = (
    SinkKind("null", "null", lambda s: s == "null", NullSink),
    SinkKind("window", "window[:TITLE]", lambda s: s == "window" or s.startswith("window:"), WindowSink),
    SinkKind("mjpeg", "mjpeg://127.0.0.1:8090 (HTTP MJPEG server)", lambda s: s.startswith("mjpeg://"),
             MjpegHttpSink),
    SinkKind("stream", "udp://127.0.0.1:5000 | tcp:// | srt:// | rtmp:// (ffmpeg)", _is_stream, StreamSink),
    SinkKind("video", "out.mp4 | out.mkv | out.avi", _is_video, VideoFileSink),
    SinkKind("folder", "out_frames/ (one PNG per frame)", lambda s: not Path(s).suffix or s.endswith("/"),
             ImageFolderSink),
)


def open_sink(spec: str, opts: SinkOptions | None = None) -> Sink:
    """Match ``spec`` against :data:`SINKS` in order; SinkError when nothing matches or it cannot open."""
    opts = opts or SinkOptions()
    spec = str(spec).strip()
    for kind in SINKS:
        if kind.matches(spec):
            return kind.make(spec, opts)
    names = ", ".join(k.example for k in SINKS)
    raise SinkError(f"unrecognised sink {spec!r}; expected one of: {names}")
