"""Download (or copy) the weights files an ensemble's members need, on request only.

Why a separate step: nothing in QualiTeacher Edge downloads implicitly (see ``weights.py``).
On a connected machine ``qt-iqa fetch --ensemble CFG --to DIR`` puts every file a member names
in ``weights_path`` under DIR with that same relative path, so ``QT_IQA_WEIGHTS=DIR`` (or
``weights_dir=DIR``) makes the ensemble build offline, on that machine or after copying DIR.

Where the URLs come from: pyiqa itself, read at run time. A member's metric names its arch
class in pyiqa's ``DEFAULT_CONFIGS``; that arch's module holds a ``default_model_urls`` table;
pyiqa's CLIP loader holds the CLIP backbone URLs. The member's file is matched by *file name*
against those tables, so the spec stays the single source of which file a member uses and no
host name lives in this project. ``base_url`` (a mirror) replaces everything before the name.

Verification: size > 0, the announced Content-Length, and a checksum where the source names
one: a ``name-<hex>.ext`` file name carries the first hex digits of the file's SHA-256 (the
torch.hub / BasicSR release convention that pyiqa's weight names follow; pyiqa itself never
checks them), and a 64-hex path segment before the name (CLIP's URLs) is the full SHA-256.
Writes are atomic (same-folder temp file, fsync, rename): an interrupted or failed download
never leaves a file that a later run or ``resolve_weights`` would take for complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

from qt_core.hashing import sha256_file

from .spec import EnsembleSpec, Member
from .weights import bundled_assets_dir

#: ``name-<hex>.ext``: the hex is a SHA-256 prefix (at least 8 digits, so "ViT-B-32.pt" is no hash).
HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[^.]+$")
#: A full SHA-256 as a URL path segment (CLIP's ``.../<sha256>/RN50.pt``).
FULL_SHA256 = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20
USER_AGENT = "qualiteacher-edge-fetch"
#: Seconds without data before a download gives up (``qt-iqa fetch --timeout``).
TIMEOUT_S = 60.0


class FetchError(OSError):
    """One file could not be fetched; the message is one line naming member, file and cause."""


@dataclass(frozen=True)
class WeightsSource:
    """Where one member's weights file comes from and how to check it.

    file: the member's relative ``weights_path`` (the path under DIR that resolve_weights reads).
    url: download URL, or None when the file is copied from ``local``.
    sha256 / sha256_prefix: expected digest (full) or leading hex digits, where known.
    """

    member: str
    file: str
    url: str | None = None
    local: Path | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None


@dataclass(frozen=True)
class FetchResult:
    """Outcome of one file: status is downloaded | copied | present | failed."""

    source: WeightsSource
    status: str
    path: Path
    message: str = ""


# --------------------------------------------------------------------------- URL tables from pyiqa


def _arch_candidates(arch_type: str) -> list[str]:
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", arch_type)).lower()
    return list(dict.fromkeys([f"pyiqa.archs.{arch_type.lower()}_arch", f"pyiqa.archs.{snake}_arch"]))


def arch_module(metric: str) -> ModuleType:
    """The pyiqa module defining a metric's arch class (where its ``default_model_urls`` live).

    Tries the module named after the arch type, then the ``*_arch`` module whose source defines
    the class (some archs share a module, e.g. CFANet in ``topiq_arch``); reading the source
    first avoids importing every arch. An import failure of that module is raised as
    ImportError with its cause (e.g. a missing optional dependency).
    """
    import pyiqa.archs
    from pyiqa.default_model_configs import DEFAULT_CONFIGS
    from pyiqa.utils.registry import ARCH_REGISTRY

    if metric not in DEFAULT_CONFIGS:
        raise ValueError(f"{metric!r} is not a pyiqa metric")
    arch_type = DEFAULT_CONFIGS[metric]["metric_opts"]["type"]
    folder = Path(pyiqa.archs.__file__).parent
    defines = re.compile(rf"^class {re.escape(arch_type)}\b", re.M)
    names = _arch_candidates(arch_type) + [
        f"pyiqa.archs.{p.stem}"
        for p in sorted(folder.glob("*_arch.py"))
        if defines.search(p.read_text(encoding="utf-8", errors="replace"))
    ]
    for name in dict.fromkeys(names):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise ImportError(f"pyiqa module {name} (metric {metric!r}) cannot be imported: {exc}") from exc
        if arch_type in ARCH_REGISTRY:
            return sys.modules[ARCH_REGISTRY.get(arch_type).__module__]
    raise ImportError(f"pyiqa defines no arch {arch_type!r} for metric {metric!r}")


def _clip_urls() -> dict[str, str]:
    """pyiqa's CLIP backbone URLs (name -> URL); its CLIP loader imports only torch."""
    from pyiqa.archs import clip_model

    return dict(getattr(clip_model, "_MODELS", {}))


