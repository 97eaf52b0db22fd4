"""Real degraded photographs, side by side: input, the classical anchor, and each trained model,
scored by judges no model optimised (NIQE with the published pristine model, LIVE-trained BRISQUE;
lower is better) and by the project's ensemble (the reward; higher is better).

  python bench/real.py --tasks dehaze underwater --ckpt dehaze=runs/fidelity/dehaze/edge_guided/last.ckpt
  python bench/real.py                    # every task; models default to runs/fidelity/<task>/<arch>/last.ckpt

Photos: ``../shared/data/real/<category>`` (evaluation only; no ground truth), longer side 512 px.
Writes ``<out>/real.json``, ``<out>/real.md`` and one image grid per task (``<out>/grid_<task>.jpg``,
a row per photo: input | anchor | models). The grids stay under ``runs/``: the photos' licences
forbid committing them or their derivatives.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from claim import REAL_DIRS, REPO  # the task -> photo folder table lives with the claim benchmark
from machine import describe_machine  # bench/machine.py: the CPU and its ISA

from qt_core.pixels import to_uint8

ARCHS = ("edge_unet", "edge_guided")


def _photos(folder: Path, max_side: int) -> list[tuple[str, object]]:
    from qt_train.data.io import IMAGE_EXTS, list_files, read_image

    return [(f.name, read_image(f, max_side=max_side)) for f in list_files(folder, IMAGE_EXTS)]


def _restore(ckpt: Path):
    import torch

    from qt_train.evaluate import load_student

    student = load_student(ckpt)  # at the run's top level when conditioned, as qt-eval

    def run(img):
        x = torch.from_numpy(img.transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            return student.model(x, quality=student.quality)[0].numpy().transpose(1, 2, 0)

    return run


def _grid(rows: list[list], path: Path, cell: int = 256) -> None:
    import cv2
    import numpy as np

    from qt_core.atomic import atomic_write_bytes

    def fit(img):
        h, w = img.shape[:2]
        s = cell / max(h, w)
        small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        canvas = np.ones((cell, cell, 3), np.float32)
        canvas[: small.shape[0], : small.shape[1]] = small
        return canvas

    grid = np.concatenate([np.concatenate([fit(i) for i in row], axis=1) for row in rows], axis=0)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(to_uint8(grid), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    atomic_write_bytes(path, buf.tobytes())


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch

    from qt_train.classical import CLASSICAL
    from qt_train.iqa import Ensemble
    from qt_train.iqa.judges import build_judges

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(REAL_DIRS))
    parser.add_argument("--ckpt", action="append", default=[], metavar="TASK=PATH[:LABEL]")
    parser.add_argument("--models-from", type=Path, default=REPO / "runs" / "fidelity")
    parser.add_argument("--real-root", type=Path, default=REPO.parent / "shared" / "data" / "real")
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "real")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    print(describe_machine(), flush=True)
    torch.set_num_threads(args.threads)
    if not args.real_root.is_dir():
        print(f"{args.real_root} is not present: nothing to judge (the benchmark needs the real photos)")
        return 0
    models: dict[str, dict[str, Path]] = {t: {} for t in args.tasks}
    for spec in args.ckpt:
        task, _, rest = spec.partition("=")
        path, _, label = rest.partition(":")
        if task not in models or not path:
            raise SystemExit(f"--ckpt {spec!r}: expected TASK=PATH[:LABEL] with TASK one of {', '.join(args.tasks)}")
        models[task][label or Path(path).parent.name] = Path(path)
    for task in args.tasks:
        if not models[task]:
            for arch in ARCHS:
                ckpt = args.models_from / task / arch / "last.ckpt"
                if ckpt.exists():
                    models[task][arch] = ckpt

    judges = build_judges()
    ensemble = Ensemble()
    results: dict = {}
    for task in args.tasks:
        photos = _photos(args.real_root / REAL_DIRS[task], args.max_side)
        anchor_name, anchor = CLASSICAL[task]
        methods = {"input": lambda x: x, anchor_name: anchor}
        methods.update({label: _restore(p) for label, p in models[task].items()})
        per: dict = {m: {"per_photo": []} for m in methods}
        rows = []
        for name, img in photos:
            row = []
            for m, fn in methods.items():
                out = np.clip(fn(img), 0, 1).astype(np.float32)
                x = torch.from_numpy(out.transpose(2, 0, 1).copy())[None]
                scores = {j: judge(x) for j, judge in judges.items()}
                scores["ensemble"] = float(ensemble.score(x, use_cache=False).combined[0])
                per[m]["per_photo"].append({"photo": name, **scores})
                row.append(out)
            rows.append(row)
        for r in per.values():
            for key in (*judges, "ensemble"):
                vals = [p[key] for p in r["per_photo"]]
                r[key] = float(np.nanmean(vals))
                ref = [p[key] for p in per["input"]["per_photo"]]
                anc = [p[key] for p in per[anchor_name]["per_photo"]]
                better = (lambda a, b: a > b) if key == "ensemble" else (lambda a, b: a < b)
                r[f"{key}_beats_input"] = sum(better(a, b) for a, b in zip(vals, ref, strict=True))
                r[f"{key}_beats_anchor"] = sum(better(a, b) for a, b in zip(vals, anc, strict=True))
        results[task] = {"n": len(photos), "anchor": anchor_name, "columns": list(methods),
                         "models": {k: str(v) for k, v in models[task].items()}, "methods": per}
        args.out.mkdir(parents=True, exist_ok=True)
        _grid(rows, args.out / f"grid_{task}.jpg")
        print(f"{task}: {len(photos)} photos, columns {list(methods)}", file=sys.stderr, flush=True)

    lines = ["Judges (never optimised, lower is better): NIQE with the published pristine model, BRISQUE "
             "trained on LIVE opinion scores. Ensemble: the project's reward (higher is better).", "",
             "| task | method | NIQE | better than input | BRISQUE | better than input | better than anchor (NIQE / BRISQUE) | ensemble |",
             "|---|---|---|---|---|---|---|---|"]
    for task, res in results.items():
        n = res["n"]
        for m, r in res["methods"].items():
            lines.append(
                f"| {task} | {m} | {r['niqe_original']:.2f} | {r['niqe_original_beats_input']}/{n} | "
                f"{r['brisque_live']:.2f} | {r['brisque_live_beats_input']}/{n} | "
                f"{r['niqe_original_beats_anchor']}/{n} / {r['brisque_live_beats_anchor']}/{n} | {r['ensemble']:.3f} |")
    md = "\n".join(lines)
    from qt_core.atomic import atomic_write_text

    atomic_write_text(args.out / "real.json", json.dumps(results, indent=1))
    atomic_write_text(args.out / "real.md", md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
