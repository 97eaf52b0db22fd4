"""Strict typed configuration: YAML -> frozen dataclasses.

Why strict: a misspelled key in a hand-written YAML silently falls back to a default and
wastes a training run. Every unknown key is an error naming the file, the key and the closest
valid key; every wrong type names the key, the expected and the given type.

The loader is generic over any frozen dataclass schema, so qt_train, calibration and
qt_export share one convention. It imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem, reported in one line that says where and what to do."""


# YAML 1.2's float rule: PyYAML implements YAML 1.1, which needs a dot and a signed exponent,
# so `2e-4` or `1e5` load as strings there; users mean numbers.
_FLOAT_RE = r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"


@functools.cache
def _loader() -> type:
    """A SafeLoader subclass with the YAML 1.2 float rule, built once (SafeLoader itself untouched)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(_FLOAT_RE), list("-+0123456789."))
    return Loader


def yaml_load(text: Any) -> Any:
    """``yaml.safe_load`` with YAML 1.2 floats (``2e-4`` is a number, not a string)."""
    import yaml

    return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass


def _closest(key: str, valid: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    if match:
        return f"did you mean '{match[0]}'?"
    return f"valid keys: {', '.join(sorted(valid))}"


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check `value` against the annotation `tp`, converting only where lossless (int->float, list->tuple, str->Path)."""

    def fail() -> ConfigError:
        return ConfigError(
            f"{source}: key '{key}' expects {_type_name(tp)}, got {type(value).__name__} {value!r}"
        )

    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        options = get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise fail()
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key, source)
            except ConfigError as exc:
                errors.append(exc)
        raise fail()
    if origin is Literal:
        if value in get_args(tp):
            return value
        allowed = ", ".join(repr(a) for a in get_args(tp))
        raise ConfigError(f"{source}: key '{key}' must be one of {allowed}, got {value!r}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise fail()
        return build(tp, value, source=source, prefix=f"{key}.")
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise fail()
        args = get_args(tp)
        if not args:
            items = list(value)
        elif len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
        else:
            if len(args) != len(value):
                raise ConfigError(
                    f"{source}: key '{key}' expects {len(args)} items, got {len(value)}: {value!r}"
                )
            items = [_coerce(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args, strict=True))]
        return list(items) if (origin is list or tp is list) else tuple(items)
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise fail()
        args = get_args(tp) or (str, Any)
        return {
            _coerce(k, args[0], key, source): _coerce(v, args[1], f"{key}.{k}", source)
            for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # .nan / .inf parse as floats; a NaN lr trains on nothing
                raise ConfigError(f"{source}: key '{key}' must be a finite number, got {value!r}")
            return float(value)
        raise fail()
    if tp is str:
        if isinstance(value, str):
            return value
        raise fail()
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise fail()
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise fail()


def build(schema: type[T], data: Mapping[str, Any], source: str = "<config>", prefix: str = "") -> T:
    """Build the frozen dataclass `schema` from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: '{prefix.rstrip('.') or 'top level'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown key '{prefix}{key}' — {_closest(str(key), list(fields))}"
            )
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], f"{prefix}{name}", source)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key '{prefix}{name}'")
    try:
        return schema(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{source}: {prefix.rstrip('.') or schema.__name__}: {exc}") from exc


def parse_overrides(overrides: Sequence[str]) -> list[tuple[list[str], Any]]:
    """Parse `a.b=value` strings; the value is read as YAML so numbers, lists and null work."""
    import yaml

    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set: '{item}' is not of the form key.path=value")
        try:
            value = yaml_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set: cannot read value of '{item}': {exc}".splitlines()[0]) from exc
        parsed.append((key.strip().split("."), value))
    return parsed


def apply_overrides(data: dict[str, Any], schema: type, overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of `data` with `--set` overrides applied, checking each key path against `schema`."""
    import copy

    data = copy.deepcopy(data)
    for path, value in parse_overrides(overrides):
        node, tp = data, schema
        for depth, part in enumerate(path):
            where = ".".join(path[: depth + 1])
            if dataclasses.is_dataclass(tp):
                names = [f.name for f in dataclasses.fields(tp)]
                if part not in names:
                    raise ConfigError(f"--set: unknown key '{where}' — {_closest(part, names)}")
                field_tp = typing.get_type_hints(tp)[part]
            else:  # free-form mapping (validated later by its owner)
                field_tp = Any
            if depth == len(path) - 1:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node, tp = child, _dataclass_in(field_tp)
    return data


def _dataclass_in(tp: Any) -> Any:
    """The dataclass inside `tp` (unwrapping Optional), or Any."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return Any


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with errors that name the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found — pass an existing YAML file (see configs/)")
    try:
        data = yaml_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        first = str(exc).replace("\n", " ")
        raise ConfigError(f"{path}: not valid YAML: {first}") from exc
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply to be a config") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def load_config(
    schema: type[T], path: str | Path | None = None, overrides: Sequence[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> T:
    """Load `path` (optional) over `defaults`, apply `--set` overrides, and build `schema` strictly."""
    data: dict[str, Any] = dict(defaults or {})
    if path is not None:
        data.update(read_yaml(path))
    source = str(path) if path is not None else "<defaults>"
    data = apply_overrides(data, schema, overrides)
    return build(schema, data, source=source)


def to_dict(cfg: Any) -> Any:
    """A plain, YAML-safe representation of a config (tuples become lists, Paths strings)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {str(k): to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def save_run_record(run_dir: str | Path, cfg: Any, argv: Sequence[str], append: bool = False) -> None:
    """Copy the resolved config and the exact command line into a run folder (reproducible runs).

    ``append`` (a resumed run) adds the command as a new line, so the run's history keeps the
    command that started it as well as every one that resumed it.
    """
    import shlex

    import yaml

    from qt_core.atomic import atomic_write_text

    run_dir = Path(run_dir)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    command = run_dir / "command.txt"
    before = command.read_text() if append and command.is_file() else ""
    atomic_write_text(command, before + shlex.join(list(argv)) + "\n")


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts (added or removed too)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b, name = old.get(key), new.get(key), f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += changed_keys(a, b, f"{name}.")
        elif key not in old or key not in new or a != b:
            out.append(name)
    return out
