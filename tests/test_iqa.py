"""IQA ensemble: pure rules, spec as data, offline scoring, reward gradients, block maps, bad inputs."""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from qt_train.iqa import (
    EnsembleSpec,
    Member,
    block_quality_map,
    combine,
    default_spec,
    load_spec,
    normalise,
    reference_spec,
    spec_from_dict,
    spec_to_dict,
    to_level,
)
from qt_train.iqa.mapping import block_grid, window_starts
from qt_train.iqa.weights import WEIGHTS_ENV, bundled_assets_dir, resolve_weights

REPO = Path(__file__).resolve().parents[1]
LOWER = Member(name="a", weight=1.0, direction="lower", raw_range=(0.0, 100.0))
HIGHER = Member(name="b", weight=3.0, direction="higher", raw_range=(2.0, 4.0))
SPEC8 = EnsembleSpec(members=(LOWER, HIGHER))



def _photo(name: str = "chelsea", size: int = 256) -> torch.Tensor:
    from calibration.niqe_fit import package_photo

    img = package_photo(name)[:size, :size]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]


@pytest.fixture(scope="module")
def ens():
    from qt_train.iqa import Ensemble

    return Ensemble(device="cpu", cache_size=64)


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Four real 256 px crops (NIQE in its raw range, so its gradient is not clamped away)."""
    return torch.cat([_photo(n) for n in ("chelsea", "grace_hopper", "astronaut", "coffee")])


# ----------------------------------------------------------------------------- pure rules


def test_normalise_lower_and_higher_clamped():
    raw = torch.tensor([-50.0, 0.0, 25.0, 100.0, 180.0])
    torch.testing.assert_close(normalise(raw, LOWER), torch.tensor([1.0, 1.0, 0.75, 0.0, 0.0]))
    raw = torch.tensor([0.0, 2.0, 3.0, 4.0, 9.0])
    torch.testing.assert_close(normalise(raw, HIGHER), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))


def test_normalise_nonfinite_is_worst():
    out = normalise(torch.tensor([float("nan"), float("inf"), -float("inf")]), LOWER)
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 0.0]))


def test_normalise_brisque_reference_mapping_clamped():
    """The reference maps BRISQUE b to (100 - max(b, 0)) / 100 unclamped above 100; ours stays in [0, 1]."""
    brisque = reference_spec().member("brisque")
    out = normalise(torch.tensor([-5.0, 20.0, 130.0]), brisque)
    torch.testing.assert_close(out, torch.tensor([1.0, 0.8, 0.0]))


@pytest.mark.parametrize(
    ("s", "level"),
    [
        (0.0, 0),
        (0.05, 0),
        (0.1, 1),
        (0.3, 3),
        (0.6, 6),
        (0.69999, 6),
        (0.7, 7),
        (0.95, 7),
        (1.0, 7),
        (-0.3, 0),
        (1.7, 7),
    ],
)
def test_reference_level_rule(s, level):
    assert int(to_level(torch.tensor([s]), SPEC8)[0]) == level
    assert int(to_level(torch.tensor([s], dtype=torch.float64), SPEC8)[0]) == level


def test_level_rule_keeps_shape_and_dtype():
    out = to_level(torch.rand(2, 3, 4), SPEC8)
    assert out.shape == (2, 3, 4) and out.dtype == torch.long


def test_level_nan_raises():
    with pytest.raises(ValueError, match="NaN"):
        to_level(torch.tensor([0.5, float("nan")]), SPEC8)


def test_custom_thresholds():
    spec = EnsembleSpec(members=(LOWER,), levels=4, thresholds=(0.25, 0.5, 0.9))
    s = torch.tensor([-1.0, 0.0, 0.2499, 0.25, 0.5, 0.89, 0.9, 1.0, 2.0])
    assert to_level(s, spec).tolist() == [0, 0, 0, 1, 2, 2, 3, 3, 3]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"levels": 4}, "give 3 thresholds"),
        ({"levels": 4, "thresholds": (0.1, 0.2)}, "levels-1 = 3"),
        ({"levels": 3, "thresholds": (0.5, 0.5)}, "strictly increasing"),
        ({"levels": 3, "thresholds": (0.5, 1.5)}, "strictly increasing"),
        ({"levels": 1}, "levels must be"),
        ({"block": 0}, "block must be"),
    ],
)
def test_spec_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EnsembleSpec(members=(LOWER,), **kwargs)


def test_member_validation():
    with pytest.raises(ValueError, match="direction"):
        Member(name="x", weight=1, direction="up", raw_range=(0, 1))
    with pytest.raises(ValueError, match="weight"):
        Member(name="x", weight=0, direction="lower", raw_range=(0, 1))
    with pytest.raises(ValueError, match="lo < hi"):
        Member(name="x", weight=1, direction="lower", raw_range=(1, 1))
    with pytest.raises(ValueError, match="unique"):
        EnsembleSpec(members=(LOWER, LOWER))
    with pytest.raises(ValueError, match="at least one"):
        EnsembleSpec(members=())


def test_combine_normalises_weights():
    norm = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0, 1.0])}
    torch.testing.assert_close(combine(norm, SPEC8), torch.tensor([0.25, 0.75]))
    with pytest.raises(ValueError, match="missing"):
        combine({"a": torch.tensor([1.0])}, SPEC8)
    with pytest.raises(ValueError, match="unexpected"):
        combine({**norm, "c": torch.tensor([1.0, 1.0])}, SPEC8)


def test_reference_weights_and_rule_reproduce_paper_mix():
    spec = reference_spec()
    norm = {"musiq": torch.tensor([0.6]), "clipiqa": torch.tensor([0.5]), "brisque": torch.tensor([0.9])}
    s = combine(norm, spec)
    assert float(s) == pytest.approx(0.4 * 0.6 + 0.2 * 0.5 + 0.4 * 0.9)
    assert int(to_level(s, spec)) == 7


def test_block_geometry():
    assert block_grid(288, 300, 144) == (2, 3)
    assert window_starts(288, 144, 144) == [0, 144]
    # partial last block (12 px) is scored through a full window shifted inside the image
    assert window_starts(300, 144, 144) == [0, 144, 156]
    # member minimum larger than the block: centred context windows
    assert window_starts(256, 64, 96) == [0, 48, 112, 160]
    with pytest.raises(ValueError):
        window_starts(80, 64, 96)


def test_block_quality_map_expand():
    norm = {"a": torch.tensor([[[1.0, 0.0]]]), "b": torch.tensor([[[1.0, 1.0]]])}
    q = block_quality_map(norm, SPEC8)
    torch.testing.assert_close(q, torch.tensor([[[1.0, 0.75]]]))
    full = block_quality_map(norm, SPEC8, size=(80, 150), block=80)
    assert full.shape == (1, 1, 80, 150)
    assert float(full[0, 0, 79, 79]) == 1.0 and float(full[0, 0, 0, 80]) == 0.75
    with pytest.raises(ValueError, match="does not tile"):
        block_quality_map(norm, SPEC8, size=(100, 400), block=80)


# ----------------------------------------------------------------------------- spec as data


def test_presets_are_the_packaged_yaml_files():
    """One YAML file per preset and no Python twin: the table lists exactly the files."""
    from qt_train.iqa.spec import PRESETS, PRESETS_DIR

    assert sorted(PRESETS) == sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
    for name in PRESETS:
        assert load_spec(name) == load_spec(PRESETS_DIR / f"{name}.yaml")
    assert default_spec().names == ("niqe", "piqe", "cnniqa")
    with pytest.raises(FileNotFoundError, match="default, reference, judge"):
        load_spec("defualt")


def test_spec_dict_roundtrip():
    for spec in (
        default_spec(),
        reference_spec(),
        EnsembleSpec(members=(LOWER,), levels=3, thresholds=(0.2, 0.8)),
    ):
        assert spec_from_dict(spec_to_dict(spec)) == spec


def test_spec_from_dict_unknown_keys():
    d = spec_to_dict(default_spec())
    with pytest.raises(ValueError, match="unknown key.*levles"):
        spec_from_dict({**d, "levles": 8})
    d["members"][0]["wieght"] = 1.0
    with pytest.raises(ValueError, match=r"members\[0\].*wieght"):
        spec_from_dict(d)
    with pytest.raises(ValueError, match="missing required key 'members'"):
        spec_from_dict({"levels": 8})


def test_spec_is_frozen_plain_data():
    spec = default_spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.levels = 4  # type: ignore[misc]
    assert hash(spec) == hash(default_spec())


def test_learned_member_is_one_more_entry():
    cnn = Member(
        name="cnniqa", weight=0.3, direction="higher", raw_range=(0.0, 1.0), weights_path="cnniqa_qt.pth"
    )
    hand_crafted = dataclasses.replace(default_spec(), members=default_spec().members[:2])
    assert hand_crafted.names == ("niqe", "piqe")
    spec = dataclasses.replace(hand_crafted, members=(*hand_crafted.members, cnn))
    assert spec.names == default_spec().names == ("niqe", "piqe", "cnniqa")


# ----------------------------------------------------------------------------- weights


def test_default_weights_resolve_to_bundled_asset():
    path = resolve_weights(default_spec().member("niqe"))
    assert path == (bundled_assets_dir() / "niqe_pristine.mat").resolve()
    assert resolve_weights(default_spec().member("piqe")) is None


def test_weights_dir_and_env_take_precedence(tmp_path, monkeypatch):
    own = tmp_path / "env"
    own.mkdir()
    shutil.copy(bundled_assets_dir() / "niqe_pristine.mat", own / "niqe_pristine.mat")
    monkeypatch.setenv(WEIGHTS_ENV, str(own))
    assert resolve_weights(default_spec().member("niqe")) == (own / "niqe_pristine.mat").resolve()
    arg = tmp_path / "arg"
    arg.mkdir()
    shutil.copy(bundled_assets_dir() / "niqe_pristine.mat", arg / "niqe_pristine.mat")
    assert resolve_weights(default_spec().member("niqe"), arg) == (arg / "niqe_pristine.mat").resolve()


def test_reference_spec_missing_weights_clear_error(tmp_path, monkeypatch, offline):
    from qt_train.iqa import Ensemble

    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    spec = reference_spec()  # constructing touches nothing
    with pytest.raises(FileNotFoundError) as err:
        Ensemble(spec, device="cpu")
    msg = str(err.value)
    assert "musiq" in msg and "musiq_koniq_ckpt" in msg and WEIGHTS_ENV in msg and "qt-iqa fetch" in msg
    assert str(tmp_path) in msg


def test_member_that_would_download_fails_clearly(tmp_path, monkeypatch):
    """A weight-needing metric declared without weights is refused, not fetched."""
    import pyiqa.utils.download_util as du

    from qt_train.iqa import Ensemble

    monkeypatch.setattr(du, "DEFAULT_CACHE_DIR", str(tmp_path))
    spec = EnsembleSpec(members=(Member(name="brisque", weight=1, direction="lower", raw_range=(0, 100)),))
    with pytest.raises(RuntimeError, match="tried to download"):
        Ensemble(spec, device="cpu")


# ----------------------------------------------------------------------------- scoring


def test_scoring_is_offline(offline):
    from qt_train.iqa import Ensemble

    e = Ensemble(device="cpu")
    s = e.score(_photo())
    assert set(s.raw) == {"niqe", "piqe", "cnniqa"}
    assert torch.isfinite(s.combined).all()


def test_score_fields(ens, photos):
    s = ens.score(photos, use_cache=False)
    assert s.combined.shape == (4,) and s.level.dtype == torch.long
    for name in ("niqe", "piqe", "cnniqa"):
        assert s.raw[name].shape == (4,) and torch.isfinite(s.raw[name]).all()
        assert ((s.norm[name] >= 0) & (s.norm[name] <= 1)).all()
    torch.testing.assert_close(
        s.combined, 0.2 * s.norm["niqe"] + 0.1 * s.norm["piqe"] + 0.7 * s.norm["cnniqa"]
    )
    torch.testing.assert_close(s.level, to_level(s.combined, ens.spec))


def test_batch_equals_per_image(ens, photos):
    batch = ens.score(photos, use_cache=False)
    for i in range(len(photos)):
        one = ens.score(photos[i : i + 1], use_cache=False)
        for name in batch.raw:
            assert float(one.raw[name][0]) == pytest.approx(float(batch.raw[name][i]), rel=1e-5)


def test_cache_hits(photos):
    from qt_train.iqa import Ensemble

    e = Ensemble(device="cpu", cache_size=3)
    first = e.score(photos[:2])
    assert (e.cache.hits, e.cache.misses, len(e.cache)) == (0, 2, 2)
    again = e.score(photos[:2])
    assert e.cache.hits == 2
    torch.testing.assert_close(first.combined, again.combined)
    e.score(photos)  # 2 hits, 2 misses, LRU keeps 3
    assert (e.cache.hits, e.cache.misses, len(e.cache)) == (4, 4, 3)


def test_reward_gradient_only_through_differentiable_members(ens, photos):
    x = photos[:2].clone().requires_grad_(True)
    r = ens.reward(x)
    assert r.shape == (2,) and r.requires_grad
    r.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # the detached member (PIQE) still shifts the value: reward equals the scored ensemble
    torch.testing.assert_close(
        r.detach(), ens.score(photos[:2], use_cache=False).combined, rtol=1e-5, atol=1e-5
    )


def test_reward_detached_when_no_member_differentiable(photos):
    from qt_train.iqa import Ensemble

    spec = dataclasses.replace(
        default_spec(),
        members=tuple(dataclasses.replace(m, differentiable=False) for m in default_spec().members),
    )
    e = Ensemble(spec, device="cpu")
    x = photos[:1].clone().requires_grad_(True)
    r = e.reward(x)
    assert not r.requires_grad


def test_flat_image_scores_worst_not_nan(ens):
    s = ens.score(torch.full((2, 3, 128, 128), 0.5), use_cache=False)
    assert torch.isnan(s.raw["niqe"]).all()  # NIQE cannot rate a textureless frame
    torch.testing.assert_close(s.combined, torch.zeros(2))
    assert s.level.tolist() == [0, 0]


def test_flat_image_in_batch_does_not_spoil_others(ens, photos):
    x = torch.cat([photos[:1], torch.full((1, 3, 256, 256), 0.3)])
    s = ens.score(x, use_cache=False)
    ref = ens.score(photos[:1], use_cache=False)
    assert float(s.raw["niqe"][0]) == pytest.approx(float(ref.raw["niqe"][0]), rel=1e-5)
    assert math.isnan(float(s.raw["niqe"][1]))


def test_block_map(ens, photos):
    x = photos[:2, :, :256, :200]
    q = ens.block_map(x, block=144)
    assert q.shape == (2, 2, 2) and ((q >= 0) & (q <= 1)).all()
    full = ens.block_map(x, block=144, expand=True)
    assert full.shape == (2, 1, 256, 200)
    torch.testing.assert_close(full[:, 0, ::144, ::144], q)
    # blocks smaller than NIQE's 96 px minimum are scored with context windows
    small = ens.block_map(x, block=64)
    assert small.shape == (2, 4, 4) and torch.isfinite(small).all()


# ----------------------------------------------------------------------------- bad inputs


def test_too_small_names_member(ens):
    with pytest.raises(ValueError, match=r"'niqe'.*>= 96"):
        ens.score(torch.rand(1, 3, 80, 200))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_rejected(ens, bad):
    x = torch.rand(1, 3, 128, 128)
    x[0, 1, 5, 5] = bad
    with pytest.raises(ValueError, match="NaN/inf"):
        ens.score(x)


def test_out_of_range_rejected_but_tolerance_clamped(ens):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ens.score(torch.rand(1, 3, 128, 128) * 255)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ens.score(torch.rand(1, 3, 128, 128) * 2 - 1)
    x = _photo()
    x[0, 0, 0, 0] = 1.0 + 1e-4
    assert torch.isfinite(ens.score(x, use_cache=False).combined).all()


def test_shape_and_dtype_errors(ens):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ens.score(torch.rand(3, 128, 128))
    with pytest.raises(ValueError, match="channels"):
        ens.score(torch.rand(1, 4, 128, 128))
    with pytest.raises(ValueError, match="float"):
        ens.score(torch.randint(0, 255, (1, 3, 128, 128), dtype=torch.uint8))
    with pytest.raises(TypeError):
        ens.score(np.zeros((1, 3, 128, 128), np.float32))


def test_grayscale_replicated(ens):
    grey = _photo().mean(dim=1, keepdim=True)
    a = ens.score(grey, use_cache=False)
    b = ens.score(grey.expand(-1, 3, -1, -1), use_cache=False)
    torch.testing.assert_close(a.combined, b.combined)


def test_members_stay_in_eval_mode(ens):
    ens.train()
    assert not any(m.training for m in ens.modules())


class _RunsCode:
    """A pickled object whose unpickling would write a file (stands in for any payload)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_iqa_weights_that_would_run_code_are_refused(tmp_path, monkeypatch):
    """A cnniqa_rank.pth in $QT_IQA_WEIGHTS shadows the bundled asset; pyiqa unpickles it with
    weights_only=False. It must be refused before pyiqa loads it, and nothing may have run."""
    from qt_train.iqa import Ensemble
    from qt_train.iqa.weights import UnsafeWeightsError

    marker = tmp_path / "pwned"
    evil = tmp_path / "weights"
    evil.mkdir()
    torch.save({"params": _RunsCode(marker)}, evil / "cnniqa_rank.pth")
    monkeypatch.setenv(WEIGHTS_ENV, str(evil))
    with pytest.raises(UnsafeWeightsError, match="could run code"):
        Ensemble(device="cpu")
    assert not marker.exists()
    # a plain state dict in the same place is accepted (the user's own weights stay usable)
    shutil.copy(bundled_assets_dir() / "cnniqa_rank.pth", evil / "cnniqa_rank.pth")
    Ensemble(device="cpu")
    # a pickle named like a MATLAB file is no MATLAB file
    torch.save({"params": _RunsCode(marker)}, evil / "niqe_pristine.mat")
    with pytest.raises(UnsafeWeightsError):
        Ensemble(device="cpu")
    assert not marker.exists()
