"""OpenVINO and NNCF telemetry: off unless the user opts in (``QT_OPENVINO_TELEMETRY=1``).

Why: ``import openvino`` (through its converter tools) and NNCF start the ``openvino_telemetry``
client, which writes a client id under ``~/intel`` and sends events to an analytics host — on an
unattended, often offline camera box that is a privacy leak and a stall. Both libraries fall back
to a built-in no-op stub when that package cannot be imported, so ``disable()`` makes it
unimportable for this process (nothing is written, nothing is sent) and also sets the opt-out
variable newer releases read. Call it before the first ``import openvino`` / ``import nncf``;
every project entry point that loads them does.
"""

from __future__ import annotations

import os
import sys

OPT_IN_ENV = "QT_OPENVINO_TELEMETRY"


def disable() -> None:
    """Keep OpenVINO/NNCF telemetry off for this process, unless ``QT_OPENVINO_TELEMETRY=1``."""
    if os.environ.get(OPT_IN_ENV) == "1":
        return
    os.environ.setdefault("OPENVINO_TELEMETRY_OPT_OUT", "1")
    if sys.modules.get("openvino_telemetry") is None:  # not imported yet (or already blocked)
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import -> ImportError -> stub
