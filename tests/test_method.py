"""The method's pure pieces: EMA, augmentations, memory bank, losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qt_train.method.augment import (
    GEOMETRIC_VIEWS,
    PHOTOMETRIC_OPS,
    invert,
    multi_augment,
    strong_augment,
)
from qt_train.method.bank import BankEntry, MemoryBank, bank_update, reliable_accepts, reliable_update
from qt_train.method.ema import ema_decay, ema_update
from qt_train.method.losses import (
    block_weighted_l1,
    cropped_consistency,
    expand_block_map,
    level_pair,
    preference_loss,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------- EMA


def _pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    student = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    student[1].running_mean.fill_(0.3)
    return teacher, student


def test_ema_decay_zero_copies_and_one_keeps() -> None:
    teacher, student = _pair()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    ema_update(teacher, student, 1.0)
    for name, p in teacher.named_parameters():
        assert torch.equal(p, before[name])
    assert torch.equal(teacher[1].running_mean, student[1].running_mean)  # buffers are copied
    ema_update(teacher, student, 0.0)
    for (name, p), q in zip(teacher.named_parameters(), student.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_ema_math_and_checks() -> None:
    teacher, student = _pair()
    t0 = teacher[0].weight.detach().clone()
    ema_update(teacher, student, 0.9)
    torch.testing.assert_close(teacher[0].weight, 0.9 * t0 + 0.1 * student[0].weight)
    with pytest.raises(ValueError):
        ema_update(teacher, student, 1.5)
    with pytest.raises(ValueError):
        ema_update(teacher, nn.Conv2d(3, 4, 3), 0.5)


def test_ema_decay_warmup() -> None:
    assert ema_decay(0) == 0.0
    assert ema_decay(1) == 0.5
    assert ema_decay(9) == pytest.approx(0.9)
    assert ema_decay(10**6) == 0.999
    assert ema_decay(10**6, max_decay=0.996) == 0.996
    with pytest.raises(ValueError):
        ema_decay(-1)


# ------------------------------------------------------------------------------- augmentations


def test_multi_augment_inverts_exactly() -> None:
    x = torch.rand(2, 3, 5, 7)
    views = multi_augment(x, GEOMETRIC_VIEWS)
    assert [n for n, _ in views] == list(GEOMETRIC_VIEWS)
    assert [n for n, _ in multi_augment(x)] == ["identity", "hflip", "vflip", "rot90"]
    for name, xa in views:
        assert torch.equal(invert(name, xa), x), name
    assert dict(views)["rot90"].shape == (2, 3, 7, 5)
    assert not torch.equal(dict(views)["hflip"], x)
    with pytest.raises(ValueError, match="hflip"):
        multi_augment(x, ["shear"])


def test_strong_augment_is_deterministic_and_in_range() -> None:
    x = torch.rand(4, 3, 16, 16)
    a = strong_augment(x, gen(3))
    b = strong_augment(x, gen(3))
    c = strong_augment(x, gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == x.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(strong_augment(x, gen(0), magnitude=0.0, ops=["brightness", "gamma"]), x)
    assert torch.equal(strong_augment(x, gen(0), n_ops=0), x)
    with pytest.raises(ValueError):
        strong_augment(x, gen(0), ops=["rotate"])


@pytest.mark.parametrize("op", sorted(set(PHOTOMETRIC_OPS) - {"noise"}))
def test_photometric_ops_do_not_move_pixels(op: str) -> None:
    """A single bright pixel on a dark background stays the brightest pixel, at its place."""
    x = torch.full((2, 3, 15, 17), 0.1)
    x[:, :, 6, 9] = 0.8
    strength = torch.ones(2)
    y = PHOTOMETRIC_OPS[op](x, strength, gen(0))
    assert y.shape == x.shape
    for i in range(2):
        grey = y[i].mean(0)
        flat = grey.flatten()
        peak = int(flat.argmax()) if op != "solarize" else int((grey - grey[0, 0]).abs().flatten().argmax())
        assert divmod(peak, 17) == (6, 9), op
        # symmetric about the pixel: nothing shifted to one side
        torch.testing.assert_close(grey[6, 8], grey[6, 10])
        torch.testing.assert_close(grey[5, 9], grey[7, 9])


def test_strong_augment_keeps_alignment_batched() -> None:
    x = torch.full((8, 3, 15, 17), 0.2)
    x[:, :, 6, 9] = 0.7
    y = strong_augment(
        x, gen(11), n_ops=2, magnitude=10, ops=sorted(set(PHOTOMETRIC_OPS) - {"noise", "solarize"})
    )
    for i in range(8):
        diff = (y[i] - y[i, :, 0:1, 0:1]).abs().mean(0).flatten()
        assert divmod(int(diff.argmax()), 17) == (6, 9)


# ------------------------------------------------------------------------------------ memory bank


def entry(score: float, level: int = 5, value: float = 0.5) -> BankEntry:
    return BankEntry(score, level, torch.full((3, 4, 4), value), torch.full((1, 1), score))


def test_bank_update_keeps_best_k_best_first_and_is_pure() -> None:
    stored = [entry(0.5), entry(0.2)]
    cands = [entry(0.9), entry(0.1), entry(0.4)]
    out = bank_update(stored, cands, k=3)
    assert [e.score for e in out] == [0.9, 0.5, 0.4]
    assert [e.score for e in stored] == [0.5, 0.2]  # inputs untouched
    assert [e.score for e in bank_update([], [entry(0.3)], k=3)] == [0.3]
    nan_first = bank_update([entry(0.1)], [entry(float("nan"))], k=1)
    assert nan_first[0].score == 0.1


def test_bank_ties_keep_stored_entries() -> None:
    old = entry(0.5, level=1)
    new = entry(0.5, level=2)
    assert bank_update([old], [new], k=1)[0].level == 1
    out = bank_update([entry(0.7), old], [new], k=2)
    assert [e.level for e in out] == [5, 1]


def test_memory_bank_round_trip_and_storage() -> None:
    bank = MemoryBank(k=2)
    pl = torch.rand(3, 8, 8)
    got = bank.update("a.png", [BankEntry(0.4, 4, pl), BankEntry(0.6, 6, pl * 0.5, torch.ones(2, 2))])
    assert [e.level for e in got] == [6, 4]
    assert got[0].pl.dtype == torch.float32
    assert (got[1].pl - pl).abs().max() <= 0.5 / 255 + 1e-6  # uint8 storage
    bank.update("a.png", [BankEntry(0.5, 5, pl)])
    assert [e.level for e in bank.get("a.png")] == [6, 5]
    bank.update("b.png", [BankEntry(0.1, 1, pl)])
    assert bank.best("b.png").level == 1 and bank.best("zzz") is None and bank.get("zzz") == []
    assert len(bank) == 2 and "a.png" in bank

    state = bank.state_dict()
    assert state["entries"]["a.png"][0]["pl"].dtype == torch.uint8
    other = MemoryBank(k=2)
    other.load_state_dict(state)
    for image_id in bank.ids():
        for e1, e2 in zip(bank.get(image_id), other.get(image_id), strict=True):
            assert (e1.score, e1.level) == (e2.score, e2.level)
            assert e1.quality == e2.quality or (math.isnan(e1.quality) and math.isnan(e2.quality))
            assert torch.equal(e1.pl, e2.pl)
            assert (e1.block_map is None and e2.block_map is None) or torch.equal(e1.block_map, e2.block_map)
    with pytest.raises(ValueError):
        MemoryBank(k=3).load_state_dict(state)


def test_memory_bank_float_storage_is_exact(tmp_path) -> None:
    bank = MemoryBank(k=1, pl_dtype="float32")
    pl = torch.rand(3, 5, 5)
    bank.update("x", [BankEntry(1.0, 7, pl)])
    torch.save(bank.state_dict(), tmp_path / "bank.pt")
    other = MemoryBank(k=1, pl_dtype="float32")
    other.load_state_dict(torch.load(tmp_path / "bank.pt"))
    assert torch.equal(other.best("x").pl, pl)


def test_reliable_bank_rule() -> None:
    assert bool(reliable_accepts(0.5, 0.6, 0.4))
    assert not bool(reliable_accepts(0.5, 0.6, 0.7))  # student already better
    assert not bool(reliable_accepts(0.7, 0.6, 0.4))  # stored PL better
    assert not bool(reliable_accepts(0.6, 0.6, 0.4))  # ties do not replace
    assert bool(reliable_accepts(None, 0.6, 0.4))
    mask = reliable_accepts(torch.tensor([0.5, 0.5]), torch.tensor([0.6, 0.6]), torch.tensor([0.4, 0.9]))
    assert mask.tolist() == [True, False]
    stored, cand = entry(0.5, level=1), entry(0.6, level=2)
    assert reliable_update(stored, cand, 0.4) is cand
    assert reliable_update(stored, cand, 0.8) is stored
    assert reliable_update(None, cand, 0.8) is None


# ------------------------------------------------------------------------------------------ losses


def test_block_weighted_l1_hand_computed() -> None:
    pred = torch.zeros(1, 1, 3, 3)
    target = torch.ones(1, 1, 3, 3)
    # 2x2 blocks on a 3x3 image: grid 2x2, partial edge blocks
    blocks = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    # pixel weights: [[1,1,2],[1,1,2],[3,3,4]] -> mean 18/9 = 2
    assert float(block_weighted_l1(pred, target, blocks, block=2)) == pytest.approx(2.0)
    full = expand_block_map(blocks, 3, 3, block=2)
    assert full.shape == (1, 1, 3, 3) and full[0, 0].tolist() == [[1, 1, 2], [1, 1, 2], [3, 3, 4]]
    assert float(block_weighted_l1(pred, target * 0.5, full, block=2)) == pytest.approx(1.0)
    rgb = block_weighted_l1(
        torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4), torch.full((2, 1, 1), 0.5), block=144
    )
    assert float(rgb) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="does not tile"):
        block_weighted_l1(pred, target, torch.ones(1, 1, 1), block=2)


def test_preference_loss_values() -> None:
    r_top, r_k, r_pl = torch.tensor([0.8]), torch.tensor([0.6]), torch.tensor([0.7])
    a = -math.log(1 / (1 + math.exp(-(0.8 - 0.6 - 0.1))))
    b = -math.log(1 / (1 + math.exp(-(0.8 - 0.7))))
    assert float(preference_loss(r_top, r_k, r_pl)) == pytest.approx(a + 0.5 * b, rel=1e-6)
    got = preference_loss(r_top, r_k, r_pl, beta=2.0, delta=0.0, lam=3.0, b_weight=1.0)
    a2 = -math.log(1 / (1 + math.exp(-2 * 0.2)))
    b2 = -math.log(1 / (1 + math.exp(-2 * 0.1)))
    assert float(got) == pytest.approx(3 * (a2 + b2), rel=1e-6)
    # mean over the batch and finite for huge gaps
    batch = preference_loss(torch.tensor([0.8, 0.8]), torch.tensor([0.6, 0.6]), torch.tensor([0.7, 0.7]))
    assert float(batch) == pytest.approx(a + 0.5 * b, rel=1e-6)
    assert math.isfinite(
        float(preference_loss(torch.tensor([-1e4]), torch.tensor([1e4]), torch.tensor([1e4])))
    )


def test_preference_gradients() -> None:
    r_top = torch.tensor([0.5], requires_grad=True)
    r_k = torch.tensor([0.5], requires_grad=True)
    r_pl = torch.tensor([0.5], requires_grad=True)
    preference_loss(r_top, r_k, r_pl).backward()
    assert float(r_top.grad) < 0  # raising r_top lowers the loss
    assert float(r_k.grad) > 0
    assert r_pl.grad is None  # teacher side detached
    lower = preference_loss(torch.tensor([0.9]), torch.tensor([0.5]), torch.tensor([0.5]))
    higher = preference_loss(torch.tensor([0.5]), torch.tensor([0.5]), torch.tensor([0.5]))
    assert float(lower) < float(higher)


def test_cropped_consistency() -> None:
    x = torch.rand(2, 3, 16, 20)
    assert float(cropped_consistency(lambda t: t**2, x, gen(0))) == 0.0
    assert float(cropped_consistency(lambda t: t.clamp(0.2, 0.8), x, gen(1), margin=2)) == 0.0
    shifted = cropped_consistency(lambda t: torch.roll(t, 1, dims=-1), x, gen(0))
    assert float(shifted) > 0.0
    # the reference's independent crops compare unrelated content: > 0 even for the identity
    assert float(cropped_consistency(lambda t: t, x, gen(0), aligned=False)) > 0.0
    # a local (3x3 blur) function is penalised only by what the crop border changes
    blur = lambda t: F.avg_pool2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), 3, 1)  # noqa: E731
    assert float(cropped_consistency(blur, x, gen(0), margin=1)) == pytest.approx(0.0, abs=1e-6)
    assert float(cropped_consistency(blur, x, gen(0), margin=0)) > 0.0
    # gradients reach the student's parameters
    w = torch.tensor(1.5, requires_grad=True)
    cropped_consistency(lambda t: torch.roll(t, 1, dims=-1) * w, x, gen(2)).backward()
    assert w.grad is not None
    with pytest.raises(ValueError):
        cropped_consistency(lambda t: t, x, gen(0), margin=4)


def test_level_pair() -> None:
    draws = [level_pair(gen(s), (4, 5, 6), 7) for s in range(60)]
    assert all(top == 7 for top, _ in draws)
    assert {k for _, k in draws} == {4, 5, 6}
    assert level_pair(gen(5), (4, 5, 6), 7) == level_pair(gen(5), (4, 5, 6), 7)
    assert level_pair(gen(0), choices=(2,), top=3) == (3, 2)
    with pytest.raises(ValueError):
        level_pair(gen(0), choices=(7,), top=7)


def test_quantile_levels_populate_every_level_and_survive_the_bank() -> None:
    """The reference rule put 90% of PLs at levels 6-7; cuts at the bank's quantiles give each of
    the K levels ~1/K of them, whatever the scale of the scores."""
    from qt_train.method.levels import level_of, quantile_cuts

    g = torch.Generator().manual_seed(0)
    qualities = 0.6 + 0.2 * torch.rand(400, generator=g, dtype=torch.float64)  # all would be >= level 6
    assert quantile_cuts(qualities[:10], 8) is None  # too few PLs yet: the caller keeps its rule
    cuts = quantile_cuts(qualities, 8)
    assert cuts.shape == (7,) and bool((cuts.diff() > 0).all())
    counts = torch.bincount(level_of(qualities, cuts), minlength=8)
    assert counts.min() >= 45 and counts.max() <= 55  # 50 each
    assert int(level_of(cuts[3], cuts)) == 4  # a quality equal to a cut goes up, as to_level does
    assert quantile_cuts(torch.tensor([math.nan] * 40 + [0.5] * 20, dtype=torch.float64), 8) is not None

    bank = MemoryBank(k=1)
    for i, q in enumerate(qualities[:32].tolist()):
        bank.update(str(i), [BankEntry(q, 0, torch.rand(3, 4, 4), None, q)])
    other = MemoryBank(k=1)
    other.load_state_dict(bank.state_dict())
    assert torch.equal(other.qualities(), qualities[:32])


def test_view_agreement_ranks_the_view_that_strays_last() -> None:
    from qt_train.method.agreement import consensus, view_agreement

    base = torch.rand(1, 2, 3, 8, 8)
    cands = base.repeat(4, 1, 1, 1, 1)
    assert torch.equal(view_agreement(cands), torch.zeros(4, 2))  # every view agrees
    cands[2, 0] += 0.3  # one view of image 0 goes wrong: the median ignores it, it ranks last
    q = view_agreement(cands)
    assert torch.allclose(consensus(cands), base[0]) and int(q[:, 0].argmin()) == 2
    assert q[2, 0] == pytest.approx(-0.3, abs=1e-6) and torch.equal(q[:, 1], torch.zeros(4))
    # an image whose views disagree more has lower quality on every view (comparable across images)
    spread = base.repeat(4, 1, 1, 1, 1)
    spread[:, 1] += torch.tensor([0.0, 0.1, -0.1, 0.05]).view(4, 1, 1, 1)
    q = view_agreement(spread)
    assert torch.equal(q[:, 0], torch.zeros(4)) and (q[:, 1] < 0).all()
    with pytest.raises(ValueError, match="2 views"):
        view_agreement(cands[:1])
