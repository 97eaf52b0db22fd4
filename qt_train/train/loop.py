"""The training loop: stage 1 (supervised base model) then stage 2 (the semi-supervised method).

Reads top to bottom: check everything that can fail on bad input, build, restore, loop.
Every batch and every random draw is a pure function of (seed, iteration, rank), and the
checkpoint holds model, EMA teacher, optimiser, memory bank, RNG states and config, so
`--resume` after a crash (even SIGKILL) ends bit-identical to an uninterrupted run on CPU.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qt_core.config import changed_keys, to_dict
from qt_train.method.levels import quantile_cuts
from qt_train.schema import RunConfig, degradation_params, model_options
from qt_train.train.distributed import (
    Dist,
    any_rank,
    average_gradients,
    broadcast_module,
    gather_objects,
    mean_scalar,
    setup,
    teardown,
)


class TrainingDiverged(ValueError):
    """A loss became NaN/inf; the message names the iteration and the loss term.

    A ValueError so the CLI reports it in one line: the fix is in the config or the data.
    """


def iteration_seed(seed: int, it: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, it, rank, 7]).generate_state(1, np.uint64)[0] >> 1)


def learning_rate(cfg: RunConfig, it: int, base_iters: int) -> float:
    """Stage 1 trains at train.base_lr; stage 2 at optim.lr with optional warm-up and cosine decay."""
    t = cfg.train
    if it < base_iters:
        return t.base_lr
    step, total = it - base_iters, max(1, t.iterations)
    lr = t.optim.lr
    if t.optim.warmup and step < t.optim.warmup:
        return lr * (step + 1) / t.optim.warmup
    if t.optim.schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
    return lr


def make_optimizer(model: torch.nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    o = cfg.train.optim
    return torch.optim.AdamW(model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)


def rng_states() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist(), "python": random.getstate()[1]}


def restore_rng(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np_state = np.random.get_state()
    np.random.set_state((np_state[0], np.array(states["numpy"], dtype=np.uint32), *np_state[2:]))
    py = random.getstate()
    random.setstate((py[0], tuple(states["python"]), py[2]))


#: Settings a resumed run may change (the budget and the logging); any other change to the
#: config of a checkpoint is refused unless ``resume_override``: a resumed run with another
#: method, seed or batch would silently be a different experiment.
RESUMABLE = ("out", "train.iterations", "train.log_every", "train.eval_every", "train.ckpt_every",
             "train.image_every", "train.keep_checkpoints", "train.threads", "train.device")


def train(cfg: RunConfig, run_dir: str | Path, resume: bool = False, argv: list[str] | None = None,
          source: str = "<config>", progress: bool = True, resume_override: bool = False) -> Path:
    """Train as `cfg` says into `run_dir`; returns the path of the final checkpoint."""
    d = setup(cfg.train.device)
    try:
        return _train(cfg, Path(run_dir), resume, argv or [], source, progress, d, resume_override)
    finally:
        teardown(d)


def _train(cfg: RunConfig, run_dir: Path, resume: bool, argv: list[str], source: str, progress: bool,
           d: Dist, resume_override: bool = False) -> Path:
    from qt_core.config import save_run_record
    from qt_train.checkpoint import load_checkpoint, save_checkpoint
    from qt_train.data.streams import LabelledStream, RealPool, held_out_pairs
    from qt_train.method import objectives
    from qt_train.method.bank import MemoryBank
    from qt_train.method.ema import ema_decay, ema_update
    from qt_train.models import build_backbone, load_state_dict_checked
    from qt_train.train.logger import RunLogger

    t, m = cfg.train, cfg.method

    # --- 1. Everything that can fail on bad input, before any work and before touching run_dir.
    params = degradation_params(cfg, source)
    arch_cfg = model_options(cfg, source)
    last = run_dir / "last.ckpt"
    if resume and not last.is_file():
        raise FileNotFoundError(f"--resume: no {last} to continue from — drop --resume to start a new run")
    if not resume and last.exists():
        raise FileExistsError(f"{run_dir} already holds a run — pass --resume to continue it or choose another --run-dir")
    state = load_checkpoint(last, expect_arch=cfg.model.arch) if resume else None
    if state is not None and "config" in state:
        changed = [k for k in changed_keys(state["config"], to_dict(cfg)) if k not in RESUMABLE]
        if changed and not resume_override:
            raise ValueError(f"--resume: the config differs from {last}'s in {', '.join(changed[:6])} — resume "
                             "with the run's own settings, or pass --resume-override to continue anyway")
    init = load_checkpoint(t.init, expect_arch=cfg.model.arch) if (t.init and not resume) else None
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(cfg.seed)
    student = build_backbone(cfg.model.arch, arch_cfg).to(t.device)
    if init is not None:  # a compatible state dict from anywhere, checked key by key
        load_state_dict_checked(student, init.get("ema") or init["model"], cfg.model.arch)
    base_iters = 0 if t.init else t.base_iterations
    total = base_iters + t.iterations
    entry = objectives.METHODS[t.method]  # what the method is: its objective, IQA, bank, conditioning
    semi = entry.terms is not None and t.iterations > 0
    labelled = LabelledStream(cfg, params)
    real = RealPool(cfg, params) if semi else None
    ensemble = None
    if semi and entry.uses_iqa:
        from qt_train.iqa import Ensemble
        from qt_train.iqa.spec import reward_and_judge

        spec, _ = reward_and_judge(cfg.iqa.ensemble, cfg.iqa.judge)  # a judge the student optimises is refused here
        ensemble = Ensemble(spec, device=t.device, weights_dir=cfg.iqa.weights_dir)
    heldout = held_out_pairs(cfg, params, "realistic") if cfg.data.n_val else None

    # --- 2. Build: EMA teacher, optimiser, memory bank.
    teacher = copy.deepcopy(student).requires_grad_(False)
    opt = make_optimizer(student, cfg)
    bank = MemoryBank(k=entry.bank_k or m.bank_size)
    start = 0

    # --- 3. Restore a run exactly where it stopped.
    if state is not None:
        load_state_dict_checked(student, state["model"], cfg.model.arch)
        load_state_dict_checked(teacher, state["ema"], cfg.model.arch)
        start = int(state["iteration"])
        opt.load_state_dict(state["optimizer"])
        bank.load_state_dict(state["bank"])
        restore_rng(state["rng"])
    broadcast_module(student, d)
    broadcast_module(teacher, d)

    log = RunLogger(run_dir, enabled=d.main, total=total, start=start, progress=progress)
    if d.main:
        save_run_record(run_dir, cfg, argv, append=state is not None)

    def checkpoint(it_done: int) -> None:
        banks = gather_objects(bank.state_dict(), d)  # each rank owns a disjoint set of ids
        if not d.main:
            return
        merged = {**banks[0], "entries": {k: v for b in banks for k, v in b["entries"].items()}}
        cuts = None
        if m.level_quantiles and ensemble is not None:  # the levels' meaning, for qt-eval and the export
            q = torch.tensor([e["quality"] for es in merged["entries"].values() for e in es], dtype=torch.float64)
            found = quantile_cuts(q, ensemble.spec.levels)
            cuts = None if found is None else found.tolist()
        save_checkpoint(last, keep=t.keep_checkpoints, state={
            "arch": cfg.model.arch, "arch_config": to_dict(arch_cfg), "task": cfg.task, "method": t.method,
            "iteration": it_done, "stage": "base" if it_done <= base_iters else "semi",
            "model": student.state_dict(), "ema": teacher.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": {"schedule": t.optim.schedule, "iteration": it_done},
            "bank": merged, "level_cuts": cuts, "rng": rng_states(), "config": to_dict(cfg),
        })

    # --- 4. The loop.
    for it in range(start, total):
        stage = "base" if it < base_iters else "semi"
        if it == base_iters and it > 0:
            opt = make_optimizer(student, cfg)  # stage 2 starts with fresh Adam moments
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, it, base_iters)
        gen = torch.Generator().manual_seed(iteration_seed(cfg.seed, it, d.rank))
        tick = time.perf_counter()

        conditioned = stage == "semi" and objectives.conditioned(t.method, m)
        lq, gt = labelled.batch(it, d.rank, t.batch)
        terms = objectives.labelled_terms(student, lq.to(t.device), gt.to(t.device),
                                     m.top_level if conditioned else None, m.sup_weight if stage == "semi" else 1.0)
        if stage == "semi" and semi:
            ids, flips = real.draw(it, d.rank, d.world, t.real_batch)
            batch = objectives.RealBatch(ids, real.get(ids).to(t.device), flips.to(t.device))
            step = objectives.SemiStep(student, teacher, ensemble, bank, batch, m, gen, it - base_iters,
                                       ensemble.spec.block if ensemble is not None else 0)
            terms |= entry.terms(step)
        loss = sum(terms.values())

        bad = [name for name, v in terms.items() if not bool(torch.isfinite(v.detach()))]
        if any_rank(bool(bad), d):
            name = bad[0] if bad else "on another rank"
            raise TrainingDiverged(
                f"iteration {it}: loss '{name}' is {terms[name].item() if bad else 'not finite'} — "
                "lower train.optim.lr / train.base_lr or check the data; "
                + (f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet")
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(list(student.parameters()), d)
        if t.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(student.parameters(), t.optim.grad_clip)
        opt.step()
        decay = ema_decay(it, t.ema_decay) if stage == "base" else t.ema_decay
        ema_update(teacher, student, decay)

        it_done = it + 1
        scalars = {f"loss/{k}": mean_scalar(float(v.detach()), d) for k, v in terms.items()}
        scalars["lr"] = opt.param_groups[0]["lr"]
        scalars["time/iteration_s"] = time.perf_counter() - tick
        log.step(it_done, stage, scalars, every=t.log_every)
        if heldout is not None and (it_done % t.eval_every == 0 or it_done == total) and d.main:
            log.evaluate(it_done, teacher, heldout, m.top_level if conditioned else None)
        if d.main and (it_done % t.image_every == 0 or it_done == total):
            log.images(it_done, lq, gt, teacher, m.top_level if conditioned else None)
        if it_done % t.ckpt_every == 0 or it_done == total:
            checkpoint(it_done)
    if start >= total and d.main:
        log.note(f"nothing to do: {last} is already at iteration {start} of {total}")
    log.close()
    if d.main:
        from qt_core.atomic import atomic_write_text

        summary = {"iterations": total, "checkpoint": str(last), "method": t.method, **log.last_eval}
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    return last
