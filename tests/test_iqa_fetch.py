"""qt-iqa fetch: URLs from pyiqa, atomic verified downloads, offline builds from fetched files.

Every download here comes from an ``http.server`` on 127.0.0.1 serving a temp folder; the
weights served are *random* (built offline with ``pretrained=False``/``None``) and only test
the plumbing: file names, formats pyiqa loads, ``QT_IQA_WEIGHTS`` resolution.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from qt_train.iqa import EnsembleSpec, Member, default_spec, reference_spec
from qt_train.iqa import fetch as fx
from qt_train.iqa.cli import main
from qt_train.iqa.weights import WEIGHTS_ENV, bundled_assets_dir

CNNIQA_FILE = "CNNIQA_koniq10k-e6f14c91.pth"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder; ``/cut/NAME`` announces NAME's full size, sends half, then drops the
    connection (a server killed mid-download); ``/slow/NAME`` stalls before answering."""

    def log_message(self, *_args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        root = Path(self.directory)
        if self.path.startswith("/cut/"):
            data = (root / self.path[5:]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.path.startswith("/slow/"):
            time.sleep(2.0)
            self.path = self.path[5:]
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """(base URL, served folder) of a local HTTP server; never anything but 127.0.0.1."""
    root = tmp_path / "served"
    root.mkdir()

    def handler(*a, **k):
        return _Handler(*a, directory=str(root), **k)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".part")


def _random_brisque(path: Path) -> None:
    """A BRISQUE SVM in pyiqa's format, torch.save((sv_coef, sv)), with random numbers."""
    g = torch.Generator().manual_seed(0)
    torch.save((torch.randn(50, generator=g, dtype=torch.float64), torch.rand(50, 36, generator=g, dtype=torch.float64)), path)


def _random_cnniqa(path: Path) -> None:
    """A randomly initialised pyiqa CNNIQA saved as pyiqa loads it ({'params': state_dict})."""
    import pyiqa

    net = pyiqa.create_metric("cnniqa", pretrained=None, device="cpu").net
    torch.save({"params": net.state_dict()}, path)


def _write_spec(path: Path, members: list[dict]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"members": members, "levels": 8, "thresholds": None, "block": 144}))
    return path


BRISQUE = {"name": "brisque", "weight": 1.0, "direction": "lower", "raw_range": [0.0, 100.0],
           "weights_path": "brisque_svm_weights.pth", "min_size": 32}
CNNIQA = {"name": "cnniqa", "weight": 1.0, "direction": "higher", "raw_range": [0.0, 1.0],
          "weights_path": CNNIQA_FILE, "min_size": 32}


# ----------------------------------------------------------------------------- URLs from pyiqa


def test_reference_plan_reads_urls_from_pyiqa():
    sources, notes = fx.plan(reference_spec())
    by = {s.member: s for s in sources}
    assert set(by) == {"musiq", "clipiqa", "brisque"} and not notes
    assert by["musiq"].url.endswith("/musiq_koniq_ckpt-e95806b9.pth")
    assert by["musiq"].sha256_prefix == "e95806b9" and by["musiq"].sha256 is None
    assert by["clipiqa"].file == "clip/RN50.pt" and by["clipiqa"].url.endswith("/RN50.pt")
    assert by["clipiqa"].sha256 is not None and len(by["clipiqa"].sha256) == 64  # CLIP URLs carry it
    assert by["brisque"].sha256 is None and by["brisque"].sha256_prefix is None


def test_base_url_replaces_host_but_keeps_expected_hash():
    sources, _ = fx.plan(reference_spec(), base_url="http://mirror.local/w/")
    urls = {s.member: s.url for s in sources}
    assert urls["musiq"] == "http://mirror.local/w/musiq_koniq_ckpt-e95806b9.pth"
    assert urls["clipiqa"] == "http://mirror.local/w/RN50.pt"
    assert {s.member: s.sha256_prefix for s in sources}["musiq"] == "e95806b9"
    with pytest.raises(ValueError, match="base-url"):
        fx.plan(reference_spec(), base_url="mirror.local")


def test_local_project_files_are_copied_not_downloaded():
    sources, _ = fx.plan(default_spec())
    # every weights file of the offline default (NIQE pristine model, learned CNNIQA) ships with the project
    assert {s.local.name for s in sources} == {"niqe_pristine.mat", "cnniqa_rank.pth"}
    assert all(s.url is None and s.local.parent == bundled_assets_dir() for s in sources)


