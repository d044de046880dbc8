"""Baseline recommenders behind the harness's model contract.

``REGISTRY`` maps a model name to ``(config dataclass, model class)``; the model class is built as
``cls(n_items, config)``. DreamRec is registered by the harness itself (``harness.models``).
A new model joins the harness by implementing :class:`SequentialRecommender`, adding itself here
and adding a config file per dataset under ``harness/configs/``.
"""

from baselines.adaranker import AdaRanker, AdaRankerConfig
from baselines.cl4srec import CL4SRec, CL4SRecConfig
from baselines.contract import Batch, SequentialRecommender
from baselines.diffrec import DiffRec, DiffRecConfig
from baselines.ips import IPS, IPSConfig
from baselines.recbole_models import (
    Caser,
    CaserConfig,
    GRU4Rec,
    GRU4RecConfig,
    SASRec,
    SASRecConfig,
)

REGISTRY: dict[str, tuple[type, type]] = {
    "gru4rec": (GRU4RecConfig, GRU4Rec),
    "caser": (CaserConfig, Caser),
    "sasrec": (SASRecConfig, SASRec),
    "ips": (IPSConfig, IPS),
    "adaranker": (AdaRankerConfig, AdaRanker),
    "cl4srec": (CL4SRecConfig, CL4SRec),
    "diffrec": (DiffRecConfig, DiffRec),
}

__all__ = ["Batch", "SequentialRecommender", "REGISTRY"]
