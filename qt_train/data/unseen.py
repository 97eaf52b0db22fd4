"""Photos no run trains on: for choosing a method, and for a held-out set wider than two photos.

Why: every labelled batch crops the same five package photos (``qt_train.data.clean``), so pairs
cut from them, however fresh the crop and the degradation, favour whichever run trained on them
longest — the supervised control. Measured (``bench/paired_ci.py``; docs/results.md, "Is a lead a
lead?"): every semi-supervised run trails the control on new crops of the training photos, and is
level with it or ahead on photos no run saw. A chooser built from the training photos picks the
control by memory.

Source: the OpenCV sample images that Debian main ships in ``opencv-doc`` (installed by ``make
sysdeps``; licence: the package's ``copyright`` file). Only natural colour photographs are used,
each in one role (one scene never in two roles: ``aero1``/``aero3`` and the ``leuven`` pair are
one scene each):

- ``validation``: chooses between methods and settings (``bench/claim.py``'s winners);
- ``heldout``: reported beside the two held-out package photos, never used to choose.

Nothing here trains: no config can name these photos as a clean source.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

Role = Literal["validation", "heldout"]

#: Where Debian's opencv-doc puts the sample images; ``$QT_UNSEEN_PHOTOS`` points elsewhere.
DEFAULT_FOLDER = Path("/usr/share/doc/opencv-doc/examples/data")
ENV = "QT_UNSEEN_PHOTOS"

#: Every photo used, by role (file stem in the folder). One explicit table.
UNSEEN_PHOTOS: dict[Role, tuple[str, ...]] = {
    "validation": ("aero1", "aero3", "aloeL", "baboon", "board", "building", "chicky_512", "fruits", "graf1",
                   "leuvenA"),
    "heldout": ("apple", "butterfly", "ela_original", "home", "messi5", "orange", "rubberwhale1", "squirrel_cls",
                "stuff"),
}
#: A stream no training run, evaluation or other validation draws from.
SEED = 0x0C_F5EE


class UnseenPhotosMissing(FileNotFoundError):
    """The photo folder is absent; the message is one line that says how to get it."""


def folder() -> Path:
    env = os.environ.get(ENV)
    return Path(env).expanduser() if env else DEFAULT_FOLDER


@functools.lru_cache(maxsize=2)
def _photos(role: Role, root: str) -> tuple[Any, ...]:
    from qt_train.data.clean import Photo
    from qt_train.data.io import ImageReadError, read_image

    base, photos = Path(root), []
    for name in UNSEEN_PHOTOS[role]:
        path = next((p for p in sorted(base.glob(f"{name}.*")) if p.suffix.lower() in (".jpg", ".png")), None)
        if path is None:
            continue
        try:
            img = read_image(path)
        except ImageReadError as exc:
            warnings.warn(f"skipping unseen photo {name}: {exc}", stacklevel=3)
            continue
        img.setflags(write=False)  # shared through the cache
        photos.append(Photo(name=name, image=img, source=str(path), licence="Debian opencv-doc (see its copyright)"))
    return tuple(photos)


def unseen_photos(role: Role) -> list[Any]:
    """The photos of one role; a clear error when the folder or most of its photos are missing."""
    if role not in UNSEEN_PHOTOS:
        raise ValueError(f"unknown role {role!r}; choose one of {sorted(UNSEEN_PHOTOS)}")
    root = folder()
    photos = list(_photos(role, str(root)))
    if len(photos) < len(UNSEEN_PHOTOS[role]) // 2:
        raise UnseenPhotosMissing(
            f"{root}: {len(photos)} of the {len(UNSEEN_PHOTOS[role])} {role} photos found; install Debian's "
            f"opencv-doc (make sysdeps does) or point ${ENV} at a folder holding them")
    return photos


def unseen_pairs(task: str, role: Role, n: int, size: int, params: Any = None) -> tuple[Any, Any]:
    """``n`` ``realistic``-domain pairs (lq, gt as NCHW tensors) cut from the photos of ``role``."""
    from qt_train.data.clean import photo_crops
    from qt_train.data.degrade import TASKS, degrade
    from qt_train.data.streams import nchw

    rng = np.random.default_rng([SEED, TASKS.index(task), list(UNSEEN_PHOTOS).index(role)])
    gt = photo_crops(unseen_photos(role), n, size, rng, f"unseen photos ({role})")
    lq, _ = degrade(task, "realistic", gt, rng, params=params)
    return nchw(lq), nchw(gt)
