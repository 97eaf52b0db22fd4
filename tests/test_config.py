"""The strict config loader: unknown keys, wrong types, overrides, run records."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from qt_core.config import ConfigError, build, load_config, save_run_record, to_dict


@dataclass(frozen=True)
class Inner:
    patch: int = 64
    scale: float = 1.0
    names: tuple[str, ...] = ()
    pair: tuple[int, int] = (1, 2)
    mode: Literal["a", "b"] = "a"
    path: str | None = None


@dataclass(frozen=True)
class Outer:
    task: str
    seed: int = 0
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_builds_nested_frozen_config(tmp_path):
    path = write(tmp_path, {"task": "dehaze", "inner": {"patch": 96, "scale": 2, "names": ["x", "y"], "pair": [3, 4]}})
    cfg = load_config(Outer, path)
    assert cfg.inner.patch == 96 and cfg.inner.scale == 2.0 and isinstance(cfg.inner.scale, float)
    assert cfg.inner.names == ("x", "y") and cfg.inner.pair == (3, 4)
    with pytest.raises(FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]


def test_unknown_key_names_file_key_and_closest(tmp_path):
    path = write(tmp_path, {"task": "dehaze", "inner": {"pach": 96}})
    with pytest.raises(ConfigError) as err:
        load_config(Outer, path)
    msg = str(err.value)
    assert str(path) in msg and "inner.pach" in msg and "'patch'" in msg
    assert "\n" not in msg


def test_unknown_top_level_key_without_close_match_lists_valid_keys(tmp_path):
    path = write(tmp_path, {"task": "dehaze", "zzzzzz": 1})
    with pytest.raises(ConfigError, match="valid keys: flag, inner, seed, task"):
        load_config(Outer, path)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"task": "x", "seed": "three"}, "key 'seed' expects int, got str"),
        ({"task": "x", "seed": True}, "key 'seed' expects int, got bool"),
        ({"task": "x", "flag": 1}, "key 'flag' expects bool"),
        ({"task": "x", "inner": {"scale": "big"}}, "key 'inner.scale' expects float"),
        ({"task": "x", "inner": {"pair": [1, 2, 3]}}, "key 'inner.pair' expects 2 items"),
        ({"task": "x", "inner": {"mode": "c"}}, "key 'inner.mode' must be one of 'a', 'b'"),
        ({"task": "x", "inner": 5}, "key 'inner' expects Inner"),
        ({"seed": 1}, "missing required key 'task'"),
    ],
)
def test_wrong_types_are_named(tmp_path, data, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_config(Outer, write(tmp_path, data))


def test_overrides_set_nested_values_and_parse_yaml_scalars(tmp_path):
    path = write(tmp_path, {"task": "dehaze"})
    cfg = load_config(Outer, path, ["inner.patch=128", "inner.path=null", "flag=true", "inner.names=[a, b]"])
    assert cfg.inner.patch == 128 and cfg.flag is True and cfg.inner.names == ("a", "b") and cfg.inner.path is None


def test_exponent_floats_are_numbers_in_files_and_overrides(tmp_path):
    """PyYAML (YAML 1.1) reads `2e-4` as a string; users mean the number (YAML 1.2)."""
    path = tmp_path / "c.yaml"
    path.write_text("task: dehaze\ninner:\n  scale: 2e-4\n")
    assert load_config(Outer, path).inner.scale == pytest.approx(2e-4)
    assert load_config(Outer, path, ["inner.scale=1E5"]).inner.scale == 1e5
    assert load_config(Outer, path, ["inner.names=[1.0.0, 2e]"]).inner.names == ("1.0.0", "2e")  # not numbers
    assert load_config(Outer, path, ["inner.patch=12"]).inner.patch == 12  # ints stay ints


def test_override_typo_is_named_with_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"--set: unknown key 'inner.scal' — did you mean 'scale'\?"):
        load_config(Outer, write(tmp_path, {"task": "d"}), ["inner.scal=2"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(Outer, write(tmp_path, {"task": "d"}), ["inner.scale"])


def test_bad_yaml_and_missing_file_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_config(Outer, bad)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Outer, tmp_path / "nope.yaml")
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Outer, lst)


def test_post_init_validation_becomes_config_error():
    @dataclass(frozen=True)
    class Checked:
        n: int = 1

        def __post_init__(self):
            if self.n < 1:
                raise ValueError("n must be >= 1")

    with pytest.raises(ConfigError, match="n must be >= 1"):
        build(Checked, {"n": 0}, source="x.yaml")


def test_run_record_round_trips(tmp_path):
    cfg = load_config(Outer, write(tmp_path, {"task": "dehaze", "inner": {"names": ["q"]}}))
    save_run_record(tmp_path / "run", cfg, ["qt-train", "--config", "a b.yaml"])
    again = load_config(Outer, tmp_path / "run" / "config.yaml")
    assert again == cfg
    assert (tmp_path / "run" / "command.txt").read_text() == "qt-train --config 'a b.yaml'\n"
    assert to_dict(cfg)["inner"]["names"] == ["q"]


@pytest.mark.parametrize("module", ["qt_train.train.cli", "qt_train.data.cli", "qt_train.eval_cli",
                                    "qt_train.iqa.cli", "calibration.cli", "qt_export.cli", "qt_apps.demo"])
def test_every_command_reports_usage_errors_in_one_line(module, capsys):
    import importlib

    main = importlib.import_module(module).main
    assert main(["--no-such-flag"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err and "--help" in err
    with pytest.raises(SystemExit) as exc:  # --help still prints help and exits 0
        main(["--help"])
    assert exc.value.code == 0


@pytest.mark.parametrize("override", ["train.base_lr=.nan", "train.optim.lr=.inf", "method.pl_weight=-.inf"])
def test_non_finite_numbers_are_refused(override):
    """A NaN learning rate once trained on all-black data and exited 0."""
    from qt_train.schema import load_run_config

    with pytest.raises(ValueError, match="must be a finite number"):
        load_run_config(str(Path(__file__).resolve().parents[1] / "configs" / "dehaze.yaml"), [override])


def test_deeply_nested_yaml_is_a_config_error(tmp_path):
    from qt_train.schema import load_run_config

    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 20000 + "]" * 20000)
    with pytest.raises(ValueError, match="nested too deeply"):
        load_run_config(path)
