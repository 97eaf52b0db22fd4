"""Convert the ``brisque`` package's LIVE-trained model into a plain numpy archive the project owns.

The package ships ``models/svm.txt`` (a libsvm text model: epsilon-SVR, RBF kernel) and
``models/normalize.pickle`` (the per-feature min/max the SVR was trained on). This reads the text
model directly, unpickles the scaling once, here, and writes ``qt_train/iqa/assets/brisque_live.npz``
(``allow_pickle=False`` loadable) with a JSON provenance file beside it (package version, sha256
of both source files). Run once per package release:

  python -m calibration.brisque_convert [--out qt_train/iqa/assets/brisque_live.npz]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pickle
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from qt_core.atomic import write_with_provenance
from qt_train.iqa.brisque_live import ASSET


def package_model_dir() -> Path:
    from importlib.metadata import PackageNotFoundError, files, version

    try:
        version("brisque")
    except PackageNotFoundError as exc:
        raise FileNotFoundError("the brisque package is not installed; pip install brisque") from exc
    found = [f for f in (files("brisque") or []) if str(f).endswith("models/svm.txt")]
    if not found:
        raise FileNotFoundError(f"the installed brisque {version('brisque')} ships no models/svm.txt")
    return Path(str(found[0].locate())).parent


def parse_libsvm(text: str) -> dict:
    """An RBF epsilon-SVR from libsvm's text format: gamma, rho, coefficients, dense support vectors."""
    header, _, body = text.partition("\nSV\n")
    meta = dict(line.split(" ", 1) for line in header.splitlines() if " " in line)
    if meta.get("svm_type") != "epsilon_svr" or meta.get("kernel_type") != "rbf":
        raise ValueError(f"expected an RBF epsilon-SVR, got {meta.get('svm_type')} / {meta.get('kernel_type')}")
    rows = [line.split() for line in body.splitlines() if line.strip()]
    dim = max(int(tok.split(":")[0]) for row in rows for tok in row[1:])
    sv = np.zeros((len(rows), dim))
    for i, row in enumerate(rows):
        for tok in row[1:]:
            k, v = tok.split(":")
            sv[i, int(k) - 1] = float(v)
    if len(rows) != int(meta["total_sv"]):
        raise ValueError(f"model says {meta['total_sv']} support vectors, found {len(rows)}")
    return {"support_vectors": sv, "coef": np.array([float(r[0]) for r in rows]),
            "rho": np.float64(meta["rho"]), "gamma": np.float64(meta["gamma"])}


def main(argv: Sequence[str] | None = None) -> int:
    from importlib.metadata import version

    from qt_core.cli import OneLineParser

    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ASSET)
    args = parser.parse_args(argv)
    src = package_model_dir()
    svm_text = (src / "svm.txt").read_bytes()
    norm_bytes = (src / "normalize.pickle").read_bytes()
    scale = pickle.loads(norm_bytes)  # noqa: S301 - the package's own file, read once to convert it
    model = parse_libsvm(svm_text.decode())
    model["feature_min"] = np.array([float(v) for v in scale["min_"]])
    model["feature_max"] = np.array([float(v) for v in scale["max_"]])
    if model["feature_min"].shape != (model["support_vectors"].shape[1],):
        raise ValueError("the scaling does not match the model's feature count")
    buf = io.BytesIO()
    np.savez_compressed(buf, **model)
    write_with_provenance(args.out, buf.getvalue(), {
        "source": f"brisque {version('brisque')} (Apache-2.0): models/svm.txt, models/normalize.pickle",
        "svm_txt_sha256": hashlib.sha256(svm_text).hexdigest(),
        "normalize_pickle_sha256": hashlib.sha256(norm_bytes).hexdigest(),
        "trained_on": "LIVE IQA database opinion scores (by the package's authors)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m calibration.brisque_convert",
    })
    print(f"wrote {args.out} ({len(model['coef'])} support vectors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
