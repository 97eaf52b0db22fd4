"""``report.html``: what a demo run did, as one self-contained page (opens offline from disk).

  python -m qt_apps.report runs/demo [--out runs/demo/report.html] [--claim runs/claim/claim.json]

Every number on the page is read from the run's result files, found by what they are, not where:

- qt-run summaries (``--summary`` JSON: ``fps_mean``, ``latency``): per restored stream, its input
  (the summary's source) and output (the video beside the summary with the same name, else
  ``restored.*``), the task from the artifact's manifest; before/after frames and a side-by-side
  H.264 video are made here from those two videos (OpenCV, ffmpeg);
- real photos: ``real/<task>/input/*`` beside ``real/<task>/restored/*`` (same names);
- qt-eval results (``results.json`` with ``paired``): held-out PSNR/SSIM, the per-level curve, which
  IQA ensemble rewarded training and which judged it;
- exported artifacts (``manifest.json`` + ``report.json``): the export gate table, one row per
  candidate (FP32, INT8 PTQ, INT8 QAT);
- the claim benchmark's ``claim.json`` (``bench/claim.py --out``), when given or found in the run.

Images and videos are embedded as data URIs; the page loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qt_core.cli import OneLineParser, run_main

PROG = "qt-report"
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
#: the widest frame/video the page embeds (larger ones are scaled down for the page only)
MAX_WIDTH = 960


@dataclass
class Stream:
    task: str
    model: str
    summary: dict[str, Any]
    summary_path: Path
    source: Path | None
    output: Path | None


@dataclass
class Found:
    streams: list[Stream] = field(default_factory=list)
    evals: list[tuple[Path, dict[str, Any], str]] = field(default_factory=list)  # (file, results, model)
    artifacts: list[tuple[Path, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    real: dict[str, list[tuple[Path, Path]]] = field(default_factory=dict)
    claim: tuple[Path, dict[str, Any]] | None = None


def read_json(path: Path) -> Any:
    """A result file's JSON, or None when it is missing or unreadable (a run may lack any of them)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _task_of(artifact: str | None) -> str | None:
    if not artifact:
        return None
    m = read_json(Path(artifact) / "manifest.json")
    return m.get("task") if isinstance(m, dict) else None


def model_label(path: object, run: Path) -> str:
    """Which model a result came from, for a heading: ``zoo:TASK`` for a file of the installed zoo,
    ``this run: <folder>`` for one the run made (a page that shows both must not mix them up)."""
    from qt_core import zoo

    if not path:
        return "unknown model"
    p, root = Path(str(path)), zoo.default_root().resolve()
    p = (root / p if not p.is_absolute() and (root / p).exists() else p).resolve()  # the zoo's own files: relative
    if p.is_relative_to(root):
        return f"zoo:{p.relative_to(root).parts[0]}"
    named = p.parent if p.suffix else p  # a checkpoint is named by its run folder, an artifact by itself
    if named.name == "run":
        named = named.parent
    return f"this run: {named.relative_to(run.resolve()) if named.is_relative_to(run.resolve()) else named.name}"


def _output_beside(summary: Path) -> Path | None:
    for stem in (summary.stem, summary.stem.removesuffix("_summary").removesuffix("-summary"), "restored"):
        for ext in VIDEO_EXTS:
            p = summary.with_name(stem + ext)
            if p.is_file():
                return p
    return None


def discover(run: Path, claim: Path | None = None) -> Found:
    """Every result file under ``run`` the report shows (hidden and staging folders skipped)."""
    found = Found()
    for path in sorted(run.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(run).parts):
            continue
        data = read_json(path)
        if not isinstance(data, dict):
            continue
        if "fps_mean" in data and "latency" in data:
            backend = data.get("backend") or {}
            src = Path(str((data.get("source") or {}).get("spec", "")))
            found.streams.append(Stream(_task_of(backend.get("artifact")) or path.parent.name,
                                        model_label(backend.get("artifact"), run), data, path,
                                        src if src.is_file() else None, _output_beside(path)))
        elif "paired" in data and "reward_ensemble" in data:
            found.evals.append((path, data, model_label(data.get("checkpoint"), run)))
        elif path.name == "report.json" and "candidates" in data and (path.parent / "manifest.json").is_file():
            found.artifacts.append((path.parent, data, read_json(path.parent / "manifest.json") or {}))
        elif path.name == "claim.json" and claim is None:
            found.claim = (path, data)
    if claim is not None:
        data = read_json(claim)
        if not isinstance(data, dict):
            raise ValueError(f"--claim {claim}: not a claim.json written by bench/claim.py")
        found.claim = (claim, data)
    real_root = run / "real"
    if real_root.is_dir():
        for task_dir in sorted(p for p in real_root.iterdir() if p.is_dir()):
            pairs = [(p, task_dir / "restored" / p.name) for p in sorted((task_dir / "input").glob("*"))
                     if p.suffix.lower() in IMAGE_EXTS and (task_dir / "restored" / p.name).is_file()]
            if pairs:
                found.real[task_dir.name] = pairs
    return found


