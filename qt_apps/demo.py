"""`make demo`: the product working, through its public commands.

  python -m qt_apps.demo --out runs/demo [--tasks dehaze,derain] [--iterations 40] [--frames 48] [--verbose]

The stages, in the order they run (one function each, below):

  clips          a short `realistic`-domain clip of each task: the data engine's degradation over a
                 held-out photo while the camera pans (RUN/clips/TASK.mp4)
  restore TASK   qt-run zoo:TASK (INT8 OpenVINO) on that clip: restored and side-by-side videos, the
                 --summary JSON, and the zoo entry's own evaluation and gate report (RUN/restore/TASK/)
  photos TASK    qt-run zoo:TASK on the real photographs in ../shared/data/real/<category>/ when that
                 folder exists (RUN/real/TASK/{input,restored}/)
  frames         unlabelled realistic hazy frames from qt-data (RUN/train/frames/)
  finetune       qt-train: QualiTeacher fine-tuning of zoo:dehaze on those frames, a demo budget; with no
                 trained zoo:dehaze a small base model is trained first (RUN/train/finetune/)
  evaluate       qt-eval: held-out PSNR/SSIM and the per-level curve (RUN/train/eval/)
  export         qt-export --int8 through the consistency gate (RUN/train/export/)
  run            qt-run with that artifact on the dehaze clip (RUN/train/run/)
  report         RUN/report.html (qt_apps/report.py)

A task whose zoo entry has no trained model yet is skipped with the zoo's own message. Each stage
writes stage.json with a hash of its inputs (the zoo files' sha256, its settings, the hashes of the
stages it reads and its own code): a second run reuses every stage whose hash matches and whose
outputs exist. Stages are built in RUN/.partial/ and renamed into place, so an interrupted demo
resumes at the stage it was in; the training stage continues from its last checkpoint
(qt-train --resume). Stage timings go to RUN/timings.json; each tool's output to RUN/logs/.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qt_apps.report import read_json
from qt_core.cli import OneLineParser, run_main
from qt_core.hashing import sha256_file

PROG = "qt-demo"
REPO = Path(__file__).resolve().parents[1]
TASKS = ("dehaze", "derain", "desnow", "lowlight", "underwater")
#: ../shared/data/real/<category> per task (the same table as bench/claim.py's REAL_DIRS)
REAL_DIRS = {"dehaze": "hazy", "derain": "rainy", "desnow": "snowy", "lowlight": "lowlight", "underwater": "underwater"}
#: a committed claim-benchmark result the report shows, when the repository has one
CLAIM_FILES = (REPO / "docs" / "claim.json",)
#: the public commands, run as ``python -m`` of this interpreter (the same code as the installed scripts)
TOOLS = {"qt-data": "qt_train.data.cli", "qt-train": "qt_train.train.cli", "qt-eval": "qt_train.eval_cli",
         "qt-export": "qt_export.cli", "qt-run": "qt_runtime.cli"}
#: held-out photos (never trained on) the clips pan across
CLIP_PHOTOS = {"dehaze": "chelsea", "derain": "grace_hopper", "desnow": "chelsea", "lowlight": "grace_hopper",
               "underwater": "chelsea"}
FINETUNE_TASK = "dehaze"
STAGE = "stage.json"


# ----------------------------------------------------------------------------- the stages

def make_clips(dest: Path, demo: Demo, tasks: Sequence[str]) -> str:
    """A realistic-domain clip per task: a camera panning across a held-out photo under one degradation."""
    for task in tasks:
        synth_clip(dest / f"{task}.mp4", task, demo.opts.frames, demo.opts.size, demo.opts.seed, demo.opts.fps)
    w, h = demo.opts.size
    return f"{len(tasks)} realistic-domain clips, {demo.opts.frames} frames of {w}x{h}"


def restore_clip(dest: Path, demo: Demo, task: str, clip: Path) -> str:
    """qt-run zoo:TASK (INT8 OpenVINO) on the clip; a side-by-side video; the zoo entry's own measurements."""
    from qt_apps.report import side_by_side
    from qt_core import zoo

    restored, summary = dest / f"{task}-restored.mp4", dest / f"{task}-restored.json"
    demo.tool("qt-run", f"zoo:{task}", "--source", clip, "--sink", restored, "--summary", summary, *demo.no_progress)
    side_by_side(clip, restored, dest / f"{task}-side-by-side.mp4")
    entry = zoo.entry(f"zoo:{task}")  # what the zoo measured when the entry was built, for the report
    if entry.data.get("eval"):
        shutil.copy2(entry.checked(entry.data["eval"]), dest / "zoo-eval.json")
    artifact = zoo.resolve_artifact(f"zoo:{task}")
    (dest / f"zoo-{task}-int8").mkdir()
    for name in ("manifest.json", "report.json"):
        if (artifact / name).is_file():
            shutil.copy2(artifact / name, dest / f"zoo-{task}-int8" / name)
    s = json.loads(summary.read_text())
    return f"qt-run zoo:{task} (INT8 OpenVINO): {s['frames_out']} frames, {s['fps_mean']:.1f} FPS"


