"""Frame sources: one table maps a ``--source`` string to a kind, how it opens, and whether it is live.

Every source yields :class:`Frame` ``(index, timestamp, image)`` with ``image`` RGB uint8 HxWx3.
Live sources (camera, URL, GStreamer) are retried with exponential backoff when they stall or drop
and the gap is reported; files and folders end at their end. A frame that cannot be decoded or has
the wrong shape is skipped and counted, never passed on. Nothing opens at import time.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

#: The largest frame the runtime decodes (8K is 33 MP): a 766-byte PNG can declare 20000x20000 px
#: and took seconds and gigabytes before failing. This OpenCV reads ``OPENCV_IO_MAX_IMAGE_PIXELS``
#: once, when the library loads (checked: set after ``import cv2`` it has no effect), so it is set
#: here, before this module imports cv2; a decoded frame over the limit is refused as well.
MAX_FRAME_PIXELS = 64 * 2**20
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_FRAME_PIXELS))

import cv2  # noqa: E402 (after the pixel limit)
import numpy as np  # noqa: E402

from qt_core.media import IMAGE_EXTS  # noqa: E402
from qt_runtime.stats import Gap, SizeChange  # noqa: E402

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "rtp", "srt")


class SourceError(RuntimeError):
    """A source cannot be opened, or a live source stayed down longer than its retry budget."""


class Frame(NamedTuple):
    """``timestamp``: media time in seconds for files/folders, wall-clock seconds for live sources."""

    index: int
    timestamp: float
    image: np.ndarray


@dataclass(frozen=True)
class SourceOptions:
    """Retry budget and timeouts.

    ``retry_max_tries``/``retry_max_seconds``: give up on a dead live source after this many reopen
    attempts or this long without a frame, whichever comes first. Backoff doubles from
    ``backoff_initial_s`` up to ``backoff_max_s``. ``read_timeout_s`` turns a stalled network stream
    into a read failure (FFMPEG backend) so it can be retried instead of hanging forever.
    ``max_corrupt_run``: this many undecodable frames in a row end a file (it is damaged beyond use).
    ``max_fast_failures``: live reads that fail at once (damaged packets) retried on the same
    connection before it is reopened.
    ``loop``: rewind files at their end (demos, soak tests). ``width``/``height``/``fps``: requested
    camera mode (cameras may ignore it). ``decode_threads``: FFmpeg decoder threads for files and
    URLs (None: FFmpeg's choice, one per core; 1 costs less CPU per frame where the model already
    uses every core).
    """

    retry_max_tries: int = 10
    retry_max_seconds: float = 60.0
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 4.0
    open_timeout_s: float = 5.0
    read_timeout_s: float = 2.0
    max_corrupt_run: int = 50
    max_fast_failures: int = 5
    loop: bool = False
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    decode_threads: int | None = None


@dataclass
class SourceHealth:
    """What went wrong so far; written by the capture thread only."""

    corrupt: int = 0
    reconnects: int = 0
    gaps: list[Gap] = field(default_factory=list)  # drained by the pipeline after each frame
    size_changes: list[SizeChange] = field(default_factory=list)  # drained likewise

    def take_gaps(self) -> list[Gap]:
        gaps, self.gaps = self.gaps, []
        return gaps

    def take_size_changes(self) -> list[SizeChange]:
        changes, self.size_changes = self.size_changes, []
        return changes


def backoff_delays(opts: SourceOptions) -> Iterator[float]:
    """Delays before each reopen attempt: initial, doubled each time, capped; ``retry_max_tries`` of them."""
    delay = opts.backoff_initial_s
    for _ in range(opts.retry_max_tries):
        yield delay
        delay = min(delay * 2.0, opts.backoff_max_s)


def to_rgb(frame: np.ndarray | None, expect_hw: tuple[int, int] | None = None) -> np.ndarray | None:
    """BGR/BGRA/gray uint8 from OpenCV -> RGB uint8; None when it is not a usable frame.

    16-bit frames are scaled to 8 bits. A frame whose size differs from ``expect_hw`` (the stream's
    first frame) is treated as corrupt: half-decoded frames come out that way.
    """
    if frame is None or not isinstance(frame, np.ndarray) or frame.size == 0:
        return None
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    elif frame.dtype != np.uint8:
        return None
    if frame.ndim == 2:
        rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    elif frame.ndim == 3 and frame.shape[2] == 3:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    elif frame.ndim == 3 and frame.shape[2] == 1:
        rgb = cv2.cvtColor(frame[..., 0], cv2.COLOR_GRAY2RGB)
    else:
        return None
    if expect_hw is not None and rgb.shape[:2] != expect_hw:
        return None
    return rgb


class Source:
    """Base: subclasses implement ``_open``/``_read``/``_close``; :meth:`frames` adds the policy.

    ``_read`` returns ``(ok, raw)``: ``ok`` False means the stream ended (file) or stalled/dropped
    (live); ``ok`` True with an unusable ``raw`` is a corrupt frame.
    """

    kind = "base"
    live = False
    confirm_size_changes = True  # a video decoder's odd-sized frame is a damaged one until a second confirms

    def __init__(self, spec: str, opts: SourceOptions) -> None:
        self.spec = spec
        self.opts = opts
        self.health = SourceHealth()
        self.fps: float | None = None
        self.frame_count: int | None = None
        self._pending: np.ndarray | None = None  # the frame that proved a reconnect worked
        self._last_frame = time.monotonic()  # a gap starts at the last good frame, not at the timeout

    # subclass hooks -----------------------------------------------------------------------------
    def _open(self) -> None:
        raise NotImplementedError

    def _read(self) -> tuple[bool, np.ndarray | None]:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _rewind(self) -> bool:
        """Go back to the first frame (``loop``); False where the source cannot."""
        self._close()
        self._open()
        return True

    def _timestamp(self, index: int) -> float:
        return time.time() if self.live else index / (self.fps or 25.0)

    # public -------------------------------------------------------------------------------------
    def open(self) -> Source:
        """Open once, before the pipeline starts, so a wrong source is an error before any frame."""
        self._open()
        return self

    def close(self) -> None:
        self._close()

    def __enter__(self) -> Source:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def frames(self, stop: threading.Event | None = None) -> Iterator[Frame]:
        """Yield frames until the end, ``stop``, or a live source that stays down; skip corrupt ones.

        A frame of another size is held back until the next frame confirms the new size (a lone odd
        frame is a half-decoded one: corrupt); a confirmed change is recorded in ``health`` and both
        frames are yielded at the new size. A live read that fails at once (damaged data the decoder
        gave up on, not a stall) is retried on the same connection up to ``max_fast_failures`` times
        and counted as a corrupt frame when a frame follows; longer runs and timed-out reads reconnect.
        """
        stop = stop or threading.Event()
        index = 0
        corrupt_run = 0
        fast_failures = 0
        expect_hw: tuple[int, int] | None = None
        candidate: np.ndarray | None = None  # a frame at a new size, waiting for a second one
        while not stop.is_set():
            if self._pending is not None:
                ok, raw, self._pending = True, self._pending, None
            else:
                t0 = time.monotonic()
                ok, raw = self._read()
                if not ok and self.live and self._failed_fast(time.monotonic() - t0) \
                        and fast_failures < self.opts.max_fast_failures:
                    fast_failures += 1
                    continue
            if not ok:
                fast_failures = 0
                if candidate is not None:
                    self.health.corrupt += 1
                    candidate = None
                if self.live:
                    self._reconnect(stop)
                    continue  # a restarted stream may come back at another size: the check below sees it
                if self.opts.loop and index > 0 and self._rewind():
                    continue
                return
            self.health.corrupt += fast_failures
            fast_failures = 0
            rgb = to_rgb(raw)
            if rgb is not None and expect_hw is not None and rgb.shape[:2] != expect_hw:
                if self.confirm_size_changes and (candidate is None or candidate.shape[:2] != rgb.shape[:2]):
                    if candidate is not None:
                        self.health.corrupt += 1
                    candidate = rgb  # wait for the next frame to confirm (or refute) the new size
                    continue
                self.health.size_changes.append(SizeChange(index, expect_hw, rgb.shape[:2]))
                if candidate is not None:  # confirmed: the held frame goes first
                    held, candidate = candidate, None
                    self._last_frame = time.monotonic()
                    yield Frame(index, self._timestamp(index), held)
                    index += 1
            elif rgb is not None and candidate is not None:  # back at the old size: the odd one was damaged
                self.health.corrupt += 1
                candidate = None
            if rgb is None:
                self.health.corrupt += 1
                corrupt_run += 1
                if corrupt_run >= self.opts.max_corrupt_run:
                    if self.live:
                        self._reconnect(stop)
                        corrupt_run = 0
                        continue
                    raise SourceError(f"{self.spec}: {corrupt_run} undecodable frames in a row")
                continue
            corrupt_run = 0
            expect_hw = rgb.shape[:2]
            self._last_frame = time.monotonic()
            yield Frame(index, self._timestamp(index), rgb)
            index += 1

    def _failed_fast(self, seconds: float) -> bool:
        """Whether a failed live read was damaged data rather than a stall or a drop (see subclasses)."""
        return False

    def _reconnect(self, stop: threading.Event) -> None:
        """Reopen with exponential backoff; record the gap; raise SourceError when the budget is spent."""
        down_since = min(self._last_frame, time.monotonic())
        wall_since = time.time() - (time.monotonic() - down_since)
        tries = 0
        self._close()
        for delay in backoff_delays(self.opts):
            if stop.wait(delay):
                return
            tries += 1
            try:
                self._open()
                ok, raw = self._peek()
            except SourceError:
                ok = False
            if ok:
                self.health.reconnects += 1
                self.health.gaps.append(Gap(wall_since, time.monotonic() - down_since, tries))
                self._pending = raw
                return
            self._close()
            if time.monotonic() - down_since > self.opts.retry_max_seconds:
                break
        raise SourceError(
            f"{self.spec}: no frames for {time.monotonic() - down_since:.1f} s after {tries} reconnect tries"
        )

    def _peek(self) -> tuple[bool, np.ndarray | None]:
        """Read one frame right after reopening to prove the stream is really back."""
        return self._read()


class CaptureSource(Source):
    """Anything ``cv2.VideoCapture`` opens: camera, file, URL, GStreamer pipeline."""

    def __init__(self, spec: str, opts: SourceOptions, kind: str, live: bool,
                 target: int | str, api: int, params: tuple[int, ...] = ()) -> None:
        super().__init__(spec, opts)
        self.kind, self.live = kind, live
        self._target, self._api, self._params = target, api, params
        self._cap: cv2.VideoCapture | None = None

    def _open(self) -> None:
        cap = cv2.VideoCapture(self._target, self._api, list(self._params))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.kind} source {self.spec!r}")
        if self.kind == "camera":
            for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, self.opts.width),
                                (cv2.CAP_PROP_FRAME_HEIGHT, self.opts.height), (cv2.CAP_PROP_FPS, self.opts.fps)):
                if value:
                    cap.set(prop, value)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # we want the newest frame, not a queue of old ones
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if (not self.live and count > 0) else None
        self._cap = cap

    def _read(self) -> tuple[bool, np.ndarray | None]:
        if self._cap is None:
            return False, None
        ok, raw = self._cap.read()
        if not ok and not self.live and self._cap is not None:
            # A failed read before the last frame is a damaged frame, not the end of the file.
            pos = self._cap.get(cv2.CAP_PROP_POS_FRAMES)
            if self.frame_count and pos < self.frame_count - 1 and self._cap.grab():
                return True, None
        return ok, raw

    def _failed_fast(self, seconds: float) -> bool:
        """OpenCV's FFmpeg reader returns False at once when the decoder rejects damaged packets and
        only after ``read_timeout_s`` when nothing arrives; a closed connection also fails at once, so
        the retries are bounded (``max_fast_failures``) before a reconnect."""
        return self._cap is not None and seconds < min(0.5, 0.25 * self.opts.read_timeout_s)

    def _timestamp(self, index: int) -> float:
        if not self.live and self._cap is not None:
            msec = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            if msec > 0 or index == 0:
                return msec / 1000.0
        return super()._timestamp(index)

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def limit_decoded_pixels() -> None:
    """Make OpenCV refuse images over ``MAX_FRAME_PIXELS`` before decoding them (unless the user
    set ``OPENCV_IO_MAX_IMAGE_PIXELS`` already). Importing this module already did, before cv2
    loaded; the call stays for callers that set up a process explicitly."""
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_FRAME_PIXELS))


class FolderSource(Source):
    """Images of a folder in sorted name order; an unreadable file is a corrupt frame."""

    kind = "folder"
    live = False
    confirm_size_changes = False

    def __init__(self, spec: str, opts: SourceOptions) -> None:
        super().__init__(spec, opts)
        self._files: list[Path] = []
        self._next = 0

    def _open(self) -> None:
        limit_decoded_pixels()
        folder = Path(self.spec)
        self._files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not self._files:
            raise SourceError(f"no images ({', '.join(IMAGE_EXTS)}) in folder {folder}")
        self._next = 0
        self.frame_count = len(self._files)
        self.fps = self.opts.fps

    def _read(self) -> tuple[bool, np.ndarray | None]:
        if self._next >= len(self._files):
            return False, None
        path = self._files[self._next]
        self._next += 1
        try:
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        except cv2.error:  # over the pixel limit, or a decoder assertion: one corrupt frame, not the end
            return True, None
        if image is not None and image.shape[0] * image.shape[1] > MAX_FRAME_PIXELS:
            return True, None  # cv2 loaded before the limit was set (or a user limit above ours)
        return True, image

    def _rewind(self) -> bool:
        self._next = 0
        return True

    def _close(self) -> None:
        self._next = len(self._files)


# -- the table ------------------------------------------------------------------------------------

def jetson_csi_pipeline(sensor_id: int = 0, width: int = 1920, height: int = 1080, fps: int = 30,
                        flip: int = 0) -> str:
    """GStreamer string for a Jetson CSI camera (nvarguscamerasrc) ending in a BGR appsink.

    ``drop=true max-buffers=1`` keeps only the newest frame in GStreamer as well, matching the
    pipeline's latest-frame policy.
    """
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1,format=NV12 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=true max-buffers=1 sync=false"
    )


def opencv_has_gstreamer() -> bool:
    info = cv2.getBuildInformation()
    match = re.search(r"GStreamer:\s*(\S+)", info)
    return bool(match) and match.group(1).upper() not in ("NO", "NONE")


def _parse_jetson(spec: str) -> str:
    """``jetson-csi[:SENSOR][:WxH][@FPS]`` -> pipeline string."""
    m = re.fullmatch(r"jetson-csi(?::(\d+))?(?::(\d+)x(\d+))?(?:@(\d+))?", spec)
    if not m:
        raise SourceError(f"bad jetson-csi preset {spec!r}; use jetson-csi[:SENSOR][:WxH][@FPS]")
    sensor, w, h, fps = m.groups()
    return jetson_csi_pipeline(int(sensor or 0), int(w or 1920), int(h or 1080), int(fps or 30))


def _is_camera(spec: str) -> bool:
    return spec.isdigit() or re.fullmatch(r"/dev/video\d+", spec) is not None


def _is_gstreamer(spec: str) -> bool:
    return spec.startswith("jetson-csi") or "appsink" in spec or " ! " in spec


def _is_url(spec: str) -> bool:
    return re.match(rf"^({'|'.join(URL_SCHEMES)})://", spec, re.IGNORECASE) is not None


def _open_camera(spec: str, opts: SourceOptions) -> Source:
    target: int | str = int(spec) if spec.isdigit() else spec
    return CaptureSource(spec, opts, "camera", True, target, cv2.CAP_V4L2)


def _open_gstreamer(spec: str, opts: SourceOptions) -> Source:
    pipeline = _parse_jetson(spec) if spec.startswith("jetson-csi") else spec
    if not opencv_has_gstreamer():
        raise SourceError(
            "this OpenCV build has no GStreamer support, so GStreamer pipelines (and the jetson-csi "
            "preset) cannot be opened; use an OpenCV built with GStreamer (JetPack's) or a V4L2/URL source"
        )
    return CaptureSource(spec, opts, "gstreamer", True, pipeline, cv2.CAP_GSTREAMER)


def _open_url(spec: str, opts: SourceOptions) -> Source:
    if spec.lower().startswith("rtsp") and "OPENCV_FFMPEG_CAPTURE_OPTIONS" not in os.environ:
        # UDP RTSP loses packets on busy links and shows smeared frames; TCP retransmits.
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp"
    params = (cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(opts.open_timeout_s * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(opts.read_timeout_s * 1000))
    return CaptureSource(spec, opts, "url", True, spec, cv2.CAP_FFMPEG, params + _decode_params(opts))


def _decode_params(opts: SourceOptions) -> tuple[int, ...]:
    if opts.decode_threads is None:
        return ()
    if opts.decode_threads < 1:
        raise SourceError("decode threads must be >= 1")
    return (cv2.CAP_PROP_N_THREADS, int(opts.decode_threads))


def _open_folder(spec: str, opts: SourceOptions) -> Source:
    return FolderSource(spec, opts)


def _open_file(spec: str, opts: SourceOptions) -> Source:
    if not Path(spec).is_file():
        raise SourceError(f"source {spec!r} is not a camera index, URL, GStreamer pipeline, folder or file")
    return CaptureSource(spec, opts, "file", False, spec, cv2.CAP_FFMPEG, _decode_params(opts))


@dataclass(frozen=True)
class SourceKind:
    name: str
    example: str
    live: bool
    matches: Callable[[str], bool]
    make: Callable[[str, SourceOptions], Source]


SOURCES: tuple[SourceKind, ...] = (
    SourceKind("camera", "0 | /dev/video0 (V4L2)", True, _is_camera, _open_camera),
    SourceKind("gstreamer", "'... ! appsink' | jetson-csi[:SENSOR][:WxH][@FPS]", True, _is_gstreamer, _open_gstreamer),
    SourceKind("url", "rtsp:// http:// udp:// tcp:// rtmp:// srt:// (FFMPEG)", True, _is_url, _open_url),
    SourceKind("folder", "a folder of images, read in sorted order", False, lambda s: Path(s).is_dir(), _open_folder),
    SourceKind("file", "a video file (anything FFMPEG decodes)", False, lambda s: True, _open_file),
)


def open_source(spec: str, opts: SourceOptions | None = None) -> Source:
    """Match ``spec`` against :data:`SOURCES` in order and open it; SourceError when it cannot be."""
    opts = opts or SourceOptions()
    spec = str(spec).strip()
    if not spec:
        raise SourceError("empty --source")
    for kind in SOURCES:
        if kind.matches(spec):
            return kind.make(spec, opts).open()
    raise SourceError(f"unrecognised source {spec!r}")  # unreachable: "file" matches everything