def url_table(metric: str) -> tuple[dict[str, str], str | None]:
    """pyiqa's known weights URLs for a metric, keyed by file name, plus an arch import problem.

    The table joins the metric's arch ``default_model_urls`` and pyiqa's CLIP backbones (CLIP
    metrics take the backbone as a separate file). An arch that cannot import here does not
    stop the lookup; its error comes back so a failed match can explain itself.
    """
    tables: list[dict[str, Any]] = []
    problem = None
    try:
        tables.append(dict(getattr(arch_module(metric), "default_model_urls", {})))
    except ImportError as exc:
        problem = str(exc)
    tables.append(_clip_urls())
    out: dict[str, str] = {}
    for table in tables:
        for url in table.values():
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                out.setdefault(PurePosixPath(urlparse(url).path).name, url)
    return out, problem


def default_weights_file(metric: str) -> str | None:
    """File name pyiqa would download for a metric built with its default options, if any.

    pyiqa's config names the pretrained key among the metric options (``pretrained``,
    ``model_name``, ``train_dataset``...); an arch with a single download uses ``url``.
    Used for hints only: a member declared without ``weights_path`` fetches nothing.
    """
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    try:
        table = dict(getattr(arch_module(metric), "default_model_urls", {}))
    except (ImportError, ValueError):
        return None
    opts = DEFAULT_CONFIGS[metric]["metric_opts"]
    keys = [v for v in opts.values() if isinstance(v, str) and v in table]
    key = keys[0] if keys else ("url" if "url" in table else None)
    return None if key is None else PurePosixPath(urlparse(table[key]).path).name


def expected_digest(url: str) -> tuple[str | None, str | None]:
    """(full sha256, sha256 prefix) named by a URL's path, or None where it names none."""
    parts = PurePosixPath(urlparse(url).path).parts
    full = parts[-2] if len(parts) >= 2 and FULL_SHA256.match(parts[-2]) else None
    m = HASH_IN_NAME.search(parts[-1]) if parts else None
    return full, (m.group(1) if m else None)


# --------------------------------------------------------------------------- plan


def _check_base_url(base_url: str | None) -> str | None:
    if base_url is None:
        return None
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"--base-url must be an http(s) URL like http://mirror.local/weights, got {base_url!r}")
    return base_url.rstrip("/")


def source_for(member: Member, base_url: str | None = None) -> WeightsSource | None:
    """Where a member's weights file comes from; None if it needs none or uses an absolute path.

    A file shipped in ``qt_train/iqa/assets`` (the fitted NIQE model) is copied; anything else is
    looked up by file name in pyiqa's URL tables. Raises ValueError when pyiqa lists no such file.
    """
    if member.weights_path is None:
        return None
    rel = Path(member.weights_path).expanduser()
    if rel.is_absolute():
        return None
    if ".." in rel.parts:
        raise ValueError(f"IQA member {member.name!r}: weights_path {member.weights_path!r} must stay inside DIR")
    bundled = bundled_assets_dir() / rel
    if bundled.is_file():
        return WeightsSource(member.name, member.weights_path, local=bundled)
    table, problem = url_table(member.name)
    url = table.get(rel.name)
    if url is None:
        known = ", ".join(sorted(table)) or "none"
        extra = f"; note: {problem}" if problem else ""
        raise ValueError(
            f"IQA member {member.name!r}: pyiqa lists no download named {rel.name!r} "
            f"(files it knows for this metric and CLIP backbones: {known}){extra}"
        )
    full, prefix = expected_digest(url)
    if base_url is not None:
        url = f"{base_url}/{rel.name}"
    return WeightsSource(member.name, member.weights_path, url=url, sha256=full, sha256_prefix=prefix)


def plan(spec: EnsembleSpec, base_url: str | None = None) -> tuple[list[WeightsSource], list[str]]:
    """The files to fetch for a spec, and notes on members that need nothing from fetch."""
    base = _check_base_url(base_url)
    sources: list[WeightsSource] = []
    notes: list[str] = []
    for m in spec.members:
        src = source_for(m, base)
        if src is not None:
            sources.append(src)
        elif m.weights_path is not None:
            notes.append(f"{m.name}: absolute weights_path {m.weights_path} is used as is; nothing to fetch")
        else:
            default = default_weights_file(m.name)
            if default is not None:
                notes.append(
                    f"{m.name}: no weights_path in the spec, so nothing is fetched; pyiqa's default "
                    f"file for it is {default!r} (add weights_path: {default} to use it offline)"
                )
    return sources, notes