def restore_photos(dest: Path, demo: Demo, task: str, photos: Sequence[Path]) -> str:
    """qt-run zoo:TASK on real photographs (a folder source, a folder sink); restored/ keeps their names."""
    import cv2

    (dest / "input").mkdir()
    for p in photos:
        shutil.copy2(p, dest / "input" / p.name)
    frames = dest / "frames"
    demo.tool("qt-run", f"zoo:{task}", "--source", dest / "input", "--sink", f"{frames}/",
              "--summary", dest / ".qt-run.json", *demo.no_progress)
    inputs = sorted((dest / "input").iterdir())  # the folder source's order: sorted names
    outputs = sorted(frames.glob("*.png"))
    if len(outputs) != len(inputs):
        raise ValueError(f"qt-run restored {len(outputs)} of the {len(inputs)} photos in {dest / 'input'}")
    (dest / "restored").mkdir()
    for src, out in zip(inputs, outputs, strict=True):
        if not cv2.imwrite(str(dest / "restored" / src.name), cv2.imread(str(out))):
            raise ValueError(f"cannot write {dest / 'restored' / src.name}")
    shutil.rmtree(frames)
    return f"qt-run zoo:{task} on {len(photos)} real photos from {photos[0].parent}"


def make_frames(dest: Path, demo: Demo) -> str:
    """Unlabelled realistic-domain hazy frames (qt-data; their clean halves are never used)."""
    o = demo.opts
    demo.tool("qt-data", "make", "--task", FINETUNE_TASK, "--domain", "realistic", "--n", o.unlabelled,
              "--size", o.frame_size, "--seed", o.seed + 1, "--out", dest / "pairs")
    return f"{o.unlabelled} unlabelled realistic {FINETUNE_TASK} frames of {o.frame_size} px (qt-data make)"


def finetune(dest: Path, demo: Demo, resume: bool, config: Path, init: str | None, frames: Path) -> str:
    """qt-train: QualiTeacher from the zoo model on unlabelled frames (no zoo model: a small base model first)."""
    o = demo.opts
    run = dest / "run"
    resume = resume and (run / "last.ckpt").is_file()
    if not resume:
        shutil.rmtree(run, ignore_errors=True)
    semi = o.iterations
    sets = [
        "train.method=qualiteacher", f"data.real={frames}", f"train.iterations={semi}", f"data.patch={o.patch}",
        f"data.size={max(o.patch, 128)}", "data.n_train=64", "data.n_val=0", f"train.batch={o.batch}",
        "train.real_batch=2", "train.threads=0", f"train.log_every={max(1, semi // 4)}",
        f"train.ckpt_every={max(1, semi // 4)}", "train.eval_every=1000000", "train.image_every=1000000",
        # every piece of the method runs within the demo's budget
        f"method.preference_start={semi // 2}", f"method.consistency_start={semi // 2}",
        *([f"train.init={init}"] if init else [f"train.base_iterations={o.base_iterations}"]),
        *o.train_set,
    ]
    demo.tool("qt-train", "--config", config, "--run-dir", run, *(a for s in sets for a in ("--set", s)),
              *(["--resume"] if resume else []), *demo.no_progress)
    what = f"QualiTeacher fine-tuning of {init}" if init else f"a base model ({o.base_iterations} iterations), then QualiTeacher"
    return f"{what}: {semi} iterations on unlabelled frames" + (" (resumed from its last checkpoint)" if resume else "")


