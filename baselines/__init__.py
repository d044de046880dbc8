"""Baseline recommenders behind the harness's model contract.

``REGISTRY`` maps a model name to a builder ``(n_items, config_overrides) -> model``; baselines
register here. DreamRec is registered by the harness itself (``harness.models``).
"""

from baselines.contract import Batch, SequentialRecommender

REGISTRY: dict = {}

__all__ = ["Batch", "SequentialRecommender", "REGISTRY"]
