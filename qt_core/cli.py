"""What every qt-* command shares: config flags and turning expected errors into one line."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from types import SimpleNamespace

from qt_core.atomic import DISK_FULL

# Errors a user can fix from the message alone; anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, PermissionError)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """A library's (often multi-line) exception text as one line for a message of ours."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors raise instead of printing usage and exiting, so :func:`run_main`
    reports them like every other bad input: one line, exit status 2. ``--help`` still prints help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(f"{message} (see {self.prog} --help)")


def field_defaults(cls: type) -> SimpleNamespace:
    """The field defaults of an option dataclass (fields without one left out), so a command's
    flags default to the dataclass's values instead of restating them."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
    return SimpleNamespace(**values)


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="task YAML (see configs/); keys not given keep their defaults")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set data.patch=96 (repeatable)",
    )


def run_main(prog: str, body: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None,
             user_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command body; a user error (``USER_ERRORS`` and the command's own ``user_errors``)
    becomes `prog: error: ...` on stderr and exit status 2."""
    try:
        return body(argv)
    except (*USER_ERRORS, *user_errors) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"{prog}: error: {exc.strerror or exc}{where}: free some space and run again "
              f"(a training run continues with --resume)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