def evaluate(dest: Path, demo: Demo, checkpoint: Path, start: str | None) -> str:
    """qt-eval: held-out pairs of both domains, PSNR/SSIM, judge and reward scores, the per-level curve.
    The model the fine-tuning started from is evaluated on the same pairs: the line says what it changed."""
    def qt_eval(model: object, folder: Path) -> dict[str, Any]:
        demo.tool("qt-eval", model, "--out", folder, "--size", demo.opts.eval_size,
                  "--limit", demo.opts.eval_limit, *demo.verbose)
        return json.loads((folder / "results.json").read_text())

    r = qt_eval(checkpoint, dest / "eval")
    rs = r["paired"]["realistic"]
    before = f"{start} {qt_eval(start, dest / 'start')['paired']['realistic']['psnr']:.2f}, " if start else ""
    rho = ((r.get("level_curve") or {}).get("judge") or {}).get("spearman")
    return (f"held-out realistic PSNR {rs['psnr']:.2f} dB ({before}input {rs['input_psnr']:.2f}; {rs['n']} pairs)"
            + ("" if rho is None or rho != rho else f", per-level ρ by the judge {rho:+.2f}"))


def export(dest: Path, demo: Demo, checkpoint: Path, calib: Path) -> str:
    """qt-export: INT8 OpenVINO (any frame size), shipped only if it passes the consistency gate."""
    o = demo.opts
    out = dest / f"{FINETUNE_TASK}-finetuned-int8"
    demo.tool("qt-export", checkpoint, "--target", "cpu", "--int8", "--dynamic", "--calib", calib,
              "--calib-frames", o.unlabelled - o.gate_frames, "--gate-frames", o.gate_frames,
              "--size", f"{o.frame_size}x{o.frame_size}", "--out", out, *demo.no_progress, *demo.verbose)
    report = json.loads((out / "report.json").read_text())
    c = report["candidates"][report["chosen"]]
    return f"INT8 OpenVINO, gate passed: {c['psnr_vs_fp32']:.1f} dB vs FP32 (worst frame {c['psnr_min']:.1f} dB)"


def run_artifact(dest: Path, demo: Demo, artifact: Path, clip: Path) -> str:
    """qt-run with the demo's own artifact on the dehaze clip."""
    from qt_apps.report import side_by_side

    restored, summary = dest / f"{FINETUNE_TASK}-finetuned.mp4", dest / f"{FINETUNE_TASK}-finetuned.json"
    demo.tool("qt-run", artifact, "--source", clip, "--sink", restored, "--summary", summary, *demo.no_progress)
    side_by_side(clip, restored, dest / f"{FINETUNE_TASK}-finetuned-side-by-side.mp4")
    s = json.loads(summary.read_text())
    return f"qt-run {artifact.name}: {s['frames_out']} frames, {s['fps_mean']:.1f} FPS"


def write_report(dest: Path, demo: Demo, claim: Path | None) -> str:
    """report.html from every result file of the run (and the committed claim result, if any)."""
    from qt_apps.report import build_report

    report = build_report(demo.out, demo.out / "report.html", claim)  # written atomically, in place
    return f"{report.name}, self-contained (opens offline)" + (f"; claim table from {claim}" if claim else "")


