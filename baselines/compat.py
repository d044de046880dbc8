"""Every workaround that recbole 1.2.1 needs on numpy 2 and torch >= 2.6, in one place.

recbole 1.2.1 predates both. What goes wrong, and what this module does about it:

- Importing ``recbole.model.sequential_recommender`` runs ``torch.autograd.set_detect_anomaly(True)``
  (in its ``sine.py``) for the whole process, which slows every backward pass 1.4-2.5x.
  :func:`recbole_models` imports the model classes and puts the anomaly flag back as it was.
- ``recbole.config.Config`` parses ``sys.argv`` (so the harness's own flags would be read as
  RecBole settings), sets ``CUDA_VISIBLE_DEVICES`` (hiding GPUs from the rest of the process) and
  assigns ``np.float = np.float_``, which numpy 2 removed. The harness never builds a ``Config``
  for its models: :class:`ModelConfig` is the plain mapping RecBole's model constructors read, and
  :class:`ModelDataset` the two counts they ask a dataset for. Only the benchmark against RecBole's
  own trainer needs a real ``Config``; :func:`isolated_recbole_config` builds it with an empty
  argv, restores the environment afterwards and provides the numpy aliases it assigns from.
- recbole 1.2.1's metadata pins ``ray<=2.6.3`` (which fails to import: ``No module named
  'pkg_resources'``) and colorlog/colorama exactly, so it is installed with ``--no-deps``
  (:data:`RECBOLE_INSTALL`) and pyproject.toml declares what its imported modules need;
  :func:`require_recbole` says how to install it when it is missing.
- RecBole's trainer reloads checkpoints with ``torch.load`` and no ``weights_only``; torch >= 2.6
  refuses the pickled config in them. :func:`torch_load_full` is the loader to patch in, for
  RecBole's own trainer only (files this process wrote itself).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

#: numpy 1.x names that numpy 2 removed and recbole 1.2.1 still reads.
NUMPY_ALIASES = {"float_": np.float64, "complex_": np.complex128, "bool8": np.bool_,
                 "int0": np.intp, "unicode_": np.str_}

#: the field names RecBole's default configuration gives (overall.yaml and dataset defaults).
FIELDS = {"USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
          "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_"}


#: how recbole is installed: without its own pins (ray<=2.6.3, which does not import on a current
#: setuptools, among them); pyproject.toml declares what the harness needs of its dependencies
RECBOLE_INSTALL = "pip install --no-deps recbole==1.2.1"


def require_recbole() -> None:
    """HarnessError (one line: how to install it) when recbole is not installed."""
    import importlib.util

    from harness.errors import HarnessError

    if importlib.util.find_spec("recbole") is None:
        raise HarnessError(f"recbole is not installed; install it with: {RECBOLE_INSTALL} (its "
                           f"own pinned dependencies are not needed: pyproject.toml declares "
                           f"what the harness uses)")


@functools.cache
def recbole_models() -> SimpleNamespace:
    """The RecBole model classes the harness wraps, imported without side effects on autograd."""
    require_recbole()
    anomaly = torch.is_anomaly_enabled()
    check_nan = torch.is_anomaly_check_nan_enabled()
    try:
        from recbole.model.general_recommender.diffrec import DiffRec
        from recbole.model.sequential_recommender.caser import Caser
        from recbole.model.sequential_recommender.gru4rec import GRU4Rec
        from recbole.model.sequential_recommender.sasrec import SASRec
    finally:
        torch.autograd.set_detect_anomaly(anomaly, check_nan)
    return SimpleNamespace(SASRec=SASRec, GRU4Rec=GRU4Rec, Caser=Caser, DiffRec=DiffRec)


class ModelConfig(Mapping):
    """The settings a RecBole model constructor reads, as a strict read-only mapping.

    RecBole's own ``Config`` answers ``None`` for a key it does not know; this raises instead,
    naming the key, so a setting the harness forgot to pass cannot silently become ``None``.
    """

    def __init__(self, model: str, params: Mapping[str, Any], max_seq_length: int,
                 device: torch.device | str = "cpu") -> None:
        self._model = model
        self._data = {**FIELDS, "MAX_ITEM_LIST_LENGTH": max_seq_length,
                      "device": torch.device(device), **params}

    def __getitem__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise KeyError(f"RecBole's {self._model} reads setting {key!r}, which the harness "
                           "does not pass; add it to the model's config") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class ModelDataset:
    """What RecBole's model constructors ask of a dataset: the id counts, pad id 0 included."""

    def __init__(self, n_items: int, n_users: int = 1) -> None:
        self.item_num = int(n_items)
        self.user_num = int(n_users)

    def num(self, field: str) -> int:
        if field == FIELDS["ITEM_ID_FIELD"]:
            return self.item_num
        if field == FIELDS["USER_ID_FIELD"]:
            return self.user_num
        raise KeyError(f"no id count for field {field!r}")


def install_numpy_aliases() -> None:
    """Define the numpy-1 names recbole's ``Config`` and metrics read, where numpy 2 lacks them."""
    for name, value in NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


@contextlib.contextmanager
def isolated_recbole_config(model: str, dataset: str, settings: dict[str, Any]) -> Iterator[Any]:
    """A real ``recbole.config.Config`` that cannot see ``sys.argv`` or leak environment changes.

    ``sys.argv`` reads as the bare program name while the config is built, and
    ``CUDA_VISIBLE_DEVICES`` is restored on exit. Used only by the benchmark against RecBole's
    trainer; the harness's models never build a ``Config``.
    """
    install_numpy_aliases()
    recbole_models()  # the config imports recbole.model: keep the anomaly flag untouched
    from recbole.config import Config

    saved_argv = sys.argv
    saved_env = os.environ.get("CUDA_VISIBLE_DEVICES")
    sys.argv = saved_argv[:1]
    try:
        yield Config(model=model, dataset=dataset, config_dict=settings)
    finally:
        sys.argv = saved_argv
        if saved_env is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved_env


def torch_load_full(f: Any, *args: Any, **kwargs: Any) -> Any:
    """``torch.load`` as torch < 2.6 did it (full unpickling), for RecBole's own checkpoints."""
    kwargs.setdefault("weights_only", False)
    return torch.load(f, *args, **kwargs)
