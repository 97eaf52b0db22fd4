"""qt-train end to end on a tiny model: every method, resume after SIGKILL, DDP, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from qt_train.checkpoint import load_checkpoint
from qt_train.train.cli import main

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "dehaze.yaml")

# A model and data small enough for 2 CPU cores; 96 px is the smallest the default IQA ensemble rates.
TINY = [
    # the tests' model and method (the reference's switches), whatever a task config ships with
    "model.arch=edge_unet", "train.method=qualiteacher", "method.quality_source=iqa", "method.level_quantiles=false",
    "method.preference=true",
    "model.options={widths: [8, 16, 16], enc_blocks: [0, 0], mid_blocks: 1, dec_blocks: [0, 0]}",
    "data.size=96", "data.patch=96", "data.n_train=6", "data.n_val=2",
    "train.batch=2", "train.real_batch=2", "train.n_real=4", "train.threads=1",
    "train.base_iterations=3", "train.iterations=3", "train.log_every=1", "train.eval_every=3",
    "train.ckpt_every=3", "train.image_every=1000",
    "method.preference_start=1", "method.consistency_start=1",
]


def sets(*extra: str) -> list[str]:
    out = []
    for item in [*TINY, *extra]:
        out += ["--set", item]
    return out


def tensors_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.slow
@pytest.mark.parametrize("method", ["qualiteacher", "mean_teacher", "reliable_bank", "supervised"])
def test_every_method_trains_and_checkpoints(tmp_path, method):
    run = tmp_path / "run"
    assert main(["--config", CONFIG, "--run-dir", str(run), "--no-progress", *sets(f"train.method={method}")]) == 0
    ckpt = load_checkpoint(run / "last.ckpt", expect_arch="edge_unet")
    assert ckpt["iteration"] == 6 and ckpt["method"] == method and ckpt["stage"] == "semi"
    for key in ("model", "ema", "optimizer", "bank", "rng", "config", "scheduler"):
        assert key in ckpt
    entries = ckpt["bank"]["entries"]
    if method == "qualiteacher":
        assert entries and all(1 <= len(v) <= 3 for v in entries.values())
        assert all(0 <= e["level"] <= 7 for v in entries.values() for e in v)
    elif method == "reliable_bank":
        assert all(len(v) == 1 for v in entries.values())
    else:
        assert not entries
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert any('"eval/realistic_psnr"' in line for line in lines)
    assert (run / "config.yaml").is_file() and "qt-train" in (run / "command.txt").read_text()
    assert list((run / "tb").iterdir()), "no TensorBoard events"


@pytest.mark.slow
def test_qualiteacher_losses_all_active(tmp_path):
    run = tmp_path / "run"
    assert main(["--config", CONFIG, "--run-dir", str(run), "--no-progress", *sets()]) == 0
    text = (run / "metrics.jsonl").read_text()
    for term in ("loss/sup", "loss/pl", "loss/pref", "loss/cons"):
        assert term in text


def test_quantile_levels_and_anchor(tmp_path):
    """The switches of the fixed method: levels from the bank's quantiles (cuts stored with the
    checkpoint) and the top level anchored to the best PL (its own logged loss term)."""
    from qt_train.checkpoint import load_checkpoint

    run = tmp_path / "run"
    extra = ("method.level_quantiles=true", "method.anchor_weight=1.0", "method.preference_detach_lower=true",
             "train.n_real=8", "train.real_batch=4", "train.iterations=4", "train.ckpt_every=4", "train.eval_every=4")
    assert main(["--config", CONFIG, "--run-dir", str(run), "--no-progress", *sets(*extra)]) == 0
    cuts = load_checkpoint(run / "last.ckpt")["level_cuts"]
    assert len(cuts) == 7 and all(0.0 <= a <= b <= 1.0 for a, b in zip(cuts, cuts[1:], strict=False))
    assert "loss/anchor" in (run / "metrics.jsonl").read_text()


def test_agreement_quality_source(tmp_path):
    """Quality from the views' agreement: no IQA pass, levels from the bank's quantiles of
    agreement (<= 0, stored with the checkpoint); the preference term must be off."""
    run = tmp_path / "run"
    extra = ("method.quality_source=agreement", "method.level_quantiles=true", "method.preference=false",
             "train.n_real=8", "train.real_batch=4", "train.iterations=4", "train.ckpt_every=4", "train.eval_every=4")
    assert main(["--config", CONFIG, "--run-dir", str(run), "--no-progress", *sets(*extra)]) == 0
    state = load_checkpoint(run / "last.ckpt")
    cuts = state["level_cuts"]
    assert len(cuts) == 7 and all(a <= b <= 0.0 for a, b in zip(cuts, cuts[1:], strict=False))
    qualities = [e["quality"] for es in state["bank"]["entries"].values() for e in es]
    assert qualities and all(q <= 0.0 for q in qualities)
    # with the preference term on: refused before anything runs
    assert main(["--config", CONFIG, "--run-dir", str(tmp_path / "bad"), "--no-progress",
                 *sets("method.quality_source=agreement", "method.level_quantiles=true")]) == 2
    assert not (tmp_path / "bad").exists()


def _run_cli(run: Path, extra: list[str], resume: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "qt_train.train.cli", "--config", CONFIG, "--run-dir", str(run), "--no-progress",
           *sets("train.ckpt_every=1", "train.iterations=5", *extra)]
    if resume:
        cmd.append("--resume")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(tmp_path):
    straight = tmp_path / "straight"
    proc = _run_cli(straight, [])
    assert proc.wait(timeout=600) == 0, proc.stderr.read()

    killed = tmp_path / "killed"
    proc = _run_cli(killed, [])
    deadline = time.time() + 600
    while time.time() < deadline:  # kill once a stage-2 checkpoint exists, mid-run
        ckpt = killed / "last.ckpt"
        if ckpt.exists() and load_checkpoint(ckpt)["iteration"] >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    at_kill = load_checkpoint(killed / "last.ckpt")["iteration"]
    assert 5 <= at_kill < 8, "the run finished before it could be killed; make it longer"
    proc = _run_cli(killed, [], resume=True)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    commands = (killed / "command.txt").read_text().splitlines()
    assert len(commands) == 2 and "--resume" not in commands[0] and "--resume" in commands[1]

    a, b = load_checkpoint(straight / "last.ckpt"), load_checkpoint(killed / "last.ckpt")
    assert a["iteration"] == b["iteration"] == 8
    for key in ("model", "ema", "optimizer", "bank"):
        assert tensors_equal(a[key], b[key]), f"{key} differs after resume"


@pytest.mark.slow
def test_two_process_data_parallel_with_gloo(tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "qt_train.train.cli", "--config", CONFIG, "--run-dir", str(run), "--no-progress", *sets()]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(run / "last.ckpt")
    ids = {int(k) for k in ckpt["bank"]["entries"]}
    assert {i % 2 for i in ids} == {0, 1}, "both ranks' memory banks must be in the checkpoint"


def test_nan_loss_stops_naming_iteration_and_term(tmp_path, monkeypatch, capsys):
    from qt_train.data.streams import LabelledStream

    real_batch = LabelledStream.batch

    def poisoned(self, it, rank, n):
        lq, gt = real_batch(self, it, rank, n)
        if it == 2:
            lq = lq * float("nan")
        return lq, gt

    monkeypatch.setattr(LabelledStream, "batch", poisoned)
    run = tmp_path / "run"
    code = main(["--config", CONFIG, "--run-dir", str(run), "--no-progress", *sets("train.method=supervised")])
    err = capsys.readouterr().err
    assert code == 2 and "iteration 2: loss 'sup' is nan" in err


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["data.real=/nonexistent/footage"], "/nonexistent/footage"),
        (["train.init=/nonexistent/base.ckpt"], "not found"),
        (["model.arch=resnet"], "unknown backbone 'resnet'"),
        (["model.options={widths: [8, 16]}", "model.options.widht=3"], "widht"),
    ],
)
def test_bad_input_fails_before_any_work(tmp_path, capsys, extra, fragment):
    run = tmp_path / "run"
    code = main(["--config", CONFIG, "--run-dir", str(run), "--no-progress", *sets(*extra)])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.strip().count("\n") == 0
    assert not run.exists()


def test_empty_real_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["--config", CONFIG, "--run-dir", str(tmp_path / "run"), *sets(f"data.real={tmp_path / 'empty'}")])
    assert code == 2 and "empty" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_checkpoint_of_another_architecture_is_refused(tmp_path, capsys):
    from qt_train.checkpoint import save_checkpoint
    from qt_train.models import build_backbone

    other = build_backbone("nafnet", width=8, enc_blocks=(1, 1, 1, 1), mid_blocks=1, dec_blocks=(1, 1, 1, 1))
    save_checkpoint(tmp_path / "naf.ckpt", {"arch": "nafnet", "model": other.state_dict()})
    code = main(["--config", CONFIG, "--run-dir", str(tmp_path / "run"), *sets(f"train.init={tmp_path / 'naf.ckpt'}")])
    err = capsys.readouterr().err
    assert code == 2 and "'nafnet'" in err and "'edge_unet'" in err
    # a bare state dict of the other architecture is refused too, naming the mismatching key
    torch.save(other.state_dict(), tmp_path / "naf_bare.pth")
    code = main(["--config", CONFIG, "--run-dir", str(tmp_path / "run2"), *sets(f"train.init={tmp_path / 'naf_bare.pth'}")])
    err = capsys.readouterr().err
    assert code == 2 and "edge_unet" in err and "key" in err


def test_flipped_bytes_in_a_checkpoint_are_caught_and_history_is_kept(tmp_path):
    """64 bytes flipped inside a tensor load without any error from torch; the content hash
    catches them, and the earlier checkpoints kept beside last.ckpt are still good."""
    from qt_train.checkpoint import CheckpointError, history_dir, load_checkpoint, save_checkpoint

    path = tmp_path / "last.ckpt"
    for it in range(1, 6):
        save_checkpoint(path, {"iteration": it, "model": {"w": torch.full((4096,), float(it))}}, keep=3)
    kept = sorted(p.name for p in history_dir(path).iterdir())
    assert kept == ["iter-00000003.ckpt", "iter-00000004.ckpt", "iter-00000005.ckpt"]
    data = bytearray(path.read_bytes())
    i = data.find(torch.full((4096,), 5.0).numpy().tobytes()[:64])
    assert i > 0
    data[i + 1000 : i + 1064] = bytes(b ^ 0xFF for b in data[i + 1000 : i + 1064])
    path.write_bytes(bytes(data))
    torch.load(path, weights_only=True)  # torch itself does not notice
    with pytest.raises(CheckpointError, match="content does not match the hash"):
        load_checkpoint(path)
    assert load_checkpoint(history_dir(path) / "iter-00000004.ckpt")["iteration"] == 4


def test_resume_with_another_config_is_refused_naming_the_key(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--config", CONFIG, "--run-dir", str(run), "--no-progress", *sets()]) == 0
    code = main(["--config", CONFIG, "--run-dir", str(run), "--resume", "--no-progress",
                 *sets("train.method=mean_teacher", "seed=3", "train.iterations=4")])
    err = capsys.readouterr().err
    assert code == 2 and "seed" in err and "train.method" in err and "--resume-override" in err
    assert "train.iterations" not in err  # extending a run is allowed
    assert main(["--config", CONFIG, "--run-dir", str(run), "--resume", "--no-progress",
                 *sets("train.iterations=4")]) == 0


def test_truncated_checkpoint_is_refused_and_files_untouched(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    good = torch.zeros(1000)
    torch.save({"format": "x", "w": good}, run / "last.ckpt")
    data = (run / "last.ckpt").read_bytes()
    (run / "last.ckpt").write_bytes(data[: len(data) // 2])
    before = (run / "last.ckpt").read_bytes()
    code = main(["--config", CONFIG, "--run-dir", str(run), "--resume", *sets()])
    err = capsys.readouterr().err
    assert code == 2 and "truncated or corrupt" in err
    assert (run / "last.ckpt").read_bytes() == before and sorted(p.name for p in run.iterdir()) == ["last.ckpt"]


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.ckpt").write_bytes(b"previous")
    code = main(["--config", CONFIG, "--run-dir", str(run), *sets()])
    assert code == 2 and "--resume" in capsys.readouterr().err
    assert (run / "last.ckpt").read_bytes() == b"previous"


@pytest.mark.slow
def test_qt_eval_reports_metrics_curve_and_grid(tmp_path, capsys):
    import json

    from qt_train.eval_cli import main as eval_main

    run = tmp_path / "run"
    assert main(["--config", CONFIG, "--run-dir", str(run), "--no-progress", *sets()]) == 0
    out = tmp_path / "eval"
    assert eval_main([str(run / "last.ckpt"), "--out", str(out), "--size", "96", "--limit", "3"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["paired"]) == {"synthetic", "realistic"}
    for m in results["paired"].values():
        assert 0 < m["psnr"] < 100 and -1 <= m["ssim"] <= 1 and m["n"] == 3
    # judged apart from the reward, and by ground truth on the held-out `realistic` pairs
    assert set(results["level_curve"]) == {"reward", "judge", "psnr"} and results["fidelity_set"] == "realistic"
    for name, curve in results["level_curve"].items():
        assert curve["levels"] == [float(k) for k in range(8)] and len(curve["scores"]) == 8
        assert 0.0 <= results["extrapolation"][name]["fraction_top_beats_best_pl"] <= 1.0
    # the curve's top level is the model qt-eval measured: the same PSNR
    assert results["level_curve"]["psnr"]["scores"][int(results["quality"])] == pytest.approx(
        results["paired"]["realistic"]["psnr"], abs=1e-4)
    assert {m["name"] for m in results["judge"]["members"]}.isdisjoint(
        m["name"] for m in results["reward_ensemble"]["members"])
    for m in results["paired"].values():
        assert set(m["output_scores"]) == {"reward", "judge"}
    assert (out / "levels.png").stat().st_size > 0 and (out / "grid.png").stat().st_size > 0
    assert "PSNR" in capsys.readouterr().out
    # an existing output folder is refused, and left as it was
    before = (out / "results.json").read_bytes()
    assert eval_main([str(run / "last.ckpt"), "--out", str(out), "--size", "96", "--limit", "3"]) == 2
    assert (out / "results.json").read_bytes() == before


@pytest.mark.parametrize("detach", [False, True])
def test_preference_gradient_reaches_lower_level_only_without_detach(detach):
    """With preference_detach_lower the level-k output is a fixed comparison point: the A term
    sends no gradient into level k's embedding row; without it (the reference) it does."""
    from qt_train.iqa import Ensemble
    from qt_train.method.bank import MemoryBank
    from qt_train.method.objectives import RealBatch, SemiStep, qualiteacher_terms
    from qt_train.models import build_backbone
    from qt_train.schema import MethodConfig

    torch.manual_seed(0)
    student = build_backbone("edge_unet", widths=(8, 16, 16), enc_blocks=(0, 0), mid_blocks=1, dec_blocks=(0, 0))
    with torch.no_grad():  # a non-zero embedding, so every level changes the output
        student.quality_embed.embed.weight.normal_(0, 0.5)
    teacher = build_backbone("edge_unet", widths=(8, 16, 16), enc_blocks=(0, 0), mid_blocks=1, dec_blocks=(0, 0))
    m = MethodConfig(preference_start=0, consistency=False, preference_levels=(5,), preference_detach_lower=detach,
                     multi_augment=False)
    batch = RealBatch([0, 1], torch.rand(2, 3, 96, 96), torch.tensor([False, True]))
    terms = qualiteacher_terms(SemiStep(student, teacher, Ensemble(), MemoryBank(3), batch, m,
                                        torch.Generator().manual_seed(0), semi_it=0, block=144))
    terms["pref"].backward()
    grad = student.quality_embed.embed.weight.grad
    assert grad[7].abs().sum() > 0
    assert (grad[5].abs().sum() > 0) != detach


def test_the_method_table_is_the_one_list_of_methods():
    """`TrainConfig.method`'s type and `METHODS` name the same methods; only QualiTeacher is conditioned."""
    import typing

    from qt_train.method.objectives import METHODS, conditioned
    from qt_train.schema import MethodConfig, TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    assert set(typing.get_args(hints["method"])) == set(METHODS)
    assert [name for name in METHODS if conditioned(name, MethodConfig())] == ["qualiteacher"]
    assert METHODS["supervised"].terms is None and METHODS["reliable_bank"].bank_k == 1
