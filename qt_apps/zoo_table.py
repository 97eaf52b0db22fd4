"""The zoo as a Markdown table (the README's), every number read from the zoo's index.

  python -m qt_apps.zoo_table            # the committed zoo (or $QT_ZOO)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from qt_core.cli import OneLineParser, run_main

PROG = "qt-zoo-table"


def zoo_table(zoo: Path) -> str:
    """One row per task: method, held-out `realistic` fidelity and judge (input in brackets), the
    INT8 artifact's gate PSNR against FP32, qt-run's INT8 FPS and the CPU it was measured on."""
    from qt_core.zoo import read_index

    rows = ["| task | method | PSNR / SSIM (input) | PSNR-Y / SSIM-Y | judge (input) | INT8 vs FP32 (gate) "
            "| INT8 FPS | size |", "|---|---|---|---|---|---|---|---|"]
    cpus = set()
    for task, e in read_index(zoo)["tasks"].items():
        if "metrics" not in e:
            rows.append(f"| {task} | no trained model yet | | | | | | |")
            continue
        m = e["metrics"]
        h = m["heldout"]["realistic"]
        gate = m["export_gate"]["int8"]
        speed = m.get("speed_int8") or {}
        if speed:
            cpus.add(f"{speed['cpu']['model']} (class {speed['cpu']['class']})")
        mb = sum((zoo / f).stat().st_size for f in e["sha256"]) / 2**20
        rows.append(
            f"| {task} | {e['method']} | {h['psnr']:.2f} / {h['ssim']:.3f} ({h['input_psnr']:.2f} / "
            f"{h['input_ssim']:.3f}) | {h['psnr_y']:.2f} / {h['ssim_y']:.3f} | {h['judge']:.3f} "
            f"({h['judge_input']:.3f}) | {gate['psnr_vs_fp32']:.1f} dB (worst {gate['psnr_min']:.1f}) | "
            + (f"{speed['fps']:.0f} at {speed['size']}" if speed else "–") + f" | {mb:.1f} MB |")
    note = ("Held-out: 32 `realistic` pairs at 256 px from images no run or fit saw (`qt-eval`). Judge: "
            "NIQE-original + BRISQUE-LIVE, never optimised (higher = better). FPS: `qt-run` end to end, "
            "INT8 OpenVINO, on " + (", ".join(sorted(cpus)) or "–") + ".")
    return "\n".join(rows) + "\n\n" + note


def _body(argv: Sequence[str] | None) -> int:
    from qt_core.zoo import default_root

    p = OneLineParser(prog=PROG, description=__doc__)
    p.add_argument("--zoo", type=Path, default=None, help="zoo folder (default: $QT_ZOO, else qt_core/zoo)")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    print(zoo_table(args.zoo or default_root()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
