"""Generative (diffusion) sequential recommenders beyond the paper's Table 1, behind the same
contract: PreferDiff and DiffuRec. DreamRec itself, and its settings against the collapse, are
in :mod:`dreamrec`.

``REGISTRY`` maps a model name to ``(config dataclass, model class)``, as
:data:`baselines.REGISTRY` does.
"""

from generative.diffurec import DiffuRec, DiffuRecConfig
from generative.preferdiff import PreferDiff, PreferDiffConfig

REGISTRY: dict[str, tuple[type, type]] = {
    "preferdiff": (PreferDiffConfig, PreferDiff),
    "diffurec": (DiffuRecConfig, DiffuRec),
}

__all__ = ["REGISTRY"]