def test_unknown_file_and_missing_weights_path_explained():
    bad = EnsembleSpec(members=(Member("musiq", 1, "higher", (0, 100), weights_path="nope.pth"),))
    with pytest.raises(ValueError, match=r"'musiq'.*nope\.pth.*musiq_koniq_ckpt-e95806b9\.pth"):
        fx.plan(bad)
    bare = EnsembleSpec(members=(Member("brisque", 1, "lower", (0, 100)),))
    sources, notes = fx.plan(bare)
    assert sources == [] and "brisque_svm_weights.pth" in notes[0]
    escape = EnsembleSpec(members=(Member("brisque", 1, "lower", (0, 100), weights_path="../x.pth"),))
    with pytest.raises(ValueError, match="inside DIR"):
        fx.plan(escape)


def test_hash_rules():
    assert fx.expected_digest("http://h/a/musiq_koniq_ckpt-e95806b9.pth") == (None, "e95806b9")
    assert fx.expected_digest("http://h/a/ViT-B-32.pt") == (None, None)
    full = "ab" * 32
    assert fx.expected_digest(f"http://h/{full}/RN50.pt") == (full, None)


# ----------------------------------------------------------------------------- downloads


def test_download_verified_then_present_then_force(server, tmp_path):
    base, served = server
    data = b"weights" * 1000
    name = f"thing-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (served / name).write_bytes(data)
    src = fx.WeightsSource("m", f"sub/{name}", url=f"{base}/{name}", sha256_prefix=name[6:14])
    out = tmp_path / "w"
    (r,) = fx.fetch([src], out, quiet=True)
    assert r.status == "downloaded" and (out / "sub" / name).read_bytes() == data
    (r,) = fx.fetch([src], out, quiet=True)
    assert r.status == "present"
    (r,) = fx.fetch([src], out, force=True, quiet=True)
    assert r.status == "downloaded"
    # a damaged existing file is not "present": it is fetched again
    (out / "sub" / name).write_bytes(b"junk")
    (r,) = fx.fetch([src], out, quiet=True)
    assert r.status == "downloaded" and (out / "sub" / name).read_bytes() == data
    assert _leftovers(out) == []


def test_404_clear_error_no_file(server, tmp_path):
    base, _ = server
    src = fx.WeightsSource("musiq", "gone.pth", url=f"{base}/gone.pth")
    (r,) = fx.fetch([src], tmp_path / "w", quiet=True)
    assert r.status == "failed" and "HTTP 404" in r.message and "musiq" in r.message
    assert "\n" not in r.message
    assert not (tmp_path / "w" / "gone.pth").exists() and _leftovers(tmp_path / "w") == []


def test_hash_mismatch_rejected(server, tmp_path):
    base, served = server
    (served / "x-deadbeef.pth").write_bytes(b"not the file the name promises")
    src = fx.WeightsSource("m", "x-deadbeef.pth", url=f"{base}/x-deadbeef.pth", sha256_prefix="deadbeef")
    (r,) = fx.fetch([src], tmp_path / "w", quiet=True)
    assert r.status == "failed" and "deadbeef" in r.message
    assert list((tmp_path / "w").iterdir()) == []


def test_empty_file_rejected(server, tmp_path):
    base, served = server
    (served / "empty.pth").write_bytes(b"")
    (r,) = fx.fetch([fx.WeightsSource("m", "empty.pth", url=f"{base}/empty.pth")], tmp_path / "w", quiet=True)
    assert r.status == "failed" and "empty" in r.message
    assert list((tmp_path / "w").iterdir()) == []


def test_connection_dropped_mid_download_leaves_nothing(server, tmp_path):
    base, served = server
    (served / "big.pth").write_bytes(b"\x01" * 300_000)
    src = fx.WeightsSource("m", "big.pth", url=f"{base}/cut/big.pth")
    (r,) = fx.fetch([src], tmp_path / "w", quiet=True)
    assert r.status == "failed" and "big.pth" in r.message
    assert list((tmp_path / "w").iterdir()) == []


