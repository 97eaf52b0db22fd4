"""Atomic writes: a reader (or a crash) never sees a half-written file or folder.

Temporary names carry the writer's pid (``.<name>.<pid>.*.tmp``, ``.<name>.partial-<pid>-*``), so
the next write to the same target removes what a killed writer left behind, and never the
temporary file of a writer that is still running.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(folder: Path, prefix: str) -> None:
    """Remove ``prefix<pid>...`` leftovers of writers that no longer run."""
    for p in folder.glob(f"{glob.escape(prefix)}*"):
        pid = p.name[len(prefix):].split(".", 1)[0].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


#: errno values that mean "the disk (or this process's file-size or quota limit) is full".
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class DiskFull(OSError):
    """A write ran out of space; raised with the target's name, after the temporary file is removed."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temporary file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path.parent, f".{path.name}.")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno in DISK_FULL:  # name the file: a bare ENOSPC from write() names none
            raise DiskFull(exc.errno, f"{os.strerror(exc.errno)} while writing {path} ({len(data)} bytes); "
                                      f"the previous {path.name}, if any, is untouched") from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_with_provenance(path: str | Path, data: bytes, provenance: dict) -> Path:
    """A fitted or converted asset and its ``.json`` provenance sidecar, each written atomically
    (the sidecar second, so it never describes a file that is not there)."""
    path = Path(path)
    atomic_write_bytes(path, data)
    atomic_write_text(path.with_suffix(".json"), json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    return path


@contextlib.contextmanager
def staged_dir(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces `out` in one rename.

    An existing `out` is refused unless `force`; with `force` it is swapped out only after the
    new folder is complete, so an interrupted run leaves the previous result intact.
    """
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists — choose another --out or pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out.parent, f".{out.name}.partial-")
    _remove_stale(out.parent, f".{out.name}.old-")
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    os.chmod(stage, 0o777 & ~_umask())  # mkdtemp makes 0700: another service user could not read the result
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
