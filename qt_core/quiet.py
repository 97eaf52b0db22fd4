"""A quiet console: libraries' INFO chatter off unless a command runs with ``--verbose``.

NNCF logs every ignored node and quantizer decision at INFO to stdout, torch's extension loader
warns that no CUDA runtime exists on a CPU box, and native frontends (absl/glog-style C++ logs)
print through their own switches. None of it tells a user anything they can act on; warnings
and errors still show. Loggers are filtered (not re-levelled), because NNCF sets its logger's
level when it is imported, which may happen after this runs.
"""

from __future__ import annotations

import logging
import os

#: logger -> lowest level still shown without --verbose.
NOISY: dict[str, int] = {
    "nncf": logging.WARNING,
    "openvino": logging.WARNING,
    "absl": logging.WARNING,
    "tensorflow": logging.WARNING,
    "onnxruntime": logging.WARNING,
    "torch.utils.cpp_extension": logging.ERROR,  # "No CUDA runtime is found" on every CPU export
}
#: environment switches of native loggers (set only where the user has not set them).
NATIVE_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "GLOG_minloglevel": "2", "ABSL_MIN_LOG_LEVEL": "2"}


class _AtLeast(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


def quiet_libraries(verbose: bool = False) -> None:
    """Hide library INFO lines for this process (idempotent); ``verbose=True`` leaves everything on."""
    if verbose:
        for name in NOISY:
            logger = logging.getLogger(name)
            for f in [f for f in logger.filters if isinstance(f, _AtLeast)]:
                logger.removeFilter(f)
        return
    for key, value in NATIVE_ENV.items():
        os.environ.setdefault(key, value)
    for name, level in NOISY.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _AtLeast) for f in logger.filters):
            logger.addFilter(_AtLeast(level))
