"""Where member weights come from, and a guard that keeps metric construction offline.

Resolution of a member's ``weights_path``:
  * absolute (or ``~``) path: used as is;
  * relative path: the first existing file among ``weights_dir`` (argument),
    ``$QT_IQA_WEIGHTS``, and the bundled fitted assets ``qt_train/iqa/assets/`` (found by path
    next to the ``qt_train`` package, installed or not; qt_train does not import calibration).
A missing file raises FileNotFoundError naming the member, the file and every place searched.

Why ``check_weights_file``: pyiqa loads member weights with ``torch.load(weights_only=False)``,
which runs any code pickled into the file; a ``.pth`` dropped into ``$QT_IQA_WEIGHTS`` or into an
``iqa.weights_dir`` stored in a checkpoint would run through ``qt-iqa``, ``qt-eval`` and the export
gate. So every pickled torch file must load with ``weights_only=True`` (tensors and plain
containers only) before pyiqa sees it. A TorchScript archive (OpenAI's CLIP ``RN50.pt``) is not a
Python pickle: ``torch.jit.load`` runs it in the TorchScript interpreter, which cannot import
Python modules, so it is accepted as such. MATLAB files (checked by their header) are read by
``scipy.io.loadmat``, which runs no code.

Why a network guard: pyiqa constructors download weights when given none. Nothing here may
fetch from a hub, so metrics are built with socket connections and name lookups refused; a
metric that tries to download fails with a clear error instead.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from .spec import Member

WEIGHTS_ENV = "QT_IQA_WEIGHTS"
FETCH_HINT = (
    "`qt-iqa fetch --ensemble CFG --to DIR` downloads it on request (then set "
    f"{WEIGHTS_ENV}=DIR); or put the file in a folder yourself and set "
    f"{WEIGHTS_ENV}=DIR (or pass weights_dir=DIR)"
)


def bundled_assets_dir() -> Path:
    """The project's fitted IQA assets, shipped inside this package (``qt_train/iqa/assets``)."""
    return Path(__file__).resolve().parent / "assets"


def search_dirs(weights_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for a relative weights path, in order."""
    dirs = []
    if weights_dir is not None:
        dirs.append(Path(weights_dir).expanduser())
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(bundled_assets_dir())
    return dirs


def resolve_weights(member: Member, weights_dir: str | os.PathLike | None = None) -> Path | None:
    """Absolute path of the member's weights file, None if it needs none; raises if missing."""
    if member.weights_path is None:
        return None
    p = Path(member.weights_path).expanduser()
    candidates = [p] if p.is_absolute() else [d / p for d in search_dirs(weights_dir)]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    searched = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"IQA member {member.name!r}: weights file {member.weights_path!r} not found (searched: {searched}). "
        f"Nothing is downloaded automatically; {FETCH_HINT}."
    )


class UnsafeWeightsError(ValueError):
    """A weights file that could run code when loaded."""


#: MATLAB files (NIQE's pristine model) start so: v5 (scipy's loadmat) or v7.3 (HDF5).
_MAT_MAGIC = (b"MATLAB", b"\x89HDF")


def check_weights_file(path: Path) -> None:
    """Refuse a weights file that holds more than data (see the module docstring)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if path.suffix.lower() == ".mat" and head.startswith(_MAT_MAGIC):
        return  # read by scipy.io.loadmat, which runs no code (a pickle named .mat goes on below)
    import pickle

    import torch

    if _is_torchscript(path):
        # it must really load as TorchScript: a zip dressed up as one would otherwise reach the
        # loaders' fallback, a weights_only=False unpickling
        try:
            torch.jit.load(str(path), map_location="cpu")
            return
        except RuntimeError as exc:
            raise UnsafeWeightsError(f"IQA weights {path} look like TorchScript but do not load as it "
                                     f"({str(exc).splitlines()[0][:120]}); refused") from None
    try:
        torch.load(path, map_location="cpu", weights_only=True)
        return
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as exc:
        reason = str(exc).splitlines()[0][:160]
    raise UnsafeWeightsError(
        f"IQA weights {path} hold more than tensors ({reason}); loading them could run code, so they are "
        "refused. Re-save a plain state dict (torch.save(model.state_dict(), path)) or use the bundled asset"
    )


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive: a zip holding ``code/`` (the scripted program) and ``constants.pkl``."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any("/code/" in n for n in names) and any(n.endswith("/constants.pkl") for n in names)


class NetworkBlockedError(ConnectionError):
    """Raised by the guard when code tries to open a network connection."""


_guard_lock = threading.Lock()


@contextlib.contextmanager
def no_network(what: str) -> Iterator[None]:
    """Refuse socket connections and host-name lookups inside the block (process-wide).

    Used around metric construction only (short); the lock keeps nested/concurrent use sane.
    """

    def refuse(*_args, **_kwargs):
        raise NetworkBlockedError(
            f"{what} tried to use the network; QualiTeacher Edge never downloads implicitly"
        )

    with _guard_lock:
        saved = (
            socket.socket.connect,
            socket.socket.connect_ex,
            socket.getaddrinfo,
            socket.create_connection,
        )
        socket.socket.connect = refuse  # type: ignore[method-assign]
        socket.socket.connect_ex = refuse  # type: ignore[method-assign]
        socket.getaddrinfo = refuse  # type: ignore[assignment]
        socket.create_connection = refuse  # type: ignore[assignment]
        try:
            yield
        finally:
            (
                socket.socket.connect,
                socket.socket.connect_ex,
                socket.getaddrinfo,
                socket.create_connection,
            ) = saved
