"""qt_core: the bottom layer's one rounding rule and its media listing."""

from __future__ import annotations

import numpy as np
import pytest

from qt_core.media import IMAGE_EXTS, DataError, MissingDataError, list_files
from qt_core.pixels import to_float, to_uint8


def test_one_rounding_rule_on_every_path():
    """Clip, scale, round half to even — the same bytes from the OpenCV path (HWC) and the numpy
    path (batches), and the same as torch.round / numpy.rint would give."""
    halves = (np.arange(256, dtype=np.float32) + 0.5) / 255.0  # exact halves between levels
    img = np.stack([halves] * 3, -1)[None]  # 1x256x3
    expect = np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(to_uint8(img[0]), expect[0])  # 2-D image of 3 channels: OpenCV
    assert np.array_equal(to_uint8(img[None]), expect[None])  # a batch: numpy
    assert to_uint8(np.array([-0.5, 0.0, 1.0, 7.0], np.float32)).tolist() == [0, 0, 255, 255]


def test_to_float_scales_8_and_16_bit():
    assert to_float(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    assert to_float(np.array([0, 65535], np.uint16)).tolist() == [0.0, 1.0]
    assert np.array_equal(to_uint8(to_float(np.arange(256, dtype=np.uint8))), np.arange(256, dtype=np.uint8))


def test_listing_sorted_and_errors_say_what_to_do(tmp_path):
    for name in ("b.PNG", "a.jpg", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_files(tmp_path, IMAGE_EXTS)] == ["a.jpg", "b.PNG"]
    with pytest.raises(MissingDataError, match="does not exist"):
        list_files(tmp_path / "nope", IMAGE_EXTS)
    with pytest.raises(DataError, match="no images"):
        list_files(tmp_path, (".webp",), what="images")


def test_field_defaults_are_the_dataclass_defaults():
    """A CLI's flags default to its option dataclass: one source for each setting."""
    from dataclasses import dataclass, field

    from qt_core.cli import field_defaults

    @dataclass(frozen=True)
    class Opts:
        path: str
        n: int = 3
        sizes: tuple[int, ...] = field(default_factory=lambda: (1, 2))

    d = field_defaults(Opts)
    assert (d.n, d.sizes) == (3, (1, 2)) and not hasattr(d, "path")
