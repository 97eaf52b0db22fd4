"""The IQA ensemble as data: which pyiqa metrics, how much each counts, how scores become levels.

Why data: adding a member (e.g. the learned CNNIQA coming from calibration) is one more
``Member`` entry in a YAML file, not code. The dataclasses hold only plain types (str, float,
int, bool, tuples, None) so a generic strict config loader can build them.

No torch or pyiqa import here: a spec can be built, validated and written without them.
"""

from __future__ import annotations

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
        ``$QT_IQA_WEIGHTS`` / the bundled ``calibration/assets`` (see ``weights.py``).
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


def _check_keys(d: dict, cls: type, where: str) -> None:
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def member_from_dict(d: dict[str, Any], where: str = "member") -> Member:
    """Build a Member from plain YAML types (lists become tuples, an options mapping becomes pairs)."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    _check_keys(d, Member, where)
    kw = dict(d)
    if "raw_range" in kw:
        kw["raw_range"] = tuple(kw["raw_range"])
    opts = kw.get("options", ())
    if isinstance(opts, dict):
        kw["options"] = tuple(sorted(opts.items()))
    elif opts:
        kw["options"] = tuple(tuple(p) for p in opts)
    try:
        return Member(**kw)
    except TypeError as exc:  # a missing required key
        raise ValueError(f"{where}: {exc}") from None


def spec_from_dict(d: dict[str, Any]) -> EnsembleSpec:
    """Build an EnsembleSpec from a mapping (as read from YAML); unknown keys raise ValueError."""
    if not isinstance(d, dict):
        raise ValueError(f"ensemble spec: expected a mapping, got {type(d).__name__}")
    _check_keys(d, EnsembleSpec, "ensemble spec")
    if "members" not in d:
        raise ValueError("ensemble spec: missing key 'members'")
    kw = dict(d)
    kw["members"] = tuple(
        member_from_dict(m, where=f"ensemble spec members[{i}]") for i, m in enumerate(d["members"])
    )
    if kw.get("thresholds") is not None:
        kw["thresholds"] = tuple(kw["thresholds"])
    return EnsembleSpec(**kw)


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


def load_spec(path: str | Path) -> EnsembleSpec:
    """Read an ensemble spec from a YAML file (top level = the spec mapping)."""
    from qt_train.config import read_yaml

    data = read_yaml(path)  # one-line errors for a missing file, bad YAML, deep nesting
    try:
        return spec_from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------- presets

#: NIQE raw range with the fitted pristine model, measured on the 9 package photos: whole photos
#: 1.4-6.9 clean, 5.6-15.3 under blur sigma 2 / noise 0.05 / JPEG q10; 256 px crops 6.3-19.9
#: clean (flat sky crops score high), 9-32 degraded. 2 maps to 1, 30 to 0.
NIQE_RANGE = (2.0, 30.0)
#: PIQE is defined on 0..100 (lower is better).
PIQE_RANGE = (0.0, 100.0)


#: The learned member's raw range. ``calibration/rank_fit.py`` folds an affine map into the last
#: layer so the mean clean training crop (144 px) scores 1 and the mean most-severe rung 0; single
#: images spread wider (max/min pooling grows with image size): on held-out 256 px ladders
#: (the benchmark's images and severities) the 1st-99th percentile is -2.0 .. 1.8. A (0, 1)
#: range clamped clean and mildly degraded images to the same value (ties: per-image rho fell to
#: 0.66 on dehaze), so the range covers the measured spread.
CNNIQA_RANGE = (-2.0, 2.0)
#: Head size of the fitted CNNIQA (pyiqa's default is 800/800); must match the weights file.
CNNIQA_OPTIONS: tuple[tuple[str, Any], ...] = (("n1_nodes", 128), ("n2_nodes", 128))


def default_spec() -> EnsembleSpec:
    """The offline ensemble: NIQE (fitted pristine model) + PIQE + the learned CNNIQA. No downloads.

    Weights NIQE 0.2 / PIQE 0.1 / CNNIQA 0.7. Why (measured, docs/results.md): CNNIQA
    (``calibration/rank_fit.py``) is trained to rank exactly our degradations (five tasks, both
    domains, noise/blur/JPEG) and ranks every task on held-out images (rho ~0.9-1); NIQE ranks
    rain, snow and synthetic low light but not haze or underwater casts (naturalness statistics
    they barely move); PIQE ranks haze and low light but *inverts* rain and snow (streaks and
    flakes read as "activity"), so it gets the least weight. CNNIQA does not get all of it: a
    small CNN is the easiest member for a preference loss to exploit, and NIQE/PIQE keep 30 %
    of the score tied to independent, hand-crafted evidence.

    Gradients in ``Ensemble.reward``: NIQE (pyiqa's rounding is a straight-through round) and
    CNNIQA (a plain CNN); PIQE is not differentiable (hard thresholds).
    """
    return EnsembleSpec(
        members=(
            Member(
                name="niqe",
                weight=0.2,
                direction="lower",
                raw_range=NIQE_RANGE,
                weights_path="niqe_pristine.mat",
                differentiable=True,
                min_size=96,
            ),
            Member(name="piqe", weight=0.1, direction="lower", raw_range=PIQE_RANGE, min_size=16),
            Member(
                name="cnniqa",
                weight=0.7,
                direction="higher",
                raw_range=CNNIQA_RANGE,
                weights_path="cnniqa_rank.pth",
                differentiable=True,
                options=CNNIQA_OPTIONS,
                min_size=16,
            ),
        ),
        levels=8,
        thresholds=None,
        block=144,
    )


def reference_spec() -> EnsembleSpec:
    """The paper's mix: 0.4 MUSIQ + 0.2 CLIP-based + 0.4 BRISQUE. Needs downloaded weights.

    Constructing it touches nothing; building an ``Ensemble`` from it raises a clear
    FileNotFoundError for each missing file. The paper's CLIP member is DA-CLIP's degradation
    probability, which pyiqa lacks; pyiqa's ``clipiqa`` (CLIP RN50 + antonym prompts, score in
    [0, 1]) stands in and takes the CLIP checkpoint as its ``backbone`` argument.
    BRISQUE uses the paper's mapping (100 - b) / 100, but clamped to [0, 1].
    """
    return EnsembleSpec(
        members=(
            Member(
                name="musiq",
                weight=0.4,
                direction="higher",
                raw_range=(0.0, 100.0),
                weights_path="musiq_koniq_ckpt-e95806b9.pth",
                differentiable=True,
                min_size=32,
            ),
            Member(
                name="clipiqa",
                weight=0.2,
                direction="higher",
                raw_range=(0.0, 1.0),
                weights_path="clip/RN50.pt",
                differentiable=True,
                weights_arg="backbone",
                min_size=32,
            ),
            Member(
                name="brisque",
                weight=0.4,
                direction="lower",
                raw_range=(0.0, 100.0),
                weights_path="brisque_svm_weights.pth",
                min_size=32,
            ),
        ),
        levels=8,
        thresholds=None,
        block=144,
    )


# --------------------------------------------------------------------------- the judge
#: Judge ranges (lower is better for both): NIQE with the published pristine model rates whole
#: real photos 3-6 and 256 px restorations 4-12; BRISQUE-LIVE spans ~0-100 (LIVE's DMOS scale),
#: restorations 10-60.
NIQE_ORIGINAL_RANGE = (2.0, 12.0)
BRISQUE_LIVE_RANGE = (0.0, 80.0)


def default_judge_spec() -> EnsembleSpec:
    """The judge: IQA models calibrated outside this project that no student optimises — NIQE
    with the published pristine model and BRISQUE with the LIVE-trained SVR, equal weights.

    Benchmarks and ``qt-eval`` report it beside the reward ensemble; a gain that only the reward
    sees is reward hacking. ``check_disjoint`` refuses a reward that contains a judge member.
    """
    return EnsembleSpec(
        members=(
            Member(name="niqe_original", weight=0.5, direction="lower", raw_range=NIQE_ORIGINAL_RANGE,
                   min_size=96),
            Member(name="brisque_live", weight=0.5, direction="lower", raw_range=BRISQUE_LIVE_RANGE,
                   min_size=16),
        ),
        levels=8,
        thresholds=None,
        block=144,
    )


def check_disjoint(reward: EnsembleSpec, judge: EnsembleSpec) -> None:
    """A judge member the student also optimises is no judge: refuse the pair."""
    shared = sorted({m.name for m in reward.members} & {m.name for m in judge.members})
    if shared:
        raise ValueError(f"IQA member(s) {', '.join(shared)} are in both the reward ensemble and the judge; "
                         "remove them from one (iqa.ensemble / iqa.judge)")


def reward_and_judge(ensemble: str | Path | None, judge: str | Path | None) -> tuple[EnsembleSpec, EnsembleSpec]:
    """The run's reward spec and judge spec (files, else the defaults), checked to be disjoint."""
    reward_spec = load_spec(ensemble) if ensemble else default_spec()
    judge_spec = load_spec(judge) if judge else default_judge_spec()
    check_disjoint(reward_spec, judge_spec)
    return reward_spec, judge_spec
