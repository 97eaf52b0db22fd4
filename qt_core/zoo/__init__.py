"""The model zoo: students this project trained, shipped with every install (the runtime-only one too).

``zoo:TASK`` names a zoo entry wherever a command takes a model:

- ``qt-run zoo:dehaze`` (also ``zoo:dehaze/int8``, ``zoo:dehaze/fp32``): the exported artifact
  folder (default: the entry's ``default`` precision, INT8);
- ``qt-export zoo:dehaze``, ``qt-eval zoo:dehaze``, ``qt-train --set train.init=zoo:dehaze``:
  the entry's checkpoint.

The zoo is this folder: ``index.json`` and one folder per task. It is package data of
``qt_core`` because every command that takes a zoo name may read it and ``qt_core`` is the one
package all of them may import (``qt_train`` and ``qt_runtime`` are siblings: docs/design.md);
``QT_ZOO=/some/dir`` points every command at another zoo (a folder with its own index.json).

``index.json``::

    {"schema": 1,
     "tasks": {"dehaze": {
        "make": "the commands that build this entry",       # every entry, trained or not
        # a trained entry adds:
        "arch": ..., "method": ..., "config": "dehaze/config.yaml", "command": "how it was trained",
        "checkpoint": "dehaze/model.ckpt",
        "artifacts": {"int8": "dehaze/openvino-int8", "fp32": "dehaze/openvino-fp32"}, "default": "int8",
        "metrics": {...measured held-out PSNR/SSIM, judge and reward scores, FPS...},
        "sha256": {"dehaze/model.ckpt": "...", "dehaze/openvino-int8/model.xml": "...", ...}}}}

Every file a name resolves to is checked against its sha256 first. Stdlib only: the runtime, the
training side and the exporter all resolve names here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIX = "zoo:"
ENV = "QT_ZOO"
INDEX = "index.json"
SCHEMA = 1
VARIANTS = ("int8", "fp32")


class ZooError(ValueError):
    """A zoo name that cannot be used; the message is one line that says what to do."""


def is_zoo_name(text: object) -> bool:
    return isinstance(text, str) and text.startswith(PREFIX)


def default_root() -> Path:
    """``$QT_ZOO`` if set, else the zoo installed with this package (this folder)."""
    env = os.environ.get(ENV)
    return Path(env).expanduser() if env else Path(__file__).resolve().parent


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Entry:
    task: str
    data: dict[str, Any]
    root: Path

    @property
    def trained(self) -> bool:
        return bool(self.data.get("checkpoint") or self.data.get("artifacts")) and bool(self.data.get("sha256"))

    @property
    def make(self) -> str:
        return str(self.data.get("make") or f"qt-train --config configs/{self.task}.yaml, then python -m "
                                                f"qt_apps.zoo_add {self.task} --run RUN_DIR --calib FRAMES")

    def not_trained(self, missing: str | None = None) -> ZooError:
        what = f" (missing: {missing})" if missing else ""
        return ZooError(f"the zoo ({self.root}) has no trained model for '{self.task}' yet{what}; make one with: "
                        f"{self.make}")

    def files_under(self, rel: str) -> dict[str, str]:
        """``{relative path: sha256}`` of the entry's files at ``rel`` (a file, or everything in a folder)."""
        sums: dict[str, str] = self.data.get("sha256") or {}
        return {k: v for k, v in sums.items() if k == rel or k.startswith(rel.rstrip("/") + "/")}

    def checked(self, rel: str) -> Path:
        """The path of ``rel`` (file or folder) after every file under it matched its sha256."""
        files = self.files_under(rel)
        if not files:
            raise ZooError(f"{self.root / INDEX}: '{self.task}' lists {rel} but no sha256 for it; rebuild the "
                           f"entry with: {self.make}")
        for name in sorted(files):
            if not (self.root / name).is_file():
                raise self.not_trained(name)
        for name, digest in sorted(files.items()):
            if _sha256(self.root / name) != digest:
                raise ZooError(f"zoo file {self.root / name} does not match its sha256 in {self.root / INDEX} "
                               f"(damaged or changed): restore it (git checkout / reinstall) or rebuild the entry "
                               f"with: {self.make}")
        return self.root / rel


