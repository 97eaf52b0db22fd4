"""The original NIQE pristine model (Mittal et al. 2013), as a judge the project never fits.

The project's own NIQE member (``niqe_fit.py``) is fitted on a handful of package photos; a judge
needs the published model. BasicSR (Apache-2.0) ships the MATLAB release's ``modelparameters.mat``
converted to ``basicsr/metrics/niqe_pris_params.npz``; this reads that file from BasicSR's source
archive (or the ``.npz`` itself), checks its sha256 against the pinned value, and writes
``qt_train/iqa/assets/niqe_original.mat`` in the layout pyiqa's NIQE loads, with provenance.

  pip download --no-deps --no-binary :all: basicsr==1.4.2 -d /tmp/basicsr
  python -m calibration.niqe_original --source /tmp/basicsr/basicsr-1.4.2.tar.gz
"""

from __future__ import annotations

import argparse
import hashlib
import io
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qt_core.atomic import write_with_provenance
from qt_train.iqa.weights import bundled_assets_dir

ASSET = bundled_assets_dir() / "niqe_original.mat"
MEMBER = "basicsr/metrics/niqe_pris_params.npz"
PINNED_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"


def read_source(source: Path) -> bytes:
    """The ``.npz`` bytes, from BasicSR's sdist (``.tar.gz``) or the ``.npz`` file itself."""
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist; download BasicSR's source archive (see --help)")
    if source.suffix == ".npz":
        return source.read_bytes()
    with tarfile.open(source, "r:gz") as tar:
        for info in tar.getmembers():
            if info.name.endswith(MEMBER) and info.isfile():
                data = tar.extractfile(info)
                if data is not None:
                    return data.read()
    raise ValueError(f"{source} holds no {MEMBER}; pass BasicSR's source archive or the .npz")


def main(argv: Sequence[str] | None = None) -> int:
    from qt_core.cli import OneLineParser

    from .niqe_fit import pristine_mat

    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="basicsr-1.4.2.tar.gz or niqe_pris_params.npz")
    parser.add_argument("--out", type=Path, default=ASSET)
    args = parser.parse_args(argv)
    data = read_source(args.source)
    digest = hashlib.sha256(data).hexdigest()
    if digest != PINNED_SHA256:
        raise ValueError(f"{MEMBER} has sha256 {digest}, expected {PINNED_SHA256}: not the published model")
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        mu, cov = np.asarray(z["mu_pris_param"], np.float64).reshape(1, 36), np.asarray(z["cov_pris_param"], np.float64)
    write_with_provenance(args.out, pristine_mat(mu, cov), {
        "model": "NIQE pristine MVG of the original MATLAB release (Mittal, Soundararajan, Bovik 2013)",
        "source": f"BasicSR 1.4.2 (Apache-2.0), {MEMBER}", "source_sha256": digest,
        "command": "python -m calibration.niqe_original --source basicsr-1.4.2.tar.gz",
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
