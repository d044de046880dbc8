"""The id mapping between the harness and RecBole.

The harness numbers real items ``0 .. n_items-1`` and pads with ``n_items``; RecBole reserves id 0
for padding and numbers real items ``1 .. n_items``. So item ``i`` is RecBole's ``i + 1`` and the
harness's pad is RecBole's 0: one modular shift each way. Columns of a RecBole score matrix are
RecBole ids, so the harness's scores are columns ``1 .. n_items`` (:func:`real_item_columns`).
"""

from __future__ import annotations

from torch import Tensor


def to_recbole(ids: Tensor, n_items: int) -> Tensor:
    """Harness ids (pad ``n_items``) -> RecBole ids (pad 0)."""
    return (ids + 1) % (n_items + 1)


def from_recbole(ids: Tensor, n_items: int) -> Tensor:
    """RecBole ids (pad 0) -> harness ids (pad ``n_items``)."""
    return (ids - 1) % (n_items + 1)


def real_item_columns(scores: Tensor, n_items: int) -> Tensor:
    """The harness's [B, n_items] scores from RecBole's [B, >= n_items + 1] (pad column 0 dropped,
    and any extra token RecBole's model was given after the real items)."""
    return scores[:, 1:n_items + 1]
