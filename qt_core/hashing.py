"""Content hashes: what manifests, checkpoints and caches use to tell files apart."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed so multi-GB weights do not need to fit in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_files(folder: str | os.PathLike[str], files: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``{name: sha256}`` for ``files`` inside ``folder`` — what export puts in a manifest's ``sha256``."""
    return {name: sha256_file(Path(folder) / name) for name in files}