def test_timeout_and_unreachable(server, tmp_path):
    base, served = server
    (served / "a.pth").write_bytes(b"abc")
    (r,) = fx.fetch([fx.WeightsSource("m", "a.pth", url=f"{base}/slow/a.pth")], tmp_path / "w",
                    timeout=0.3, quiet=True)
    assert r.status == "failed" and "timed out" in r.message
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (r,) = fx.fetch([fx.WeightsSource("m", "a.pth", url=f"http://127.0.0.1:{port}/a.pth")], tmp_path / "w",
                    timeout=2, quiet=True)
    assert r.status == "failed" and "cannot reach" in r.message
    assert list((tmp_path / "w").iterdir()) == []


# ----------------------------------------------------------------------------- CLI end to end


def test_cli_fetch_then_score_offline(server, tmp_path, monkeypatch, capsys, image_zoo):
    """Fetch a (random) BRISQUE SVM and the NIQE asset through the CLI, then score offline."""
    base, served = server
    _random_brisque(served / "brisque_svm_weights.pth")
    spec = _write_spec(tmp_path / "ens.yaml", [BRISQUE, {
        "name": "niqe", "weight": 1.0, "direction": "lower", "raw_range": [2.0, 30.0],
        "weights_path": "niqe_pristine.mat", "min_size": 96}])
    out = tmp_path / "weights"
    assert main(["fetch", "--ensemble", str(spec), "--to", str(out), "--base-url", base]) == 0
    text = capsys.readouterr().out
    assert "downloaded" in text and "copied" in text and WEIGHTS_ENV in text
    assert (out / "brisque_svm_weights.pth").is_file() and (out / "niqe_pristine.mat").is_file()
    assert main(["fetch", "--ensemble", str(spec), "--to", str(out), "--base-url", base]) == 0
    assert capsys.readouterr().out.count("present") == 2

    def refuse(*_a, **_k):
        raise AssertionError("network used while scoring")

    monkeypatch.setenv(WEIGHTS_ENV, str(out))
    monkeypatch.setattr(socket.socket, "connect", refuse)
    photo = tmp_path / "p.png"
    shutil.copy(image_zoo["rgb"], photo)
    import cv2
    import numpy as np

    cv2.imwrite(str(photo), np.tile(cv2.imread(str(image_zoo["rgb"])), (3, 2, 1)))  # 144 x 128
    assert main(["score", str(photo), "--ensemble", str(spec), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (item,) = doc["items"]
    assert set(item["raw"]) == {"brisque", "niqe"} and item["raw"]["brisque"] is not None


def test_cli_fetch_failure_exit_1_one_line(server, tmp_path, capsys):
    base, _ = server
    spec = _write_spec(tmp_path / "ens.yaml", [BRISQUE])
    assert main(["fetch", "--ensemble", str(spec), "--to", str(tmp_path / "w"), "--base-url", base]) == 1
    err = capsys.readouterr().err
    assert "qt-iqa: error: brisque: brisque_svm_weights.pth: HTTP 404" in err
    assert not (tmp_path / "w" / "brisque_svm_weights.pth").exists()


def test_cli_dry_run_touches_nothing(tmp_path, capsys):
    assert main(["fetch", "--ensemble", "reference", "--to", str(tmp_path / "w"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "musiq_koniq_ckpt-e95806b9.pth" in out and "clip/RN50.pt" in out
    assert not (tmp_path / "w").exists()


def test_fetched_cnniqa_loads_through_pyiqa(server, tmp_path, capsys):
    """Random CNNIQA weights (plumbing only) served, fetched, then built by pyiqa offline.

    pyiqa's file name promises a SHA-256 prefix that random weights cannot have: the fetch
    refuses it, and ``--no-hash-check`` (for mirrors that re-packed files) lets it through.
    """
    from qt_train.iqa import Ensemble

    base, served = server
    _random_cnniqa(served / CNNIQA_FILE)
    spec = _write_spec(tmp_path / "ens.yaml", [CNNIQA])
    out = tmp_path / "w"
    assert main(["fetch", "--ensemble", str(spec), "--to", str(out), "--base-url", base]) == 1
    assert "e6f14c91" in capsys.readouterr().err and not (out / CNNIQA_FILE).exists()
    argv = ["fetch", "--ensemble", str(spec), "--to", str(out), "--base-url", base, "--no-hash-check"]
    assert main(argv) == 0
    from qt_train.iqa import load_spec

    ens = Ensemble(load_spec(spec), device="cpu", weights_dir=out)
    want = torch.load(served / CNNIQA_FILE)["params"]
    got = ens.metrics["cnniqa"].net.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert torch.isfinite(ens.score(torch.rand(2, 3, 64, 64)).combined).all()


# ----------------------------------------------------------------------------- online members, offline


def _member(name: str, path: Path, **kw) -> EnsembleSpec:
    return EnsembleSpec(members=(Member(name, 1.0, "higher", (0.0, 1.0), weights_path=str(path), min_size=32, **kw),))


def _assert_loaded(ens, name: str, saved: dict) -> None:
    got = ens.metrics[name].net.state_dict()
    assert all(torch.equal(saved[k], got[k]) for k in saved)


@pytest.mark.slow
def test_musiq_builds_from_local_file(tmp_path, monkeypatch):
    """Random MUSIQ weights (plumbing only), saved as pyiqa loads them (a bare state dict)."""
    import pyiqa

    from qt_train.iqa import Ensemble

    sd = pyiqa.create_metric("musiq", pretrained=False, device="cpu").net.state_dict()
    torch.save(sd, tmp_path / "musiq_koniq_ckpt-e95806b9.pth")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    ens = Ensemble(EnsembleSpec(members=(reference_spec().member("musiq"),)), device="cpu")
    _assert_loaded(ens, "musiq", sd)
    assert torch.isfinite(ens.score(torch.rand(1, 3, 64, 96)).combined).all()


@pytest.mark.slow
def test_topiq_nr_builds_from_local_file(tmp_path):
    """Random TOPIQ weights (plumbing only); needs backbone_pretrain=False, else timm downloads."""
    import pyiqa

    from qt_train.iqa import Ensemble

    net = pyiqa.create_metric("topiq_nr", pretrained=False, backbone_pretrain=False, device="cpu").net
    sd = net.state_dict()
    torch.save({"params": sd}, tmp_path / "cfanet_nr_koniq_res50-9a73138b.pth")
    spec = _member("topiq_nr", tmp_path / "cfanet_nr_koniq_res50-9a73138b.pth", options=(("backbone_pretrain", False),))
    ens = Ensemble(spec, device="cpu")
    _assert_loaded(ens, "topiq_nr", sd)
    assert torch.isfinite(ens.score(torch.rand(1, 3, 64, 64)).combined).all()


def test_brisque_builds_from_local_file(tmp_path):
    """A random SVM in pyiqa's BRISQUE format (plumbing only)."""
    from qt_train.iqa import Ensemble

    _random_brisque(tmp_path / "brisque_svm_weights.pth")
    ens = Ensemble(EnsembleSpec(members=(reference_spec().member("brisque"),)), device="cpu", weights_dir=tmp_path)
    assert torch.isfinite(ens.score(torch.rand(2, 3, 64, 64)).raw["brisque"]).all()


@pytest.fixture
def pkg_resources_shim(monkeypatch):
    """OpenAI's clip package imports ``pkg_resources`` (gone from setuptools >= 81) only for
    ``packaging``; where it is missing, stand in with that one attribute."""
    import importlib.util
    import sys
    import types

    if importlib.util.find_spec("pkg_resources") is None:
        import packaging.version

        shim = types.ModuleType("pkg_resources")
        shim.packaging = packaging  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "pkg_resources", shim)


def test_clipiqa_builds_from_local_backbone(tmp_path, pkg_resources_shim):
    """A tiny random CLIP (plumbing only) saved as TorchScript, the format of OpenAI's RN50.pt.

    pyiqa's CLIP loader reads a plain state dict only after a failed TorchScript read of the
    same file handle (at EOF by then), so a backbone file must be a TorchScript archive.
    """
    import warnings

    from pyiqa.archs.clip_model import CLIP

    from qt_train.iqa import Ensemble

    clip = CLIP(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=8,
                vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=64,
                transformer_heads=1, transformer_layers=1).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(clip, (torch.rand(1, 3, 64, 64), torch.randint(0, 49408, (1, 77))), check_trace=False)
    (tmp_path / "clip").mkdir()
    traced.save(str(tmp_path / "clip" / "RN50.pt"))
    ens = Ensemble(EnsembleSpec(members=(reference_spec().member("clipiqa"),)), device="cpu", weights_dir=tmp_path)
    assert torch.isfinite(ens.score(torch.rand(2, 3, 64, 80)).raw["clipiqa"]).all()
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    ens.reward(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0

