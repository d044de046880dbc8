"""Model registry: every model name the command lines accept, with its config and presets."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import baselines
from baselines.contract import SequentialRecommender
from dreamrec.model import DreamRec, DreamRecConfig
from dreamrec.presets import PRESETS as DREAMREC_PRESETS
from harness.errors import HarnessError
from harness.train import TrainConfig


@dataclass(frozen=True)
class ModelSpec:
    """How to build one model: its config dataclass, a builder and per-dataset presets."""

    name: str
    config_cls: type
    build: Callable[[int, Any], SequentialRecommender]
    presets: dict[str, dict[str, dict[str, Any]]]

    def configs(self, dataset: str, overrides: dict[str, str] | None = None) -> tuple[Any, TrainConfig]:
        """Model and train configs for ``dataset``: defaults, then the preset, then overrides.

        ``overrides`` maps a field name of either config to its text value (``--set k=v``);
        an unknown key or a value of the wrong type raises HarnessError naming the key.
        """
        preset = self.presets.get(dataset, {})
        model_kw = dict(preset.get("model", {}))
        train_kw = dict(preset.get("train", {}))
        model_fields = {f.name: f for f in dataclasses.fields(self.config_cls)}
        train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
        for key, text in (overrides or {}).items():
            if key in model_fields:
                model_kw[key] = _coerce(key, text, model_fields[key], self.config_cls)
            elif key in train_fields:
                train_kw[key] = _coerce(key, text, train_fields[key], TrainConfig)
            else:
                valid = ", ".join(sorted(model_fields) + sorted(train_fields))
                raise HarnessError(f"unknown setting {key!r} for {self.name}; valid: {valid}")
        try:
            return self.config_cls(**model_kw), TrainConfig(**train_kw)
        except ValueError as e:
            raise HarnessError(f"invalid setting for {self.name}: {e}") from None


def _coerce(key: str, text: str, field: dataclasses.Field, cls: type) -> Any:
    kind = type(field.default)  # every config field has a default
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        return kind(text)
    except ValueError:
        raise HarnessError(
            f"setting {key!r} must be of type {kind.__name__}, got {text!r}"
        ) from None


def _build_dreamrec(n_items: int, config: DreamRecConfig) -> DreamRec:
    return DreamRec(n_items, config)


MODELS: dict[str, ModelSpec] = {
    "dreamrec": ModelSpec("dreamrec", DreamRecConfig, _build_dreamrec, DREAMREC_PRESETS),
    **baselines.REGISTRY,
}


def get_model(name: str) -> ModelSpec:
    """The spec registered under ``name``; unknown names list the valid ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise HarnessError(
            f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}"
        ) from None
