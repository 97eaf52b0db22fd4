"""The IQA ensemble as data: which pyiqa metrics, how much each counts, how scores become levels.

Why data: adding a member is one more ``Member`` entry in a preset YAML file
(``qt_train/iqa/presets/``), not code. The dataclasses hold only plain types (str, float,
int, bool, tuples, None) so a generic strict config loader can build them.

No torch or pyiqa import here: a spec can be built, validated and written without them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

Direction = Literal["higher", "lower"]

#: The reference rule's cut points for 8 levels: level = 7 if s >= 0.7 else floor(10 s).
REFERENCE_LEVELS = 8


@dataclass(frozen=True)
class Member:
    """One no-reference IQA model of the ensemble.

    name: a project metric (``ensemble.PROJECT_METRICS``: ``brisque_live``) or a pyiqa metric name
        (``pyiqa.list_models()``); also the member's key in score dicts.
    weight: relative weight (normalised over the members to sum to 1).
    direction: "higher" if a larger raw score means better quality, else "lower".
    raw_range: (lo, hi) raw values mapped to the ends of [0, 1] (clamped outside).
    weights_path: weights file; relative paths resolve against ``weights_dir`` /
        ``$QT_IQA_WEIGHTS`` / the bundled ``qt_train/iqa/assets`` (see ``weights.py``).
        None means the metric needs no weights (it is built with the network blocked).
    differentiable: whether ``Ensemble.reward`` lets gradients flow through this member.
    options: extra ``pyiqa.create_metric`` keyword arguments, as (key, value) pairs.
    weights_arg: the ``create_metric`` keyword that receives the resolved weights path
        (pyiqa's CLIP-based metrics take the CLIP checkpoint as ``backbone``).
    min_size: smallest image side the metric accepts (NIQE needs one 96 px block).
    """

    name: str
    weight: float
    direction: Direction
    raw_range: tuple[float, float]
    weights_path: str | None = None
    differentiable: bool = False
    options: tuple[tuple[str, Any], ...] = ()
    weights_arg: str = "pretrained_model_path"
    min_size: int = 1

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"member name must be a non-empty string, got {self.name!r}")
        if self.direction not in ("higher", "lower"):
            raise ValueError(
                f"member {self.name}: direction must be 'higher' or 'lower', got {self.direction!r}"
            )
        if not (isinstance(self.weight, (int, float)) and self.weight > 0 and self.weight != float("inf")):
            raise ValueError(
                f"member {self.name}: weight must be a positive finite number, got {self.weight!r}"
            )
        if len(self.raw_range) != 2:
            raise ValueError(f"member {self.name}: raw_range must be (lo, hi), got {self.raw_range!r}")
        lo, hi = (float(v) for v in self.raw_range)
        if not (lo < hi) or hi - lo == float("inf"):
            raise ValueError(f"member {self.name}: raw_range needs finite lo < hi, got {self.raw_range!r}")
        if not isinstance(self.min_size, int) or self.min_size < 1:
            raise ValueError(f"member {self.name}: min_size must be a positive int, got {self.min_size!r}")
        object.__setattr__(self, "raw_range", (lo, hi))
        object.__setattr__(self, "weight", float(self.weight))
        object.__setattr__(self, "options", tuple((str(k), v) for k, v in self.options))


@dataclass(frozen=True)
class EnsembleSpec:
    """The members, the number of quality levels K, optional level cut points, the block size.

    thresholds: K-1 strictly increasing cut points in [0, 1]; level = number of cut points
    <= s. None selects the reference rule (only defined for K = 8):
    level = 7 if s >= 0.7 else floor(10 s), clamped to 0..7.
    """

    members: tuple[Member, ...]
    levels: int = REFERENCE_LEVELS
    thresholds: tuple[float, ...] | None = None
    block: int = 144

    def __post_init__(self) -> None:
        members = tuple(self.members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        names = [m.name for m in members]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"member names must be unique, repeated: {', '.join(dupes)}")
        if not isinstance(self.levels, int) or self.levels < 2:
            raise ValueError(f"levels must be an int >= 2, got {self.levels!r}")
        if self.thresholds is None:
            if self.levels != REFERENCE_LEVELS:
                raise ValueError(
                    f"the reference level rule is defined for {REFERENCE_LEVELS} levels; "
                    f"give {self.levels - 1} thresholds for levels={self.levels}"
                )
        else:
            th = tuple(float(t) for t in self.thresholds)
            if len(th) != self.levels - 1:
                raise ValueError(f"thresholds needs levels-1 = {self.levels - 1} cut points, got {len(th)}")
            if any(not 0.0 <= t <= 1.0 for t in th) or any(a >= b for a, b in zip(th, th[1:], strict=False)):
                raise ValueError(f"thresholds must be strictly increasing within [0, 1], got {th}")
            object.__setattr__(self, "thresholds", th)
        if not isinstance(self.block, int) or self.block < 1:
            raise ValueError(f"block must be a positive int, got {self.block!r}")
        object.__setattr__(self, "members", members)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"no member {name!r} in ensemble ({', '.join(self.names)})")


# --------------------------------------------------------------------------- dict / YAML


def _pairs(options: Any) -> Any:
    """An options mapping (as YAML writes it) as the (key, value) pairs a frozen spec holds."""
    if isinstance(options, dict):
        return [[str(k), v] for k, v in sorted(options.items())]
    return options


def member_from_dict(d: dict[str, Any], where: str = "member") -> Member:
    """Build a Member from plain YAML types with the project's strict loader (unknown keys and
    wrong types are one-line errors that name the key)."""
    from qt_core.config import build

    if isinstance(d, dict) and "options" in d:
        d = {**d, "options": _pairs(d["options"])}
    return build(Member, d, source=where)


def spec_from_dict(d: dict[str, Any], where: str = "ensemble spec") -> EnsembleSpec:
    """Build an EnsembleSpec from a mapping (as read from YAML); errors raise ConfigError (a ValueError)."""
    from qt_core.config import build

    if isinstance(d, dict) and isinstance(d.get("members"), list):
        d = {**d, "members": [{**m, "options": _pairs(m["options"])} if isinstance(m, dict) and "options" in m
                              else m for m in d["members"]]}
    return build(EnsembleSpec, d, source=where)


def spec_to_dict(spec: EnsembleSpec) -> dict[str, Any]:
    """Plain-type mapping that ``spec_from_dict`` reads back to an equal spec."""
    members = []
    for m in spec.members:
        md = {f.name: getattr(m, f.name) for f in fields(Member)}
        md["raw_range"] = list(m.raw_range)
        md["options"] = dict(m.options)
        members.append(md)
    return {
        "members": members,
        "levels": spec.levels,
        "thresholds": None if spec.thresholds is None else list(spec.thresholds),
        "block": spec.block,
    }


# --------------------------------------------------------------------------- presets
#: The packaged ensembles, one YAML file each in ``qt_train/iqa/presets/``: ``default`` (the
#: offline reward), ``reference`` (the paper's mix; needs downloaded weights), ``judge`` (the
#: human-calibrated members no student optimises). ``iqa.ensemble`` / ``iqa.judge`` take a
#: preset name or a path to a YAML file of your own.
PRESETS_DIR = Path(__file__).resolve().parent / "presets"
PRESETS: tuple[str, ...] = ("default", "reference", "judge")


def load_spec(source: str | Path) -> EnsembleSpec:
    """A preset by name (``PRESETS``) or an ensemble spec YAML file (top level = the spec mapping)."""
    from qt_core.config import read_yaml

    path = PRESETS_DIR / f"{source}.yaml" if str(source) in PRESETS else Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"ensemble spec {source} not found (give a YAML file or one of {', '.join(PRESETS)})")
    data = read_yaml(path)  # one-line errors for a missing file, bad YAML, deep nesting
    return spec_from_dict(data, where=str(path))


@functools.cache
def _preset(name: str) -> EnsembleSpec:
    return load_spec(name)


def default_spec() -> EnsembleSpec:
    """The offline reward ensemble (``presets/default.yaml``): NIQE (fitted pristine model) +
    PIQE + the learned CNNIQA, weights 0.2 / 0.1 / 0.7. No downloads."""
    return _preset("default")


def reference_spec() -> EnsembleSpec:
    """The paper's mix (``presets/reference.yaml``): 0.4 MUSIQ + 0.2 CLIP-IQA + 0.4 BRISQUE; needs
    downloaded weights (constructing it touches nothing)."""
    return _preset("reference")


def default_judge_spec() -> EnsembleSpec:
    """The judge (``presets/judge.yaml``): NIQE with the published pristine model and BRISQUE with
    the LIVE-trained SVR, equal weights — calibrated outside this project, optimised by no student."""
    return _preset("judge")


def check_disjoint(reward: EnsembleSpec, judge: EnsembleSpec) -> None:
    """A judge member the student also optimises is no judge: refuse the pair."""
    shared = sorted({m.name for m in reward.members} & {m.name for m in judge.members})
    if shared:
        raise ValueError(f"IQA member(s) {', '.join(shared)} are in both the reward ensemble and the judge; "
                         "remove them from one (iqa.ensemble / iqa.judge)")


def reward_spec(ensemble: str | Path | None) -> EnsembleSpec:
    """The reward ensemble a run's ``iqa.ensemble`` names (a preset or a file; None: the default)."""
    return load_spec(ensemble) if ensemble else default_spec()


def reward_and_judge(ensemble: str | Path | None, judge: str | Path | None) -> tuple[EnsembleSpec, EnsembleSpec]:
    """The run's reward spec and judge spec (``iqa.ensemble`` / ``iqa.judge``), checked disjoint:
    training, ``qt-eval`` and the benchmarks resolve them here and nowhere else."""
    reward = reward_spec(ensemble)
    judge_spec = load_spec(judge) if judge else default_judge_spec()
    check_disjoint(reward, judge_spec)
    return reward, judge_spec
