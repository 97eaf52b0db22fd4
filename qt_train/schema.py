"""The run configuration: what a task YAML in configs/ may say, as frozen dataclasses.

Sections grow as features land; every section has defaults so a YAML states only what differs.
The `degradation` section is validated against the task's own parameter dataclass (each task
has different physics), with the same strict rules as the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qt_train.config import ConfigError, build, load_config, read_yaml
from qt_train.data.degrade import TASKS

TASK_NAMES = TASKS  # one list of tasks: the degradation engine's table


@dataclass(frozen=True)
class DataConfig:
    """Where training images come from; paths may be null to use the embedded data engine."""

    clean: str = "mixed"  # clean-image source for synthesis: mixed | dead_leaves | package_photos | folder
    clean_folder: str | None = None  # used when clean == "folder"
    size: int = 256  # side of the clean crops the engine degrades
    n_train: int = 256  # synthetic pairs generated when `paired` is null
    n_val: int = 32  # held-out pairs (both domains) for evaluation
    paired: str | None = None  # a folder with lq/ and gt/ (real paired data) instead of synthesis
    real: str | None = None  # unlabelled real images, folders or videos; null -> `realistic` domain
    patch: int = 128  # training crop
    workers: int = 0  # DataLoader workers

    def __post_init__(self) -> None:
        if self.size < 16 or self.patch < 16:
            raise ValueError(f"size and patch must be >= 16 pixels, got size={self.size} patch={self.patch}")
        if self.n_train < 1 or self.n_val < 0:
            raise ValueError("n_train must be >= 1 and n_val >= 0")


@dataclass(frozen=True)
class RunConfig:
    """A whole run. `out` is where the run folder goes; nothing is written elsewhere."""

    task: str
    seed: int = 0
    out: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    degradation: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASK_NAMES:
            raise ValueError(f"unknown task '{self.task}' — choose one of {', '.join(TASK_NAMES)}")


def degradation_params(cfg: RunConfig, source: str = "<config>") -> Any:
    """The task's frozen degradation parameters, built strictly from the `degradation` section."""
    from qt_train.data.degrade import default_params

    params_cls = type(default_params(cfg.task))
    return build(params_cls, cfg.degradation, source=source, prefix="degradation.")


def load_run_config(path: str | Path | None, overrides: Sequence[str] = (), task: str | None = None) -> RunConfig:
    """Load a run config (YAML and/or `--set` overrides), validating every section before any work."""
    defaults = {"task": task} if task else None
    if path is None and task is None:
        raise ConfigError("no config: pass --config configs/TASK.yaml or --task TASK")
    cfg = load_config(RunConfig, path, overrides, defaults=defaults)
    if task is not None and cfg.task != task:
        raise ConfigError(f"{path}: config is for task '{cfg.task}' but --task {task} was given")
    degradation_params(cfg, source=str(path) if path else "<defaults>")
    return cfg


__all__ = ["DataConfig", "RunConfig", "TASK_NAMES", "degradation_params", "load_run_config", "read_yaml"]
