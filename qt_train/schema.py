"""The run configuration: what a task YAML in configs/ may say, as frozen dataclasses.

Sections grow as features land; every section has defaults so a YAML states only what differs.
The `degradation` section is validated against the task's own parameter dataclass (each task
has different physics), with the same strict rules as the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from qt_core.config import ConfigError, build, load_config, read_yaml
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

    def __post_init__(self) -> None:
        if self.size < 16 or self.patch < 16:
            raise ValueError(f"size and patch must be >= 16 pixels, got size={self.size} patch={self.patch}")
        if self.n_train < 1 or self.n_val < 0:
            raise ValueError("n_train must be >= 1 and n_val >= 0")


@dataclass(frozen=True)
class ModelConfig:
    """The restoration backbone; `options` go to the backbone's own config dataclass."""

    arch: str = "edge_unet"  # a name in qt_train.models.BACKBONES
    options: dict[str, Any] = field(default_factory=dict)  # e.g. {widths: [16, 32, 64], levels: 8}


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    schedule: Literal["constant", "cosine"] = "constant"
    warmup: int = 0  # linear warm-up iterations
    grad_clip: float = 0.0  # max grad norm; 0 disables


@dataclass(frozen=True)
class TrainConfig:
    """How long and how to train.

    Stage 1 (base) trains the backbone on synthetic pairs; stage 2 runs `method` from the
    stage-1 weights (or from `init`). `supervised` as a method continues the labelled branch
    alone: the control that tells whether a semi-supervised gain is more than extra training.
    """

    method: Literal["qualiteacher", "mean_teacher", "reliable_bank", "supervised"] = "qualiteacher"
    base_iterations: int = 1000  # stage 1, supervised on synthetic pairs; skipped when `init` is set
    base_lr: float = 2e-4
    iterations: int = 4000  # stage 2, the semi-supervised method (optim.lr)
    batch: int = 8  # labelled (synthetic) pairs per iteration
    real_batch: int = 4  # unlabelled real images per iteration (semi stage)
    n_real: int = 64  # realistic-domain images synthesised when data.real is null
    init: str | None = None  # checkpoint or state dict to start from (any compatible weights)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-5))
    ema_decay: float = 0.999
    log_every: int = 20
    eval_every: int = 500
    ckpt_every: int = 250
    keep_checkpoints: int = 3  # earlier checkpoints kept in last-history/ (hard links; 0 = only last.ckpt)
    image_every: int = 500  # TensorBoard image grids
    threads: int = 0  # torch threads; 0 keeps torch's default
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.base_iterations < 0 or self.batch < 1 or self.real_batch < 1:
            raise ValueError("iterations and base_iterations must be >= 0, batch and real_batch >= 1")
        if not 0.0 <= self.ema_decay <= 1.0:
            raise ValueError(f"ema_decay must be in [0, 1], got {self.ema_decay}")