# ----------------------------------------------------------------------------- media

def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _png(img_rgb) -> str:
    import cv2

    h, w = img_rgb.shape[:2]
    if w > MAX_WIDTH:
        img_rgb = cv2.resize(img_rgb, (MAX_WIDTH, round(h * MAX_WIDTH / w)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode a PNG for the report")
    return _data_uri(buf.tobytes(), "image/png")


def _read_image(path: Path):
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def middle_frame(video: Path):
    """The middle frame of a video as RGB uint8."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if n > 1:
            cap.set(cv2.CAP_PROP_POS_FRAMES, n // 2)
        ok, frame = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = cap.read()
    finally:
        cap.release()
    if not ok:
        raise ValueError(f"{video}: no readable frame")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def side_by_side(before: Path, after: Path, out: Path) -> Path:
    """Input | restored, H.264 (yuv420p, faststart) so browsers play it; ffmpeg does the work."""
    import shutil

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise ValueError("ffmpeg is not installed (the report's side-by-side videos need it): apt-get install ffmpeg")
    import cv2

    cap = cv2.VideoCapture(str(before))
    w_in, h_in = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    if w_in <= 0 or h_in <= 0:
        raise ValueError(f"{before}: not a readable video")
    h = min(h_in, round(h_in * (MAX_WIDTH // 2) / w_in)) // 2 * 2  # each half at most MAX_WIDTH/2 wide, even
    graph = f"[0:v]scale=-2:{h},setsar=1[a];[1:v]scale=-2:{h},setsar=1[b];[a][b]hstack=inputs=2,format=yuv420p[v]"
    cmd = [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(before), "-i", str(after), "-filter_complex",
           graph, "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-movflags", "+faststart",
           "-an", "-shortest", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0 or not out.is_file():
        raise ValueError(f"ffmpeg could not make a side-by-side of {before} and {after}: "
                         f"{' '.join(r.stderr.split())[:200]}")
    return out


# ----------------------------------------------------------------------------- page pieces

def _e(x: object) -> str:
    return html.escape(str(x))


def _f(x: Any, fmt: str = ".2f") -> str:
    return "–" if x is None else format(x, fmt) if isinstance(x, (int, float)) else _e(x)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _figure(uri: str, caption: str, alt: str) -> str:
    return f'<figure><img src="{uri}" alt="{_e(alt)}"><figcaption>{_e(caption)}</figcaption></figure>'


def _curve_svg(levels: Sequence[float], scores: Sequence[float], name: str) -> str:
    """The per-level curve (quality level -> output score) as an inline SVG polyline."""
    w, h, pad = 360, 200, 36
    lo, hi = min(scores), max(scores)
    span = (hi - lo) or 1.0
    x0, x1 = min(levels), max(levels)
    xs = [(pad + (lv - x0) / ((x1 - x0) or 1) * (w - 2 * pad)) for lv in levels]
    ys = [(h - pad - (s - lo) / span * (h - 2 * pad)) for s in scores]
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"/>' for x, y in zip(xs, ys, strict=True))
    ticks = "".join(f'<text x="{x:.1f}" y="{h - pad + 16}" text-anchor="middle">{_f(lv, "g")}</text>'
                    for x, lv in zip(xs, levels, strict=True))
    return (f'<svg class="curve" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
            f'aria-label="{_e(name)} score per quality level">'
            f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}"/>'
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}"/>'
            f'<polyline points="{pts}"/>{dots}{ticks}'
            f'<text x="{pad - 4}" y="{pad}" text-anchor="end">{_f(hi, ".3f")}</text>'
            f'<text x="{pad - 4}" y="{h - pad}" text-anchor="end">{_f(lo, ".3f")}</text>'
            f'<text x="{w / 2}" y="{h - 4}" text-anchor="middle">quality level</text></svg>')


def _streams_html(found: Found, scratch: Path) -> str:
    if not found.streams:
        return "<p>No qt-run summaries in this run.</p>"
    parts, rows = [], []
    for i, s in enumerate(found.streams):
        lat = (s.summary.get("latency") or {}).get("infer") or {}
        backend = s.summary.get("backend") or {}
        rows.append([_e(s.task), _e(s.model), _e(s.summary.get("frames_out")), _f(s.summary.get("fps_mean"), ".1f"),
                     _f(lat.get("p50_ms"), ".1f"), _f(lat.get("p99_ms"), ".1f"),
                     _e(s.summary.get("dropped_frames")), _e(s.summary.get("corrupt_frames_skipped")),
                     _e(f"{backend.get('backend', '?')} {backend.get('precision', '')} {backend.get('device', '')}")])
        if s.source is None or s.output is None:
            continue
        before, after = middle_frame(s.source), middle_frame(s.output)
        video = side_by_side(s.source, s.output, scratch / f"sbs-{i}.mp4")
        parts.append(
            f'<section class="task"><h3>{_e(s.task)} · {_e(s.model)}</h3><div class="pair">'
            + _figure(_png(before), f"before: {s.source.name} (middle frame)", f"{s.task} input frame")
            + _figure(_png(after), f"after: {s.output.name} (middle frame)", f"{s.task} restored frame")
            + "</div>"
            + f'<video controls muted loop playsinline preload="auto" '
              f'src="{_data_uri(video.read_bytes(), "video/mp4")}" aria-label="{_e(s.task)} side by side"></video>'
            + "<p class=\"note\">left: input · right: restored</p></section>")
    table = _table(["task", "model", "frames", "FPS", "inference p50 (ms)", "inference p99 (ms)", "dropped", "corrupt",
                    "backend"], rows)
    return "".join(parts) + "<h3>Runtime on this machine (qt-run)</h3>" + table


def _real_html(found: Found) -> str:
    if not found.real:
        return "<p>No real photographs in this run (the demo restores <code>../shared/data/real/</code> when present).</p>"
    out = []
    for task, pairs in found.real.items():
        out.append(f"<h3>{_e(task)}</h3>")
        for before, after in pairs:
            out.append('<div class="pair">' + _figure(_png(_read_image(before)), f"before: {before.name}", "input photo")
                       + _figure(_png(_read_image(after)), f"after: {after.name}", "restored photo") + "</div>")
    return "".join(out)


def _members(spec: dict[str, Any]) -> str:
    return ", ".join(f"{m.get('name')} {m.get('weight', '')}" for m in spec.get("members", []))


def _evals_html(found: Found) -> tuple[str, str]:
    if not found.evals:
        return "<p>No qt-eval results in this run.</p>", "<p>No qt-eval results: the IQA models are unknown.</p>"
    quality, iqa = [], []
    for path, r, model in found.evals:
        name = f"{r.get('task')} · {model} · {r.get('method')} · {r.get('arch')}"
        rows = [[_e(f"{d} ({m.get('n', '?')} pairs)"), _f(m.get("input_psnr")), _f(m.get("psnr")), _f(m.get("input_ssim"), ".3f"), _f(m.get("ssim"), ".3f"),
                 _f(m["input_scores"].get("judge"), ".3f"), _f(m["output_scores"].get("judge"), ".3f"),
                 _f(m["input_scores"].get("reward"), ".3f"), _f(m["output_scores"].get("reward"), ".3f")]
                for d, m in r.get("paired", {}).items()]
        quality.append(f"<h3>{_e(name)}</h3><p class=\"note\">{_e(path.name)} in {_e(path.parent.name)}; quality "
                       f"level {_e(r.get('quality'))}</p>")
        quality.append(_table(["held-out set", "PSNR in", "PSNR out", "SSIM in", "SSIM out", "judge in", "judge out",
                               "reward in", "reward out"], rows))
        curves = r.get("level_curve") or {}
        if curves:
            quality.append('<div class="pair">')
            for scorer, c in curves.items():
                judge = "PSNR against ground truth" if scorer == "psnr" else f"the {scorer}"
                quality.append(f"<figure>{_curve_svg(c['levels'], c['scores'], scorer)}<figcaption>by "
                               f"{_e(judge)}: Spearman ρ {_f(c.get('spearman'), '+.2f')}</figcaption></figure>")
            quality.append("</div>")
        iqa.append(_table(["", "members (weights)"], [
            ["rewarded training", _e(_members(r.get("reward_ensemble") or {}))],
            ["judged it (never optimised)", _e(_members(r.get("judge") or {}))]]))
    return "".join(quality), iqa[0] if len({json.dumps([r.get("reward_ensemble"), r.get("judge")])
                                             for _, r, _ in found.evals}) == 1 else "".join(iqa)


def _gate_html(found: Found) -> str:
    if not found.artifacts:
        return "<p>No exported artifacts in this run.</p>"
    rows = []
    for folder, report, manifest in found.artifacts:
        for label, c in report.get("candidates", {}).items():
            drop = c.get("score_drop")
            rows.append([_e(folder.name), _e(manifest.get("task")), _e(report.get("format")),
                         _e({"fp32": "FP32", "ptq": "INT8 PTQ", "qat": "INT8 QAT"}.get(label, label)),
                         _f(c.get("psnr_vs_fp32")), _f(c.get("psnr_min")),
                         "–" if drop is None else f"{100 * drop:+.2f}%",
                         "pass" if c.get("passed") else "FAIL: " + _e("; ".join(c.get("reasons", []))),
                         "shipped" if label == report.get("chosen") else ""])
    return _table(["artifact", "task", "format", "candidate", "PSNR vs FP32 (dB)", "worst frame (dB)", "score drop",
                   "gate", ""], rows)


def _claim_html(found: Found) -> str:
    if found.claim is None:
        return "<p>No claim benchmark results (run <code>bench/claim.py</code>, then pass <code>--claim</code>).</p>"
    path, data = found.claim
    rows = []
    for task, per in data.items():
        if not isinstance(per, dict):
            continue
        for method, r in per.items():
            h = (r.get("paired") or {}).get("realistic") or {}
            real = r.get("real") or {}
            curve = (r.get("level_curve") or {}).get("judge") or {}
            rows.append([_e(task), _e(method), _f(h.get("psnr")), _f(h.get("ssim"), ".3f"),
                         _f((h.get("output_scores") or {}).get("judge"), ".3f"),
                         _f((h.get("output_scores") or {}).get("reward"), ".3f"),
                         _f((real.get("output_scores") or {}).get("judge"), ".3f"), _f(curve.get("spearman"), "+.2f")])
    return (f"<p class=\"note\">from {_e(path)}</p>"
            + _table(["task", "method", "PSNR (realistic)", "SSIM", "judge", "reward", "judge on real photos",
                      "per-level ρ (judge)"], rows))


CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1000px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.pair{display:flex;gap:1em;flex-wrap:wrap}figure{margin:.4em 0}img{max-width:460px;height:auto;display:block}
video{max-width:100%;display:block;margin:.4em 0}.note{color:#666;font-size:.9em}
svg.curve line{stroke:#888}svg.curve polyline{fill:none;stroke:#1565c0;stroke-width:2}
svg.curve circle{fill:#1565c0}svg.curve text{font-size:11px;fill:#444}
"""


def render(found: Found, run: Path, scratch: Path) -> str:
    quality, iqa = _evals_html(found)
    sections = [
        ("Restoration, per task", _streams_html(found, scratch)),
        ("Real photographs", _real_html(found)),
        ("Quality: held-out pairs and the per-level curve", quality),
        ("Method comparison (claim benchmark)", _claim_html(found)),
        ("Export gate: FP32 vs INT8", _gate_html(found)),
        ("Which IQA models rewarded, which judged", iqa),
    ]
    body = "".join(f"<h2>{_e(t)}</h2>{s}" for t, s in sections)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>QualiTeacher Edge: {_e(run.name)}</title><style>{CSS}</style></head><body>"
            f"<h1>QualiTeacher Edge — {_e(run.name)}</h1><p class=\"note\">Every number below is read from the "
            f"run's result files in {_e(run)}.</p>{body}</body></html>\n")


def build_report(run: Path, out: Path | None = None, claim: Path | None = None) -> Path:
    """Write ``out`` (default ``run/report.html``) from the result files under ``run``; returns its path."""
    from qt_core.atomic import atomic_write_text

    run = Path(run)
    if not run.is_dir():
        raise ValueError(f"{run} is not a folder (pass the demo's output folder, e.g. runs/demo)")
    out = run / "report.html" if out is None else Path(out)
    found = discover(run, claim)
    with tempfile.TemporaryDirectory(prefix=".qt-report-") as tmp:
        page = render(found, run, Path(tmp))
    atomic_write_text(out, page)
    return out


def _body(argv: Sequence[str] | None) -> int:
    p = OneLineParser(prog=PROG, description=__doc__)
    p.add_argument("run", type=Path, help="a demo run folder (e.g. runs/demo)")
    p.add_argument("--out", type=Path, default=None, help="default: RUN/report.html")
    p.add_argument("--claim", type=Path, default=None, help="claim.json written by bench/claim.py")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    print(f"report: {build_report(args.run, args.out, args.claim)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
