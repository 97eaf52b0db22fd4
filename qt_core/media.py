"""Media listing: which suffixes are images and videos, and sorted folder listings with errors
that say what to do. Shared by the data engine, the evaluators and the runtime's folder source."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

IMAGE_EXTS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm",
)
VIDEO_EXTS: tuple[str, ...] = (
    ".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".ts",
)


class DataError(ValueError):
    """A dataset/folder problem found before training starts (missing, empty, mismatched)."""


class MissingDataError(DataError, FileNotFoundError):
    """A folder or file that does not exist; catchable as DataError or FileNotFoundError."""


def list_images(
    folder: str | os.PathLike,
    recursive: bool = False,
    exts: Iterable[str] = IMAGE_EXTS,
) -> list[Path]:
    """Sorted image files in ``folder`` (by suffix, case-insensitive; hidden files skipped).

    Raises :class:`MissingDataError` if the folder does not exist and :class:`DataError` if it
    holds no matching files, each saying what to do.
    """
    return list_files(folder, exts, recursive=recursive, what="images")


def list_files(
    folder: str | os.PathLike,
    exts: Iterable[str],
    recursive: bool = False,
    what: str = "files",
) -> list[Path]:
    """Sorted files with one of ``exts`` in ``folder``; errors as in :func:`list_images`."""
    folder = Path(folder).expanduser()
    exts = tuple(e.lower() for e in exts)
    if not folder.exists():
        raise MissingDataError(f"folder {folder} does not exist; check the path "
                               "(or the data.* entry in your config)")
    if not folder.is_dir():
        raise DataError(f"{folder} is a file, not a folder of {what}; pass its parent folder")
    pattern = "**/*" if recursive else "*"
    found = sorted(
        p for p in folder.glob(pattern)
        if p.suffix.lower() in exts and not p.name.startswith(".") and p.is_file()
    )
    if not found:
        hint = "" if recursive else " (or enable recursive search for sub-folders)"
        raise DataError(f"folder {folder} contains no {what} with suffixes "
                        f"{', '.join(exts)}; add some{hint}")
    return found
