"""Shared pytest fixtures."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _slow_nncf_extension_build():
    """NNCF builds its torch extension on first use and gives up after 60 s; on a busy 2-core
    machine the build takes longer (seen: the QAT and Q/DQ tests timed out beside a training run).
    qt-export raises the limit the same way."""
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")
    from qt_runtime import telemetry

    telemetry.disable()  # as every entry point does: no telemetry from the test suite either
    yield


@pytest.fixture(autouse=True)
def _restore_sigchld():
    """Undo torch's process-wide SIGCHLD handler after every test.

    A DataLoader with workers installs a Python SIGCHLD handler for the rest of the process
    (``torch.utils.data._utils.signal_handling``). With any Python SIGCHLD handler in place (a
    no-op one does it too), a test that ran OpenVINO async requests (Python callbacks on
    OpenVINO's threads) followed by a test that spawned a subprocess could crash the interpreter
    (SIGSEGV or abort, intermittently) when the child exited: the "random" crash of the whole
    suite in one process (minimal case: ``test_datasets.py::test_paired_loader_two_workers``,
    ``test_runtime_core.py::test_infer_frames_validation_and_async``, ``::test_runtime_never_imports_torch``).
    """
    before = signal.getsignal(signal.SIGCHLD)
    yield
    if before is not None and signal.getsignal(signal.SIGCHLD) is not before:  # None: set outside Python
        signal.signal(signal.SIGCHLD, before)


def _noise_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth-ish random colour image (uint8) that compresses well but is not constant."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


@pytest.fixture
def make_rgb():
    """Factory: ``make_rgb(h, w, seed)`` -> uint8 RGB array."""
    return _noise_rgb


@pytest.fixture
def image_zoo(tmp_path: Path) -> dict[str, Path]:
    """Good and bad image files covering every case :func:`read_image` defines."""
    import cv2
    from PIL import Image

    d = tmp_path / "zoo"
    d.mkdir()
    rgb = _noise_rgb(48, 64)
    files: dict[str, Path] = {}

    def save(key: str, name: str, img: Image.Image, **kw) -> None:
        files[key] = d / name
        img.save(d / name, **kw)

    save("rgb", "rgb.png", Image.fromarray(rgb))
    save("jpg", "rgb.jpg", Image.fromarray(rgb), quality=95)
    save("gray", "gray.png", Image.fromarray(rgb[..., 1]))
    save("rgba", "rgba.png", Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])))
    save("palette", "palette.png", Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE))
    save("cmyk", "cmyk.jpg", Image.new("CMYK", (64, 48), (0, 255, 255, 0)))  # red in CMYK
    g16 = (np.linspace(0, 65535, 48 * 64).reshape(48, 64)).astype(np.uint16)
    files["gray16"] = d / "gray16.png"
    cv2.imwrite(str(files["gray16"]), g16)
    c16 = np.dstack([g16, g16[::-1], np.full_like(g16, 40000)])  # RGB order
    files["rgb16"] = d / "rgb16.png"
    cv2.imwrite(str(files["rgb16"]), c16[..., ::-1])

    png = files["rgb"].read_bytes()
    jpg = files["jpg"].read_bytes()
    files["trunc_png"] = d / "trunc_png.png"
    files["trunc_png"].write_bytes(png[: len(png) // 2])
    files["trunc_jpg"] = d / "trunc_jpg.jpg"
    files["trunc_jpg"].write_bytes(jpg[: len(jpg) // 2])
    files["empty"] = d / "empty.png"
    files["empty"].write_bytes(b"")
    files["corrupt"] = d / "corrupt.jpg"
    files["corrupt"].write_bytes(jpg[:20] + bytes(np.random.default_rng(1).integers(
        0, 256, 3000, dtype=np.uint8)))
    files["text"] = d / "notes.png"
    files["text"].write_text("this is not an image\n" * 20)
    return files


@pytest.fixture
def small_video(tmp_path: Path) -> Path:
    """A 20-frame 64x48 MJPG .avi whose frame i has brightness 10 * i."""
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for i in range(20):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    return path


# --- `gpu` marker (qt_runtime): skip GPU tests where TensorRT, cuda-python or a CUDA device is missing.
def _gpu_skip_reason() -> str | None:
    try:
        from qt_runtime.engine_build import gpu_name, import_cudart, import_tensorrt

        import_tensorrt()
        import_cudart()
        gpu_name(0)
    except Exception as exc:  # any failure means "no usable GPU here"
        return f"needs TensorRT + cuda-python + a CUDA GPU ({exc})"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    reason = _gpu_skip_reason()
    if reason is not None:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def offline(monkeypatch):
    """Every network connection attempt fails the test (nothing here may download)."""
    import socket

    def refuse(*_a, **_k):
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