# --------------------------------------------------------------------------- verify, download, copy


def check_digest(src: WeightsSource, digest: str, size: int) -> str | None:
    """Why a file's bytes do not match its source, or None when they do."""
    if size <= 0:
        return "file is empty"
    if src.sha256 is not None and digest != src.sha256:
        return f"SHA-256 {digest[:16]}... does not match the expected {src.sha256[:16]}..."
    if src.sha256_prefix is not None and not digest.startswith(src.sha256_prefix):
        return (
            f"SHA-256 starts {digest[: len(src.sha256_prefix)]}, but the file name says "
            f"{src.sha256_prefix} (corrupt or a different file)"
        )
    return None


def _describe(exc: BaseException, url: str) -> str:
    """One line for a network failure: HTTP status, timeout or unreachable host."""
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason} for {url}"
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"timed out reading {url}"
    if isinstance(reason, (ConnectionRefusedError, socket.gaierror)):
        return f"cannot reach {url} ({reason})"
    text = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    return f"download of {url} failed ({text})"


def _stream(url: str, out, timeout: float, progress: Callable[[int | None], Any]) -> tuple[str, int]:
    """Copy the response body into ``out``; returns (sha256, size). Raises on short reads."""
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    h = hashlib.sha256()
    size = 0
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = progress(total)
        try:
            while True:
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                h.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
        finally:
            bar.close()
    if total is not None and size != total:
        raise ConnectionError(f"connection closed after {size} of {total} bytes")
    return h.hexdigest(), size


def _tqdm_bar(name: str, quiet: bool) -> Callable[[int | None], Any]:
    from tqdm import tqdm

    def make(total: int | None) -> Any:
        return tqdm(total=total, desc=name, unit="B", unit_scale=True, file=sys.stderr, disable=quiet or None)

    return make


def download(src: WeightsSource, dest: Path, timeout: float = TIMEOUT_S, quiet: bool = False) -> None:
    """Download ``src.url`` to ``dest`` atomically and verified; FetchError on any failure."""
    import http.client
    import urllib.error

    assert src.url is not None
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            try:
                digest, size = _stream(src.url, fh, timeout, _tqdm_bar(dest.name, quiet))
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                raise FetchError(f"{src.member}: {src.file}: {_describe(exc, src.url)}") from None
            fh.flush()
            os.fsync(fh.fileno())
        bad = check_digest(src, digest, size)
        if bad:
            raise FetchError(f"{src.member}: {src.file} from {src.url}: {bad}; nothing was kept")
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def copy_local(src: WeightsSource, dest: Path) -> None:
    """Copy a project file atomically (temp file + rename)."""
    assert src.local is not None
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src.local, tmp)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _present_ok(src: WeightsSource, dest: Path) -> bool:
    """An existing file counts as complete (writes are atomic) if it passes the same checks."""
    if not dest.is_file():
        return False
    if src.local is not None:
        return dest.stat().st_size == src.local.stat().st_size
    return check_digest(src, sha256_file(dest), dest.stat().st_size) is None


def fetch_one(src: WeightsSource, to: Path, force: bool = False, timeout: float = TIMEOUT_S,
              quiet: bool = False) -> FetchResult:
    """Fetch one file into ``to``; failures come back as a 'failed' result, never half a file."""
    dest = to / src.file
    if not force and _present_ok(src, dest):
        return FetchResult(src, "present", dest)
    try:
        if src.local is not None:
            copy_local(src, dest)
            return FetchResult(src, "copied", dest)
        download(src, dest, timeout=timeout, quiet=quiet)
    except FetchError as exc:
        return FetchResult(src, "failed", dest, str(exc))
    return FetchResult(src, "downloaded", dest)


def fetch(sources: Iterable[WeightsSource], to: str | os.PathLike, force: bool = False,
          timeout: float = TIMEOUT_S, quiet: bool = False) -> list[FetchResult]:
    """Fetch every source into ``to`` (keeps going after a failure, so one run reports all)."""
    folder = Path(to).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    return [fetch_one(s, folder, force=force, timeout=timeout, quiet=quiet) for s in sources]