def read_index(root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    root = default_root() if root is None else Path(root)
    path = root / INDEX
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ZooError(f"no model zoo at {root} ({INDEX} missing); unset {ENV} or point it at a zoo folder") from None
    except (OSError, ValueError) as exc:
        raise ZooError(f"cannot read {path}: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        raise ZooError(f"{path} is not a zoo index (no 'tasks' mapping)")
    if data.get("schema", SCHEMA) > SCHEMA:
        raise ZooError(f"{path} has schema {data['schema']}, newer than this toolkit's {SCHEMA}: upgrade")
    return data


def tasks(root: str | os.PathLike[str] | None = None) -> list[str]:
    return sorted(read_index(root)["tasks"])


def parse(name: str) -> tuple[str, str | None]:
    """``zoo:TASK[/VARIANT]`` -> (TASK, VARIANT or None)."""
    if not is_zoo_name(name):
        raise ZooError(f"'{name}' is not a zoo name (zoo:TASK, e.g. zoo:dehaze)")
    task, _, variant = name[len(PREFIX):].strip().partition("/")
    if not task:
        raise ZooError(f"'{name}': name a task, e.g. zoo:dehaze")
    return task, (variant or None)


def entry(name: str, root: str | os.PathLike[str] | None = None) -> Entry:
    """The index entry ``name`` refers to; an unknown task lists the zoo's tasks."""
    root = default_root() if root is None else Path(root)
    index = read_index(root)
    task, _ = parse(name)
    if task not in index["tasks"]:
        known = ", ".join(f"zoo:{t}" for t in sorted(index["tasks"])) or "none"
        raise ZooError(f"unknown zoo model '{name}'; the zoo ({root}) has: {known}")
    data = index["tasks"][task]
    if not isinstance(data, dict):
        raise ZooError(f"{root / INDEX}: entry '{task}' is not a mapping")
    return Entry(task, data, root)


def resolve_artifact(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """``zoo:TASK[/int8|/fp32]`` -> its exported artifact folder, every file hash-checked."""
    e = entry(name, root)
    _, variant = parse(name)
    if not e.trained:
        raise e.not_trained()
    artifacts: dict[str, str] = e.data.get("artifacts") or {}
    variant = variant or e.data.get("default") or next(iter(artifacts), None)
    if variant not in artifacts:
        have = ", ".join(f"zoo:{e.task}/{v}" for v in artifacts) or "none"
        raise ZooError(f"zoo model 'zoo:{e.task}' has no '{variant}' artifact; it has: {have}")
    return e.checked(artifacts[variant])


def resolve_checkpoint(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """``zoo:TASK`` -> its checkpoint (for qt-export, qt-eval and train.init), hash-checked."""
    e = entry(name, root)
    _, variant = parse(name)
    if variant is not None:
        raise ZooError(f"'{name}': a checkpoint has no precision variant; use zoo:{e.task} "
                       f"(/{'|/'.join(VARIANTS)} name exported artifacts, for qt-run)")
    if not e.trained:
        raise e.not_trained()
    ckpt = e.data.get("checkpoint")
    if not ckpt:
        raise ZooError(f"zoo model 'zoo:{e.task}' ships no checkpoint (artifacts only); make one with: {e.make}")
    return e.checked(ckpt)


def resolve_path(text: str | os.PathLike[str], kind: str) -> Path:
    """A command-line model argument: a zoo name resolved (``kind``: 'artifact' or 'checkpoint'),
    anything else returned as a path unchanged."""
    if not is_zoo_name(str(text)):
        return Path(text)
    return resolve_artifact(str(text)) if kind == "artifact" else resolve_checkpoint(str(text))
