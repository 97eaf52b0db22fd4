"""Fit the learned low-level IQA member: pyiqa's CNNIQA trained RankIQA-style on the data engine.

Why: the untrained offline members (NIQE, PIQE) rate generic naturalness, but some of our degradations
(haze, low light, colour casts) move those statistics little or the wrong way. No labelled IQA
data set can be downloaded here, yet the degradation engine produces *ordered* images for free:
the same clean image at increasing severity of the same degradation (same nuisance draws, only
the main strength changes) is worse at each step. RankIQA (Liu et al., ICCV 2017) learns a
quality score from such orderings with a pairwise margin ranking loss; we do that with pyiqa's
own ``CNNIQA`` architecture so the result loads through ``pyiqa.create_metric('cnniqa',
pretrained_model_path=...)`` like any other member.

Data. A *ladder* is one clean crop followed by ``rungs`` degraded copies at increasing severity
(stratified: rung k's severity is ``(k + 0.5 + U(-0.3, 0.3)) / rungs``, so neighbouring rungs
differ by >= 0.1). The degradation of a ladder is one of the 13 *kinds*: the five tasks in both
domains (``synthetic``, ``realistic``) plus generic Gaussian noise, Gaussian blur and JPEG.
Every pair (i < j) of a ladder is a training pair (rung i must score above rung j by
``margin``), which includes clean-vs-degraded pairs. Clean crops are half package photos
(scene crops at random zoom) and half dead-leaves images. Held out of training: the photos
``chelsea`` and ``grace_hopper`` (the NIQE fit holds out the same two) and every dead-leaves
image drawn from the held-out seed stream; the held-out pair accuracy is measured on them.

Input. pyiqa's ``InferenceModel`` hands the tensor to ``CNNIQA.forward`` unchanged (RGB in
[0, 1], no normalisation, no resize), so training feeds exactly that.

Output scale. A ranking loss fixes order, not offset or scale. After training, an affine map is
folded into the last layer so that the mean clean training crop scores 1 and the mean top-rung
(most severe) training crop scores 0. Individual images spread beyond that (on held-out 256 px
crops -2.0 .. 1.8, 1st-99th percentile; max/min pooling grows with image size), so the
ensemble's ``raw_range`` for the member is wider than (0, 1): see ``qt_train.iqa.spec``.

Determinism: same seed, same options, same torch thread count -> same weights (CPU).

Run: ``python -m calibration.rank_fit --out qt_train/iqa/assets/cnniqa_rank.pth``
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from qt_core.pixels import to_uint8
from qt_train.data.clean import HOLDOUT_PHOTOS
from qt_train.iqa.weights import bundled_assets_dir

#: Photos the fit never sees (same as the NIQE fit), for held-out checks.
HELD_OUT_PHOTOS = HOLDOUT_PHOTOS  # the one held-out list: qt_train/data/clean.py
#: Generic distortions trained alongside the task degradations.
GENERIC_KINDS: tuple[str, ...] = ("noise", "blur", "jpeg")
DEFAULT_OUT = bundled_assets_dir() / "cnniqa_rank.pth"


def all_kinds() -> tuple[str, ...]:
    """Every degradation kind: ``task/domain`` for the five tasks x two domains, then generic ones."""
    from qt_train.data.degrade import DOMAINS, TASKS

    return tuple(f"{t}/{d}" for t in TASKS for d in DOMAINS) + GENERIC_KINDS


@dataclass(frozen=True)
class FitOptions:
    """Everything that determines the fitted weights (recorded in the provenance JSON).

    Sizes are chosen for a 2-core CPU: 700 steps of 10 ladders x 5 images at 80-112 px crops
    (about 0.4 s a step on one busy core) plus ~20 s of data generation. ``n1_nodes``/``n2_nodes`` shrink pyiqa's 800-node head to 128 (pyiqa passes
    them through ``create_metric``); the 7x7x50 convolution is pyiqa's default.
    """

    steps: int = 700
    seed: int = 0
    ladders_per_kind: int = 48
    generic_factor: int = 2
    held_out_per_kind: int = 12
    rungs: int = 4
    pool_size: int = 144
    crop_sizes: tuple[int, ...] = (80, 96, 112)
    ladders_per_step: int = 10
    margin: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-4
    n_kers: int = 50
    ker_size: int = 7
    n1_nodes: int = 128
    n2_nodes: int = 128
    photo_share: float = 0.5
    held_out_photos: tuple[str, ...] = HELD_OUT_PHOTOS

    def arch_kwargs(self) -> dict[str, int]:
        """Keyword arguments for ``CNNIQA`` / ``pyiqa.create_metric('cnniqa', ...)``."""
        return {
            "ker_size": self.ker_size,
            "n_kers": self.n_kers,
            "n1_nodes": self.n1_nodes,
            "n2_nodes": self.n2_nodes,
        }


@dataclass(frozen=True)
class Ladders:
    """Image ladders, uint8 (L, rungs + 1, H, W, 3): index 0 is clean, then increasing severity."""

    images: np.ndarray
    kinds: tuple[str, ...]  # kind of each ladder
    severities: np.ndarray  # (L, rungs) float

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class FitResult:
    """The trained network's state dict (calibrated) and what was measured while fitting."""

    state_dict: dict
    train_pair_accuracy: float
    held_out_pair_accuracy: float
    held_out_by_kind: dict[str, float]
    calibration: dict[str, float]
    seconds: float
    final_loss: float


