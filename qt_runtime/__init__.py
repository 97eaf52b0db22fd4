"""qt_runtime: run exported QualiTeacher artifacts with numpy, OpenCV and one backend (no torch).

Importing this package loads only numpy; backends import their native libraries when opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qt_runtime.artifact import Artifact, load_artifact
from qt_runtime.manifest import ArtifactError, Manifest, read_manifest, write_manifest

if TYPE_CHECKING:
    from qt_runtime.backends.base import Backend

__all__ = ["Artifact", "ArtifactError", "Manifest", "load_artifact", "open_backend", "read_manifest",
           "write_manifest"]


def open_backend(artifact: Artifact, backend: str | None = None, device: str | None = None,
                 **options: Any) -> Backend:
    """See :func:`qt_runtime.backends.open_backend` (imported lazily to keep ``import qt_runtime`` light)."""
    from qt_runtime.backends import open_backend as _open

    return _open(artifact, backend, device, **options)
