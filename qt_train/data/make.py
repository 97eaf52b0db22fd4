"""Write a paired set (lq/, gt/, manifest.json) from clean images and a task's synthesizer.

The set is built in a staging folder and renamed into place at the end, so an interrupted run
never leaves a half-written set, and an existing set is replaced only when the new one is whole.
Each chunk of images has its own seed derived from (seed, chunk), so the whole set is
reproducible from the manifest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST_VERSION = 1
CHUNK = 16  # images synthesised per vectorised call; part of the seed scheme, so recorded


def make_paired_set(
    out: str | Path,
    task: str,
    domain: str,
    n: int,
    seed: int = 0,
    size: int = 256,
    clean: str = "mixed",
    clean_folder: str | Path | None = None,
    params: Any = None,
    force: bool = False,
    argv: Sequence[str] = (),
    config: Any = None,
) -> Path:
    """Synthesise `n` (degraded, clean) pairs into `out`; returns `out`."""
    from qt_core.atomic import atomic_write_text, staged_dir
    from qt_core.config import save_run_record
    from qt_train.data.clean import sample_clean
    from qt_train.data.degrade import DOMAINS, TASKS, default_params, degrade
    from qt_train.data.io import write_image

    if task not in TASKS:
        raise ValueError(f"unknown task '{task}' — choose one of {', '.join(TASKS)}")
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain '{domain}' — choose one of {', '.join(DOMAINS)}")
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    params = params if params is not None else default_params(task)
    folder = Path(clean_folder) if clean_folder else None

    records: list[dict[str, Any]] = []
    with staged_dir(out, force=force) as stage:
        (stage / "lq").mkdir()
        (stage / "gt").mkdir()
        for chunk, start in enumerate(range(0, n, CHUNK)):
            count = min(CHUNK, n - start)
            gt = sample_clean(clean, count, size, np.random.default_rng([seed, chunk, 0]), folder=folder)
            lq, sampled = degrade(task, domain, gt, np.random.default_rng([seed, chunk, 1]), params=params)
            for j in range(count):
                name = f"{start + j:05d}.png"
                write_image(stage / "lq" / name, lq[j])
                write_image(stage / "gt" / name, gt[j])
                records.append({"name": name, "chunk": chunk, "params": sampled[j]})
        manifest = {
            "schema_version": MANIFEST_VERSION,
            "kind": "paired_set",
            "task": task,
            "domain": domain,
            "n": n,
            "size": size,
            "seed": seed,
            "seed_scheme": f"chunks of {CHUNK}: clean rng = default_rng([seed, chunk, 0]), "
            f"degradation rng = default_rng([seed, chunk, 1])",
            "clean_source": clean,
            "clean_folder": str(folder) if folder else None,
            "degradation_params": asdict(params),
            "images": records,
        }
        atomic_write_text(stage / "manifest.json", json.dumps(manifest, indent=1))
        if config is not None or argv:
            save_run_record(stage, config if config is not None else manifest_config(manifest), argv)
    return Path(out)


def manifest_config(manifest: dict[str, Any]) -> dict[str, Any]:
    """The settings part of a manifest (without per-image records), for the run record."""
    return {k: v for k, v in manifest.items() if k != "images"}
