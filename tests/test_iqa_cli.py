"""qt-iqa score: inputs (images, folders, videos), batching by size, bad files, JSON and table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from qt_train.iqa import default_spec
from qt_train.iqa.cli import Batcher, Item, main, too_small

REPO = Path(__file__).resolve().parents[1]


def _photo(name: str) -> np.ndarray:
    from calibration.niqe_fit import package_photo

    return (package_photo(name) * 255).round().astype(np.uint8)


@pytest.fixture
def folder(tmp_path) -> Path:
    """Two photos of one size, one of another (in a sub-folder), a corrupt file, a text file."""
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    for name in ("chelsea", "coffee"):
        cv2.imwrite(str(d / f"{name}.png"), _photo(name)[:160, :192, ::-1])
    cv2.imwrite(str(d / "sub" / "astronaut.jpg"), _photo("astronaut")[:128, :128, ::-1])
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    (d / "notes.txt").write_text("ignored: not an image suffix")
    return d


def test_score_folder_json(folder, capsys):
    assert main(["score", str(folder), "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    items, summary = doc["items"], doc["summary"]
    assert [Path(i["path"]).name for i in items] == ["chelsea.png", "coffee.png", "astronaut.jpg"]
    for it in items:
        assert set(it["raw"]) == set(it["norm"]) == set(default_spec().names)
        assert 0.0 <= it["combined"] <= 1.0 and 0 <= it["level"] < 8 and it["frame"] is None
    assert items[0]["size"] == [160, 192] and items[2]["size"] == [128, 128]
    assert summary["scored"] == 3 and summary["skipped"] == 1
    assert summary["skipped_files"][0]["path"].endswith("broken.jpg")
    assert sum(summary["level_histogram"]) == 3 and len(summary["level_histogram"]) == 8
    assert captured.err.count("warning: skipped") == 1 and "broken.jpg" in captured.err


def test_score_table(folder, capsys):
    assert main(["score", str(folder / "chelsea.png"), str(folder / "coffee.png")]) == 0
    out = capsys.readouterr().out
    assert "niqe raw/norm" in out and "combined" in out and "chelsea.png" in out
    assert "scored 2, skipped 0" in out and "level 7:" in out


def test_video_frames_sampled(small_video, capsys):
    """The 64x48 test clip scored at --size 128: frames 0, 5, 10, 15; flat frames rate worst."""
    assert main(["score", str(small_video), "--json", "--video-stride", "5", "--size", "128"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert [i["frame"] for i in items] == [0, 5, 10, 15]
    assert all(i["size"] == [128, 128] for i in items)
    assert all(i["raw"]["niqe"] is None for i in items)  # NaN (flat frame) is JSON null
    assert main(["score", str(small_video), "--json", "--video-stride", "5", "--max-frames", "2",
                 "--size", "128"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 2


def test_no_readable_input_exit_2(tmp_path, capsys):
    bad = tmp_path / "x.png"
    bad.write_text("not an image")
    assert main(["score", str(bad), str(tmp_path / "missing.png")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("qt-iqa: error: no readable input")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["score", str(empty)]) == 2


def test_too_small_names_member(tmp_path, capsys):
    p = tmp_path / "small.png"
    cv2.imwrite(str(p), _photo("coffee")[:80, :200])
    assert main(["score", str(p)]) == 2
    err = capsys.readouterr().err
    assert "'niqe'" in err and ">= 96" in err and "80x200" in err
    assert main(["score", str(p), "--size", "64"]) == 2
    assert "--size 64" in capsys.readouterr().err
    assert too_small(100, 120, default_spec()) is None


def test_missing_ensemble_file_exit_2(folder, capsys):
    assert main(["score", str(folder), "--ensemble", "nope.yaml"]) == 2
    assert "nope.yaml" in capsys.readouterr().err


class _FakeEnsemble:
    """Records the batch shapes it is asked to score."""

    def __init__(self) -> None:
        self.spec = default_spec()
        self.calls: list[tuple[int, ...]] = []

    def score(self, x: torch.Tensor) -> SimpleNamespace:
        self.calls.append(tuple(x.shape))
        n = x.shape[0]
        vals = x.mean(dim=(1, 2, 3))
        raw = {m: vals for m in self.spec.names}
        return SimpleNamespace(raw=raw, norm=raw, combined=vals, level=torch.zeros(n, dtype=torch.long))


def _items(sizes: list[tuple[int, int]]) -> list[Item]:
    return [Item(i, Path(f"{i}.png"), None, np.full((*s, 3), i / 100, np.float32), s) for i, s in enumerate(sizes)]


def test_batcher_groups_by_size_and_keeps_order():
    ens = _FakeEnsemble()
    bar = SimpleNamespace(update=lambda n: None)
    b = Batcher(ens, batch=2, progress=bar)
    sizes = [(100, 100), (120, 100), (100, 100), (100, 100), (120, 100)]
    for it in _items(sizes):
        b.add(it)
    records = b.finish()
    assert sorted(ens.calls) == sorted([(2, 3, 100, 100), (2, 3, 120, 100), (1, 3, 100, 100)])
    assert [r["path"] for r in records] == [f"{i}.png" for i in range(5)]
    assert [r["combined"] for r in records] == pytest.approx([i / 100 for i in range(5)])


def test_batcher_bounds_pending_items():
    ens = _FakeEnsemble()
    b = Batcher(ens, batch=2, progress=SimpleNamespace(update=lambda n: None))
    for it in _items([(100 + i, 100) for i in range(12)]):  # all sizes differ
        b.add(it)
        assert sum(len(g) for g in b.groups.values()) <= 8
    assert len(b.finish()) == 12


def test_module_entry_point(folder):
    out = subprocess.run([sys.executable, "-m", "qt_train.iqa.cli", "score", str(folder / "coffee.png"), "--json"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["summary"]["scored"] == 1


def test_broken_ensemble_yaml_is_a_one_line_error(tmp_path, capsys):
    from qt_train.iqa.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("members: [[[")
    img = tmp_path / "x.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(img), np.full((32, 32, 3), 100, np.uint8))
    assert main(["score", "--ensemble", str(bad), str(img)]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and "Traceback" not in err
