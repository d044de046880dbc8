"""Model registry and config files: every model name the command lines accept, and its settings.

Settings come from one TOML file per dataset x model, ``harness/configs/<dataset>/<model>.toml``,
with a ``[model]`` table (the model's config dataclass) and a ``[train]`` table
(:class:`harness.train.TrainConfig`); ``--set KEY=VALUE`` overrides a value of either, and
``--config FILE`` reads another file instead. A key the config classes do not have, or a value of
the wrong type, is rejected with the file and the key named.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from baselines import REGISTRY as BASELINES
from baselines.contract import SequentialRecommender
from dreamrec.model import DreamRec, DreamRecConfig
from generative import REGISTRY as GENERATIVE
from harness.errors import HarnessError
from harness.train import TrainConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SECTIONS = ("model", "train")


@dataclass(frozen=True)
class ModelSpec:
    """How to build one model: its config dataclass and a builder ``(n_items, config)``."""

    name: str
    config_cls: type
    build: Callable[[int, Any], SequentialRecommender]

    def config_path(self, dataset: str) -> Path:
        return CONFIG_DIR / dataset / f"{self.name}.toml"

    def configs(self, dataset: str, overrides: dict[str, str] | None = None,
                config_file: str | Path | None = None) -> tuple[Any, TrainConfig]:
        """Model and train configs: the config file, then ``overrides`` (``--set`` texts).

        The file is ``config_file`` when given, else this model's file for ``dataset``.
        """
        path = Path(config_file) if config_file else self.config_path(dataset)
        kw = read_config_file(path, self.config_cls)
        model_fields = {f.name: f for f in dataclasses.fields(self.config_cls)}
        train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
        for key, text in (overrides or {}).items():
            if key in model_fields:
                kw["model"][key] = _coerce(key, text, model_fields[key])
            elif key in train_fields:
                kw["train"][key] = _coerce(key, text, train_fields[key])
            else:
                valid = ", ".join(sorted(model_fields) + sorted(train_fields))
                raise HarnessError(f"unknown setting {key!r} for {self.name}; valid: {valid}")
        try:
            return self.config_cls(**kw["model"]), TrainConfig(**kw["train"])
        except ValueError as e:
            raise HarnessError(f"invalid setting for {self.name} ({path}): {e}") from None


def read_config_file(path: Path, config_cls: type,
                     _seen: tuple[Path, ...] = ()) -> dict[str, dict[str, Any]]:
    """The ``[model]`` and ``[train]`` tables of a config file, each key checked and typed.

    A file may start with ``extends = "<file>"`` (a path relative to its own folder): that
    file's settings are read first and this file's replace them key by key, so a variant such
    as ``sasrec.positives.toml`` (``n_negatives = 0``) follows its base when tuning rewrites it.
    """
    if not path.is_file():
        raise HarnessError(f"config file {path} not found; pass an existing file with --config, "
                           f"or write one with python -m harness.tune")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise HarnessError(f"config file {path} is not valid TOML: {e}") from None
    out: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    base = data.pop("extends", None)
    if base is not None:
        if not isinstance(base, str) or not base:
            raise HarnessError(f"config file {path}: extends must name a config file, e.g. "
                               f"extends = \"sasrec.toml\"")
        base_path = (path.parent / base).resolve()
        if base_path in _seen or base_path == path.resolve():
            raise HarnessError(f"config file {path}: extends {base} comes back to itself; "
                               f"break the cycle")
        inherited = read_config_file(base_path, config_cls, (*_seen, path.resolve()))
        out = {section: dict(table) for section, table in inherited.items()}
    for section, table in data.items():
        if section not in SECTIONS or not isinstance(table, dict):
            raise HarnessError(f"config file {path}: unknown section {section!r}; valid: "
                               f"extends, [model], [train]")
        cls = config_cls if section == "model" else TrainConfig
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in table.items():
            if key not in fields:
                raise HarnessError(f"config file {path}: unknown setting {key!r} in [{section}]; "
                                   f"valid: {', '.join(sorted(fields))}")
            out[section][key] = _check_type(path, key, value, fields[key])
    return out


def _check_type(path: Path, key: str, value: Any, field: dataclasses.Field) -> Any:
    kind = type(field.default)  # every config field has a default
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str),
          tuple: lambda v: isinstance(v, list) and all(
              isinstance(x, int) and not isinstance(x, bool) for x in v)}[kind](value)
    if not ok:
        want = "a list of integers" if kind is tuple else kind.__name__
        raise HarnessError(f"config file {path}: setting {key!r} must be {want}, "
                           f"got {value!r} ({type(value).__name__})")
    return tuple(value) if kind is tuple else kind(value)


def _coerce(key: str, text: str, field: dataclasses.Field) -> Any:
    kind = type(field.default)
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if kind is tuple:
            return tuple(int(x) for x in text.split(",") if x.strip())
        return kind(text)
    except ValueError:
        want = "comma-separated integers" if kind is tuple else kind.__name__
        raise HarnessError(f"setting {key!r} must be {want}, got {text!r}") from None


def render_config(model_cfg: Any, train_cfg: TrainConfig, header: str) -> str:
    """A config file holding every setting of both configs, under a ``#`` comment header."""
    body = tomli_w.dumps({"model": dataclasses.asdict(model_cfg),
                          "train": dataclasses.asdict(train_cfg)})
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.strip().splitlines())
    return comment + "\n" + body


MODELS: dict[str, ModelSpec] = {
    "dreamrec": ModelSpec("dreamrec", DreamRecConfig, DreamRec),
    **{name: ModelSpec(name, cfg, cls) for name, (cfg, cls) in BASELINES.items()},
    **{name: ModelSpec(name, cfg, cls) for name, (cfg, cls) in GENERATIVE.items()},
}


def get_model(name: str) -> ModelSpec:
    """The spec registered under ``name``; unknown names list the valid ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise HarnessError(
            f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}"
        ) from None