def demo_plan(demo: Demo) -> Path:
    """The whole demo, top to bottom; returns the report's path."""
    from qt_core import zoo

    o, out = demo.opts, demo.out
    trained: dict[str, dict[str, Any]] = {}
    for task in o.tasks:
        try:
            entry = zoo.entry(f"zoo:{task}")
            if not entry.trained:
                raise entry.not_trained()
        except zoo.ZooError as exc:  # not in this zoo, or no trained model yet: the zoo says how to make one
            demo.skip(task, str(exc))
            continue
        zoo.resolve_artifact(f"zoo:{task}")  # a damaged entry stops the demo: every file matches its sha256
        trained[task] = entry.data

    clip = {task: {"task": task, "frames": o.frames, "size": o.size, "fps": o.fps, "seed": o.seed,
                   "code": digest(inspect.getsource(synth_clip))} for task in TASKS}  # what each clip is
    demo.stage("clips", out / "clips", {"clips": list(clip.values())}, make_clips, TASKS)
    for task in trained:
        demo.stage(f"restore {task}", out / "restore" / task, {"zoo": trained[task]["sha256"], "clip": clip[task]},
                   restore_clip, task, out / "clips" / f"{task}.mp4")
    if not o.real.is_dir():
        demo.skip("photos", f"no real photographs here: {o.real} does not exist")
    for task in trained if o.real.is_dir() else ():
        photos = real_photos(o.real, task)
        if not photos:
            demo.skip(f"photos {task}", f"no photos in {o.real / REAL_DIRS[task]}")
            continue
        demo.stage(f"photos {task}", out / "real" / task,
                   {"zoo": trained[task]["sha256"], "photos": [[p.name, sha256_file(p)] for p in photos]},
                   restore_photos, task, photos)

    # a demo-budget training: fine-tune -> evaluate -> export through the gate -> qt-run
    train, base = out / "train", trained.get(FINETUNE_TASK)
    unlabelled = train / "frames" / "pairs" / "lq"
    ckpt = train / "finetune" / "run" / "last.ckpt"
    artifact = train / "export" / f"{FINETUNE_TASK}-finetuned-int8"
    frames = demo.stage("frames", train / "frames", {"n": o.unlabelled, "size": o.frame_size, "seed": o.seed},
                        make_frames)
    if base is None:
        demo.note(f"no trained zoo:{FINETUNE_TASK}: the demo trains a small base model first")
    config = (zoo.entry(f"zoo:{FINETUNE_TASK}").checked(base["config"]) if base and base.get("config")
              else REPO / "configs" / f"{FINETUNE_TASK}.yaml")  # the zoo model's own config: its architecture
    budget = {k: getattr(o, k) for k in ("iterations", "base_iterations", "patch", "batch", "train_set")}
    start = f"zoo:{FINETUNE_TASK}" if base else None  # the model the fine-tuning starts from
    tuned = demo.stage("finetune", train / "finetune",
                       {"zoo": base and base["sha256"], "frames": frames, "config": sha256_file(config), **budget},
                       finetune, config, start, unlabelled, resumable=True)
    demo.stage("evaluate", train / "eval", {"train": tuned, "size": o.eval_size, "limit": o.eval_limit,
                                            "start": base and base["sha256"]}, evaluate, ckpt, start)
    exported = demo.stage("export", train / "export", {"train": tuned, "frames": frames, "gate": o.gate_frames},
                          export, ckpt, unlabelled)
    demo.stage("run", train / "run", {"export": exported, "clip": clip[FINETUNE_TASK]}, run_artifact, artifact,
               out / "clips" / f"{FINETUNE_TASK}.mp4")

    from qt_apps import report as report_module

    claim = o.claim if o.claim is not None else next((p for p in CLAIM_FILES if p.is_file()), None)
    demo.stage("report", out / "report", {"stages": demo.hashes(), "claim": claim and sha256_file(claim),
                                          "report.py": sha256_file(Path(report_module.__file__))},
               write_report, claim, extra_outputs=("../report.html",))
    return out / "report.html"


# ----------------------------------------------------------------------------- helpers