# --------------------------------------------------------------------------- degradations


def generic_distortion(kind: str, clean: np.ndarray, severity: float, seed: int) -> np.ndarray:
    """Noise, blur or JPEG on (N, H, W, 3) float32 [0, 1]; strength monotone in ``severity``.

    The same ``seed`` gives the same noise field at every severity (nested noise), so a ladder's
    rungs differ only in strength, as the task synthesizers guarantee.
    """
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    if kind == "noise":
        sigma = 0.005 + 0.12 * severity
        field = np.random.default_rng(seed).standard_normal(clean.shape).astype(np.float32)
        return np.clip(clean + sigma * field, 0.0, 1.0)
    if kind == "blur":
        sigma = 0.4 + 2.6 * severity
        return np.stack([cv2.GaussianBlur(img, (0, 0), sigma) for img in clean])
    if kind == "jpeg":
        quality = int(round(70 - 62 * severity))
        return np.stack([_jpeg(img, quality) for img in clean])
    raise ValueError(f"unknown generic distortion {kind!r}; known: {', '.join(GENERIC_KINDS)}")


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    u8 = cv2.cvtColor(to_uint8(img), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out.astype(np.float32) / 255.0


def distort(kind: str, clean: np.ndarray, severity: float, seed: int) -> np.ndarray:
    """Apply one kind (``task/domain`` or a generic name) to a batch (N, H, W, 3) float32."""
    if kind in GENERIC_KINDS:
        return generic_distortion(kind, clean, severity, seed)
    from qt_train.data.degrade import degrade

    task, _, domain = kind.partition("/")
    lq, _ = degrade(task, domain, clean, seed, severity=severity)
    return lq


def ladder_severities(rng: np.random.Generator, n: int, rungs: int) -> np.ndarray:
    """(n, rungs) increasing severities, one per stratum, neighbours >= 0.4 / rungs apart."""
    jitter = rng.uniform(-0.3, 0.3, (n, rungs))
    return np.clip((np.arange(rungs)[None] + 0.5 + jitter) / rungs, 0.0, 1.0)


def build_ladders(
    kind: str, clean: np.ndarray, rng: np.random.Generator, rungs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ladders of one kind for a batch of clean crops -> (uint8 (N, rungs+1, H, W, 3), severities).

    Each rung is one ``distort`` call per image with a per-image seed shared by all its rungs,
    so only the strength changes along a ladder.
    """
    n = clean.shape[0]
    sev = ladder_severities(rng, n, rungs)
    seeds = rng.integers(0, 2**31 - 1, n)
    out = np.empty((n, rungs + 1, *clean.shape[1:]), np.uint8)
    out[:, 0] = to_uint8(clean)
    for i in range(n):
        for k in range(rungs):
            out[i, k + 1] = to_uint8(distort(kind, clean[i : i + 1], float(sev[i, k]), int(seeds[i]))[0])
    return out, sev


# --------------------------------------------------------------------------- clean images


def clean_crops(
    n: int, size: int, rng: np.random.Generator, photos: Sequence[np.ndarray], photo_share: float
) -> np.ndarray:
    """``n`` clean crops (n, size, size, 3) float32: photos (scene crops) and dead leaves."""
    from qt_train.data.clean import dead_leaves, random_scene_crop

    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        if photos and rng.random() < photo_share:
            out[i] = random_scene_crop(photos[int(rng.integers(len(photos)))], size, rng)
        else:
            variant = "horizon" if rng.random() < 0.3 else "plain"
            out[i] = dead_leaves(1, size, rng, variant=variant)[0]
    return out


def split_photos(held_out: Sequence[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training photos, held-out photos) among the package photos, by name."""
    from qt_train.data.clean import package_photos

    photos = package_photos()
    train = [p.image for p in photos if p.name not in held_out]
    held = [p.image for p in photos if p.name in held_out]
    return train, held


def make_pool(
    per_kind: int, opts: FitOptions, rng: np.random.Generator, photos: Sequence[np.ndarray], factor: int = 1
) -> Ladders:
    """``per_kind`` ladders of every task kind and ``factor`` x as many of each generic kind.

    Why the factor: noise and JPEG pull the one-layer CNN against blur (noise adds the fine
    detail that blur removes), so they get more ladders than the task kinds, which it learns fast.
    """
    images, kinds, sevs = [], [], []
    for kind in all_kinds():
        count = per_kind * (factor if kind in GENERIC_KINDS else 1)
        clean = clean_crops(count, opts.pool_size, rng, photos, opts.photo_share)
        lad, sev = build_ladders(kind, clean, rng, opts.rungs)
        images.append(lad)
        sevs.append(sev)
        kinds.extend([kind] * count)
    return Ladders(images=np.concatenate(images), kinds=tuple(kinds), severities=np.concatenate(sevs))


# --------------------------------------------------------------------------- model and loss


def build_net(opts: FitOptions):
    """A fresh pyiqa ``CNNIQA`` (no pretrained weights, nothing fetched)."""
    from pyiqa.archs.cnniqa_arch import CNNIQA

    return CNNIQA(pretrained=None, **opts.arch_kwargs())


def to_tensor(u8: np.ndarray):
    """uint8 (..., H, W, 3) -> float32 (M, 3, H, W) in [0, 1]: exactly what pyiqa feeds CNNIQA."""
    import torch

    flat = u8.reshape(-1, *u8.shape[-3:])
    return torch.from_numpy(np.ascontiguousarray(flat.transpose(0, 3, 1, 2))).float() / 255.0


def ladder_rank_loss(scores, margin: float):
    """Mean hinge over every ordered pair of each ladder: max(0, margin - (q_i - q_j)), i < j.

    ``scores`` is (L, R): R rungs from best (clean) to worst.
    """
    import torch

    r = scores.shape[1]
    i, j = torch.triu_indices(r, r, offset=1)
    return torch.relu(margin - (scores[:, i] - scores[:, j])).mean()


def pair_accuracy(scores) -> float:
    """Share of ordered ladder pairs (i < j) with q_i > q_j."""
    import torch

    r = scores.shape[1]
    i, j = torch.triu_indices(r, r, offset=1)
    return float((scores[:, i] > scores[:, j]).float().mean())


def score_ladders(net, ladders: Ladders, batch: int = 16):
    """Eval-mode scores (L, rungs + 1) of whole pool images, without grad."""
    import torch

    net.eval()
    parts = []
    with torch.no_grad():
        for s in range(0, len(ladders), batch):
            chunk = ladders.images[s : s + batch]
            parts.append(net(to_tensor(chunk)).reshape(chunk.shape[0], chunk.shape[1]))
    return torch.cat(parts)


def sample_batch(ladders: Ladders, rng: np.random.Generator, opts: FitOptions) -> np.ndarray:
    """A training batch: random ladders, one random crop size per step, the same crop window and
    flip on every rung of a ladder (so the rungs still show the same content)."""
    idx = rng.choice(len(ladders), size=opts.ladders_per_step, replace=False)
    c = int(opts.crop_sizes[int(rng.integers(len(opts.crop_sizes)))])
    h, w = ladders.images.shape[2:4]
    out = np.empty((len(idx), ladders.images.shape[1], c, c, 3), np.uint8)
    for b, li in enumerate(idx):
        y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        crop = ladders.images[li, :, y : y + c, x : x + c]
        out[b] = crop[:, :, ::-1] if rng.random() < 0.5 else crop
    return out


def calibrate(net, ladders: Ladders, scores=None) -> dict[str, float]:
    """Fold an affine map into ``fc3`` so mean clean -> 1 and mean top rung -> 0; returns anchors.

    ``scores``: the net's eval scores of ``ladders`` if already computed.
    """
    import torch

    s = score_ladders(net, ladders) if scores is None else scores
    clean, worst = float(s[:, 0].mean()), float(s[:, -1].mean())
    if not clean > worst:
        raise RuntimeError(f"fit failed: mean clean score {clean:.4g} is not above the worst {worst:.4g}")
    a = 1.0 / (clean - worst)
    with torch.no_grad():
        net.fc3.weight.mul_(a)
        net.fc3.bias.mul_(a).sub_(a * worst)
    return {"clean_mean_before": clean, "worst_mean_before": worst, "scale": a}


# --------------------------------------------------------------------------- held-out evaluation

#: Severities of the validation ladders (the test and the benchmark).
EVAL_SEVERITIES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Seed of the held-out dead-leaves stream used by the test and the benchmark; the fit draws its
#: dead leaves from ``SeedSequence(opts.seed)`` children, a different stream.
EVAL_SEED = 20_240_301


def held_out_clean(n: int, size: int, seed: int = EVAL_SEED, held_out: Sequence[str] = HELD_OUT_PHOTOS) -> np.ndarray:
    """``n`` clean crops never used for fitting: held-out photos and dead leaves, alternating.

    Photo crops are scene crops at random zoom, dead leaves come from ``seed``'s own stream.
    """
    from qt_train.data.clean import dead_leaves, random_scene_crop

    _, photos = split_photos(held_out)
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        if photos and i % 2 == 0:
            out[i] = random_scene_crop(photos[(i // 2) % len(photos)], size, rng)
        else:
            out[i] = dead_leaves(1, size, rng, variant="horizon" if i % 4 == 3 else "plain")[0]
    return out


def severity_ladder(
    kind: str, clean: np.ndarray, seed: int, severities: Sequence[float] = EVAL_SEVERITIES
) -> np.ndarray:
    """(N, S, H, W, 3) float32: each clean image at every severity, same nuisance draws per image."""
    out = np.empty((clean.shape[0], len(severities), *clean.shape[1:]), np.float32)
    for i in range(clean.shape[0]):
        for k, s in enumerate(severities):
            out[i, k] = distort(kind, clean[i : i + 1], float(s), seed + i)[0]
    return out


def ladder_spearman(scores: np.ndarray, severities: Sequence[float] = EVAL_SEVERITIES) -> np.ndarray:
    """Per-image Spearman rho between quality order (-severity) and score; (N, S) -> (N,).

    +1: the score falls strictly as severity rises. A constant score row (no information) is 0.
    """
    from scipy.stats import spearmanr

    order = -np.asarray(severities, dtype=np.float64)
    rhos = []
    for row in np.asarray(scores, dtype=np.float64):
        if np.ptp(row) == 0.0 or not np.isfinite(row).all():
            rhos.append(0.0)
            continue
        rhos.append(float(spearmanr(order, row)[0]))
    return np.asarray(rhos)


# --------------------------------------------------------------------------- the fit


def fit(opts: FitOptions, log=None) -> FitResult:
    """Build the ladder pools, train with the ranking loss, calibrate; deterministic per seed."""
    import torch

    t0 = time.perf_counter()
    torch.manual_seed(opts.seed)
    train_seq, held_seq, step_seq = np.random.SeedSequence(opts.seed).spawn(3)
    train_photos, held_photos = split_photos(opts.held_out_photos)
    train = make_pool(
        opts.ladders_per_kind, opts, np.random.default_rng(train_seq), train_photos, opts.generic_factor
    )
    held = make_pool(opts.held_out_per_kind, opts, np.random.default_rng(held_seq), held_photos)
    if log:
        log(f"pools: {len(train)} train / {len(held)} held-out ladders ({time.perf_counter() - t0:.1f}s)")

    net = build_net(opts)
    optim = torch.optim.AdamW(net.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=max(opts.steps, 1))
    rng = np.random.default_rng(step_seq)
    loss_v = float("nan")
    for step in range(opts.steps):
        net.train()
        batch = sample_batch(train, rng, opts)
        scores = net(to_tensor(batch)).reshape(batch.shape[0], batch.shape[1])
        loss = ladder_rank_loss(scores, opts.margin)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        loss_v = float(loss.detach())
        if log and (step + 1) % 100 == 0:
            log(f"step {step + 1}/{opts.steps} loss {loss_v:.4f} ({time.perf_counter() - t0:.0f}s)")

    tr = score_ladders(net, train)  # a positive affine map keeps the order: accuracy before = after
    calib = calibrate(net, train, tr)
    ho = score_ladders(net, held)
    kinds = np.array(held.kinds)
    by_kind = {k: pair_accuracy(ho[torch.from_numpy(kinds == k)]) for k in all_kinds()}
    state = {k: v.detach().float().clone() for k, v in net.state_dict().items()}
    return FitResult(
        state_dict=state,
        train_pair_accuracy=pair_accuracy(tr),
        held_out_pair_accuracy=pair_accuracy(ho),
        held_out_by_kind=by_kind,
        calibration=calib,
        seconds=time.perf_counter() - t0,
        final_loss=loss_v,
    )


def save_weights(result: FitResult, path: str | Path, provenance: dict) -> Path:
    """Write ``{'params': state_dict}`` (what pyiqa's loader reads) and a ``.json`` sidecar, atomically."""
    import torch

    from qt_core.atomic import write_with_provenance

    buf = io.BytesIO()
    torch.save({"params": result.state_dict}, buf)
    return write_with_provenance(path, buf.getvalue(), provenance)


def provenance(opts: FitOptions, result: FitResult, command: str) -> dict:
    """What a reader needs to trust or reproduce the asset."""
    import pyiqa
    import torch

    return {
        "command": command,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "options": asdict(opts),
        "arch": {"pyiqa_metric": "cnniqa", "type": "CNNIQA", **opts.arch_kwargs()},
        "data": {
            "kinds": list(all_kinds()),
            "clean": "package photos (scene crops) + dead leaves (qt_train.data.clean)",
            "held_out_photos": list(opts.held_out_photos),
            "held_out_dead_leaves": "SeedSequence(seed).spawn(3)[1] stream",
        },
        "train_pair_accuracy": round(result.train_pair_accuracy, 4),
        "held_out_pair_accuracy": round(result.held_out_pair_accuracy, 4),
        "held_out_pair_accuracy_by_kind": {k: round(v, 4) for k, v in result.held_out_by_kind.items()},
        "calibration": result.calibration,
        "score_scale": "affine folded into fc3: mean clean training crop -> 1, mean top rung -> 0",
        "fit_seconds": round(result.seconds, 1),
        "final_loss": round(result.final_loss, 5),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "pyiqa_version": getattr(pyiqa, "__version__", "unknown"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: fit and write the asset + provenance."""
    d = FitOptions()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--ladders-per-kind", type=int, default=d.ladders_per_kind)
    ap.add_argument("--held-out-per-kind", type=int, default=d.held_out_per_kind)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    opts = replace(
        d,
        steps=args.steps,
        seed=args.seed,
        ladders_per_kind=args.ladders_per_kind,
        held_out_per_kind=args.held_out_per_kind,
    )
    result = fit(opts, log=lambda m: print(m, flush=True))
    argv_used = sys.argv[1:] if argv is None else list(argv)
    out = save_weights(result, args.out, provenance(opts, result, "python -m calibration.rank_fit " + " ".join(argv_used)))
    print(
        f"wrote {out}: pair accuracy train {result.train_pair_accuracy:.3f}, "
        f"held-out {result.held_out_pair_accuracy:.3f} ({result.seconds:.0f}s)"
    )
    for k, v in result.held_out_by_kind.items():
        print(f"  held-out {k:24s} {v:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
