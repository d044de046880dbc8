"""The one contract every model in the harness implements, DreamRec included."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class Batch:
    """One training batch, built by the trainer.

    history: [B, 10] long, padded after the real items with the pad id (== n_items).
    length: [B] long, real items in ``history`` (1 for a row with no history).
    target: [B] long, the next item.
    negatives: [B, k] long or None, drawn by the trainer for models with ``n_negatives > 0``.
    generator: the torch.Generator a model uses for its own noise (diffusion steps, guidance
        dropout), on the model's device; owned and seeded by the trainer.
    """

    history: Tensor
    length: Tensor
    target: Tensor
    negatives: Tensor | None = None
    generator: torch.Generator | None = None


class SequentialRecommender(nn.Module):
    """Base class of every model.

    Subclasses implement :meth:`calculate_loss` (a scalar to minimise) and
    :meth:`full_sort_predict` (scores over the ``n_items`` real items only: the pad id is never
    a column, and the evaluator rejects any other width). Models never read argv or globals and
    never switch train/eval mode themselves: the trainer does.
    """

    #: negatives per positive the trainer draws for this model (0: none, DreamRec's case).
    n_negatives: int = 0
    #: epochs the trainer runs before it starts evaluating (a model that trains a part of
    #: itself first, as S-IPS its propensity model); early stopping counts from there.
    warmup_epochs: int = 0

    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.n_items = int(n_items)

    @property
    def pad_id(self) -> int:
        return self.n_items

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before each training epoch (0-based); nothing by default."""

    def observe_training_rows(self, history: Tensor, length: Tensor, target: Tensor) -> None:
        """Called by the trainer once before training (and again when a run resumes) with the
        whole training split on the model's device, for a model that needs statistics of it
        (IPS's popularity propensity, its clip quantile); nothing by default. Whatever the
        model derives from them and must survive a resume belongs in its buffers."""

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """The optimizer's parameter groups: by default every parameter that trains (a frozen
        one, such as DreamRec's item table taken from SASRec, is left out) with the run's ``lr``
        and ``weight_decay``; a model with a part trained under settings of its own (IPS's
        propensity model) returns a group for it."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr,
                 "weight_decay": weight_decay}]

    def item_table(self) -> Tensor:
        """The real items' embeddings [n_items, H], for a model that has one table of them (a
        model whose config names another in ``items_from`` takes that model's, see
        harness.run.pretrained_items)."""
        raise NotImplementedError(f"{type(self).__name__} has no item table to give")

    def calculate_loss(self, batch: Batch) -> Tensor:
        """Training loss of one batch, a scalar tensor."""
        raise NotImplementedError

    def full_sort_predict(
        self, history: Tensor, length: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Scores of every real item for each row, [B, n_items]; higher ranks first.

        ``generator`` feeds models that sample at prediction time (DreamRec); others ignore it.
        """
        raise NotImplementedError