def synth_clip(path: Path, task: str, frames: int, size: tuple[int, int], seed: int, fps: float) -> None:
    """``frames`` frames of ``size`` (W, H): a camera panning diagonally across a held-out package photo
    under the task's `realistic` degradation (one seed for every frame: the weather stays put)."""
    import math

    import cv2
    import numpy as np

    from qt_core.pixels import to_uint8
    from qt_train.data.clean import HOLDOUT_PHOTOS, package_photos
    from qt_train.data.degrade import degrade

    photos = {p.name: p.image for p in package_photos()}
    name = next((n for n in (CLIP_PHOTOS.get(task), *HOLDOUT_PHOTOS) if n in photos), None)
    if name is None:
        raise ValueError(f"none of the held-out photos {', '.join(HOLDOUT_PHOTOS)} is installed "
                         "(scikit-image and matplotlib ship them): reinstall with make install")
    w, h = size
    photo = photos[name]
    scale = max(1.25 * h / photo.shape[0], 1.25 * w / photo.shape[1])
    big = cv2.resize(photo, (math.ceil(photo.shape[1] * scale), math.ceil(photo.shape[0] * scale)),
                     interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    dy, dx, steps = big.shape[0] - h, big.shape[1] - w, max(frames - 1, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    try:
        for i in range(frames):
            y, x = round(i * dy / steps), round(i * dx / steps)
            lq, _ = degrade(task, "realistic", np.ascontiguousarray(big[y:y + h, x:x + w]), seed, severity=0.6)
            writer.write(cv2.cvtColor(to_uint8(lq), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def real_photos(root: Path, task: str) -> list[Path]:
    """The readable photos of ``root/<category>`` the report can show (sorted), or none."""
    import cv2

    from qt_apps.report import IMAGE_EXTS

    folder = root / REAL_DIRS[task]
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_EXTS and cv2.imread(str(p)) is not None]


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------- stage machinery

@dataclass(frozen=True)
class Options:
    tasks: tuple[str, ...]
    frames: int
    size: tuple[int, int]  # (W, H)
    fps: float
    seed: int
    real: Path
    unlabelled: int
    frame_size: int
    iterations: int
    base_iterations: int
    patch: int
    batch: int
    eval_size: int
    eval_limit: int
    gate_frames: int
    train_set: tuple[str, ...]
    claim: Path | None


@dataclass
class Demo:
    out: Path
    opts: Options
    verbose_logs: bool = False
    bars: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list)
    _slug: str = "demo"
    _commands: list[str] = field(default_factory=list)

    @property
    def no_progress(self) -> list[str]:
        return [] if self.bars else ["--no-progress"]

    @property
    def verbose(self) -> list[str]:
        return ["--verbose"] if self.verbose_logs else []

    def hashes(self) -> dict[str, str]:
        return {r["stage"]: r["hash"] for r in self.rows if r.get("hash")}

    def _print(self, name: str, status: str, text: str) -> None:
        print(f"{name:<18} {status:>8}  {text}", flush=True)

    def note(self, text: str) -> None:
        self._print("", "", text)

    def skip(self, name: str, why: str) -> None:
        self.rows.append({"stage": name, "status": "skipped", "seconds": 0.0, "detail": why})
        self._print(name, "skipped", why)

    def stage(self, name: str, folder: Path, inputs: dict[str, Any], build: Callable[..., str], *args: Any,
              code: tuple[Callable[..., Any], ...] = (), resumable: bool = False,
              extra_outputs: tuple[str, ...] = ()) -> str:
        """Run ``build(dest, self, *args)`` unless ``folder/stage.json`` holds the same hash and every output
        it lists exists; returns the stage's hash (what later stages that read it put in their inputs).

        ``dest`` is a fresh folder under RUN/.partial/ renamed to ``folder`` once the stage is complete;
        a ``resumable`` stage works in ``folder`` itself and is told whether it may resume. ``extra_outputs``:
        files it writes outside its folder (relative to it), checked too before it is reused."""
        key = digest({"stage": name, "inputs": inputs, "code": [inspect.getsource(f) for f in (build, *code)]})
        record = read_json(folder / STAGE) or {}
        same = record.get("hash") == key
        if same and record.get("done") and all((folder / f).exists() for f in record.get("outputs", ())):
            self.rows.append({"stage": name, "status": "reused", "seconds": 0.0, "built_s": record.get("seconds"),
                              "hash": key, "detail": record.get("detail")})
            self._print(name, "reused", f"{record.get('detail')} (built in {record.get('seconds', 0):.1f} s)")
            return key
        self._slug, self._commands = name.replace(" ", "-"), []
        start = time.perf_counter()
        from qt_core.atomic import atomic_write_text

        if resumable:
            resume = same and folder.is_dir()
            if not resume:
                shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(folder / STAGE, json.dumps({"stage": name, "hash": key, "done": False}) + "\n")
            detail = build(folder, self, resume, *args)
            dest = folder
        else:
            dest = self.out / ".partial" / self._slug
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            detail = build(dest, self, *args)
        seconds = time.perf_counter() - start
        outputs = [*sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and p.name != STAGE),
                   *extra_outputs]
        atomic_write_text(dest / STAGE, json.dumps({
            "stage": name, "hash": key, "done": True, "seconds": round(seconds, 2), "detail": detail,
            "commands": self._commands, "inputs": inputs, "outputs": outputs}, indent=1, default=str) + "\n")
        if dest != folder:  # swap into place: the stage appears complete or not at all
            folder.parent.mkdir(parents=True, exist_ok=True)
            old = self.out / ".partial" / f"{self._slug}.old"
            shutil.rmtree(old, ignore_errors=True)
            if folder.exists():
                os.replace(folder, old)
            os.replace(dest, folder)
            shutil.rmtree(old, ignore_errors=True)
        self.rows.append({"stage": name, "status": "ran", "seconds": round(seconds, 2), "built_s": round(seconds, 2),
                          "hash": key, "detail": detail})
        self._print(name, f"{seconds:.1f} s", f"{detail} -> {folder}")
        return key

    def tool(self, name: str, *args: Any) -> None:
        """Run a public command (``python -m`` its module); its output goes to RUN/logs/STAGE.log (progress
        bars also to this terminal); a failure raises with the command's own one-line error."""
        argv = [str(a) for a in args]
        self._commands.append(shlex.join([name, *argv]))
        log = self.out / "logs" / f"{self._slug}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as fh:
            fh.write(f"$ {shlex.join([name, *argv])}\n".encode())
            fh.flush()
            proc = subprocess.Popen([sys.executable, "-m", TOOLS[name], *argv], stdin=subprocess.DEVNULL,
                                    stdout=None if self.verbose_logs else fh, stderr=subprocess.PIPE)
            assert proc.stderr is not None
            tail = b""
            while chunk := os.read(proc.stderr.fileno(), 65536):
                fh.write(chunk)
                tail = (tail + chunk)[-4096:]
                if self.bars or self.verbose_logs:
                    sys.stderr.buffer.write(chunk)
                    sys.stderr.flush()
            code = proc.wait()
        if code:
            lines = [ln.strip() for ln in tail.decode(errors="replace").replace("\r", "\n").splitlines() if ln.strip()]
            last = lines[-1] if lines else "no message"
            raise ValueError(f"{self._slug}: {name} failed (exit {code}): {last} (log: {log})")

    def table(self, total: float) -> str:
        lines = [f"{'stage':<18} {'status':<8} {'this run (s)':>12} {'built in (s)':>12}"]
        for r in self.rows:
            built = r.get("built_s")
            this = "" if r["status"] == "skipped" else format(r["seconds"], ".1f")
            lines.append(f"{r['stage']:<18} {r['status']:<8} {this:>12} "
                         f"{'' if built is None else format(built, '.1f'):>12}")
        lines.append(f"{'total':<18} {'':<8} {total:>12.1f}")
        return "\n".join(lines)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WxH, e.g. 480x320") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 16x16")
    return w, h