@dataclass(frozen=True)
class MethodConfig:
    """QualiTeacher's pieces and their weights (docs/method.md; the reference's values as defaults).

    The switches make the ablations: conditioning off + all PLs = Mean Teacher with multi-augment.
    """

    conditioning: bool = True
    multi_augment: bool = True
    augments: tuple[str, ...] = ("identity", "hflip", "vflip", "rot90")
    bank_size: int = 3
    top_level: int = 7
    # true: levels cut at the quantiles of the bank's PL qualities (every level populated); false:
    # the ensemble's fixed rule (the reference: 7 if s >= 0.7 else floor(10 s))
    level_quantiles: bool = False
    # where a PL's quality comes from: "iqa" (the reward ensemble's score: the reference) or
    # "agreement" (minus its distance to the teacher views' consensus: no appearance model the
    # student could game; its scale is arbitrary, so levels come from the bank's quantiles)
    quality_source: Literal["iqa", "agreement"] = "iqa"
    pl_weight: float = 2.0  # block-weighted L1 to each PL
    sup_weight: float = 1.0  # labelled synthetic branch
    block_weighting: bool = True
    strong_ops: int = 2  # RandAugment(n, m) on the student's real input
    strong_magnitude: int = 10
    preference: bool = True
    preference_start: int = 800  # iteration of stage 2; the reference starts at 2000 of 10k-20k
    preference_weight: float = 1.0  # lambda
    preference_beta: float = 1.0
    preference_delta: float = 0.1
    preference_b_weight: float = 0.5
    preference_levels: tuple[int, ...] = (4, 5, 6)
    # false = the reference: the A term's gradient also pushes the level-k output down; true treats
    # y_k as a fixed comparison point, so only the top level is pushed up (see docs/results.md)
    preference_detach_lower: bool = False
    # L1 from the top level's output to the image's best stored PL, on the preference pass: keeps
    # what the reward pushes up tied to a restoration the teacher actually made (0 = off)
    anchor_weight: float = 0.0
    consistency: bool = True
    consistency_start: int = 800
    consistency_weight: float = 1.0
    crop_frac: float = 0.5
    aligned_crops: bool = True

    def __post_init__(self) -> None:
        if self.quality_source == "agreement" and not (
                self.level_quantiles and self.multi_augment and not self.preference):
            raise ValueError("method.quality_source=agreement needs method.level_quantiles: true, "
                             "method.multi_augment: true and method.preference: false (the preference "
                             "term compares reward-ensemble scores)")
        if self.preference and not self.conditioning:
            raise ValueError("method.preference compares quality levels: it needs method.conditioning: true")
        if self.bank_size < 1:
            raise ValueError("method.bank_size must be >= 1")
        if any(not 0 <= k < self.top_level for k in self.preference_levels):
            raise ValueError(f"method.preference_levels must lie below top_level {self.top_level}")


@dataclass(frozen=True)
class IQAConfig:
    ensemble: str | None = None  # YAML ensemble spec (the reward); null -> the offline default ensemble
    judge: str | None = None  # YAML spec of the judge (never optimised); null -> NIQE-original + BRISQUE-LIVE
    weights_dir: str | None = None  # where online members' weights live (else $QT_IQA_WEIGHTS)


@dataclass(frozen=True)
class RunConfig:
    """A whole run. `out` is where the run folder goes; nothing is written elsewhere."""

    task: str
    seed: int = 0
    out: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    degradation: dict[str, Any] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    iqa: IQAConfig = field(default_factory=IQAConfig)

    def __post_init__(self) -> None:
        if self.task not in TASK_NAMES:
            raise ValueError(f"unknown task '{self.task}' — choose one of {', '.join(TASK_NAMES)}")


def degradation_params(cfg: RunConfig, source: str = "<config>") -> Any:
    """The task's frozen degradation parameters, built strictly from the `degradation` section."""
    from qt_train.data.degrade import default_params

    params_cls = type(default_params(cfg.task))
    return build(params_cls, cfg.degradation, source=source, prefix="degradation.")


def model_options(cfg: RunConfig, source: str = "<config>") -> Any:
    """The backbone's frozen config, built strictly from `model.options`."""
    from qt_train.models import backbone_config_class

    try:
        config_cls = backbone_config_class(cfg.model.arch)
    except ValueError as exc:
        raise ConfigError(f"{source}: model.arch: {exc}") from exc
    return build(config_cls, cfg.model.options, source=source, prefix="model.options.")


def load_run_config(path: str | Path | None, overrides: Sequence[str] = (), task: str | None = None) -> RunConfig:
    """Load a run config (YAML and/or `--set` overrides), validating every section before any work."""
    defaults = {"task": task} if task else None
    if path is None and task is None:
        raise ConfigError("no config: pass --config configs/TASK.yaml or --task TASK")
    cfg = load_config(RunConfig, path, overrides, defaults=defaults)
    if task is not None and cfg.task != task:
        raise ConfigError(f"{path}: config is for task '{cfg.task}' but --task {task} was given")
    degradation_params(cfg, source=str(path) if path else "<defaults>")
    model_options(cfg, source=str(path) if path else "<defaults>")
    return cfg


__all__ = ["DataConfig", "RunConfig", "TASK_NAMES", "degradation_params", "load_run_config", "model_options", "read_yaml"]