def _tasks(text: str) -> tuple[str, ...]:
    tasks = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(TASKS)}")
    return tasks


def _body(argv: Sequence[str] | None) -> int:
    p = OneLineParser(prog=PROG, description=__doc__)
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for everything (default runs/demo)")
    p.add_argument("--tasks", type=_tasks, default=TASKS, help="comma-separated tasks (default: all five)")
    p.add_argument("--frames", type=int, default=48, help="frames per clip")
    p.add_argument("--size", type=_size, default=(480, 320), help="clip size WxH (default 480x320)")
    p.add_argument("--fps", type=float, default=12.0, help="clip frame rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--real", type=Path, default=REPO.parent / "shared" / "data" / "real",
                   help="real photographs, one folder per category (default ../shared/data/real; skipped if absent)")
    p.add_argument("--unlabelled", type=int, default=32, help="unlabelled frames for fine-tuning and calibration")
    p.add_argument("--frame-size", type=int, default=256, help="side of those frames (and of the gate frames)")
    p.add_argument("--iterations", type=int, default=40, help="QualiTeacher iterations of the fine-tuning")
    p.add_argument("--base-iterations", type=int, default=300, help="base-model iterations when zoo:dehaze is missing")
    p.add_argument("--patch", type=int, default=96, help="training crop side")
    p.add_argument("--batch", type=int, default=4, help="labelled pairs per iteration")
    p.add_argument("--eval-size", type=int, default=128, help="qt-eval crop side")
    p.add_argument("--eval-limit", type=int, default=8, help="qt-eval images per set")
    p.add_argument("--gate-frames", type=int, default=4, help="held-out frames of the export gate")
    p.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                   help="one more qt-train --set for the fine-tuning (repeatable)")
    p.add_argument("--claim", type=Path, default=None,
                   help="claim.json for the report's method table (default: docs/claim.json when committed)")
    p.add_argument("--verbose", action="store_true", help="show every tool's output and the libraries' INFO logs")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.frames < 2 or args.iterations < 1 or args.gate_frames < 1 or args.unlabelled < args.gate_frames + 8:
        raise ValueError("--frames >= 2, --iterations >= 1, --gate-frames >= 1 and --unlabelled >= --gate-frames + 8 "
                         "(INT8 calibrates on at least 8 frames), please")
    if args.frame_size < args.patch:
        raise ValueError(f"--frame-size {args.frame_size} < --patch {args.patch}: the training crops come from those frames")
    if args.claim is not None and not args.claim.is_file():
        raise ValueError(f"--claim {args.claim}: no such file")
    opts = Options(tasks=args.tasks, frames=args.frames, size=args.size, fps=args.fps, seed=args.seed,
                   real=args.real.resolve(), unlabelled=args.unlabelled, frame_size=args.frame_size,
                   iterations=args.iterations, base_iterations=args.base_iterations, patch=args.patch,
                   batch=args.batch, eval_size=args.eval_size, eval_limit=args.eval_limit,
                   gate_frames=args.gate_frames, train_set=tuple(args.train_set),
                   claim=None if args.claim is None else args.claim.resolve())
    from qt_core.quiet import quiet_libraries

    quiet_libraries(args.verbose)
    out = args.out.resolve()  # tools get absolute paths: the report finds the clips from the summaries
    out.mkdir(parents=True, exist_ok=True)
    demo = Demo(out, opts, verbose_logs=args.verbose, bars=sys.stderr.isatty())
    start = time.perf_counter()
    report = demo_plan(demo)
    total = time.perf_counter() - start
    from qt_core.atomic import atomic_write_text
    from qt_core.machine import cpu_info

    atomic_write_text(out / "timings.json", json.dumps({
        "total_s": round(total, 2), "cpu": cpu_info(), "logical_cores": os.cpu_count(),
        "stages": [{k: v for k, v in r.items() if k != "hash"} for r in demo.rows]}, indent=1) + "\n")
    print(demo.table(total))
    print(f"report: {report}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
