"""Raw interaction log → :class:`SequenceSplits` with the DreamRec paper's protocol.

Conventions (exactly what :func:`build_splits` does, in this order):

1. Item filter, one pass: drop every interaction of an item with fewer than ``min_item_count``
   interactions in the whole log (repeats within a sequence count).
2. Sequence filter: drop every sequence (a ``user``; a session is a user here) with fewer than
   ``min_seq_len`` remaining interactions. Not iterated: an item may fall below
   ``min_item_count`` after this step and still stays.
3. Time order: the surviving log is sorted by ``timestamp``, stably, so equal timestamps keep the
   input row order. Each sequence is its rows in that order.
4. Item ids: surviving items are renumbered ``0..n_items-1`` in order of first appearance in that
   globally time-ordered log (item 0 is the earliest interacted item); ``pad id = n_items``.
5. Sequence order: sequences are ordered by their first (surviving) timestamp, ties by user id
   (the natural order of the ``user`` column).
6. Split whole sequences: with ``n`` sequences, train = the first ``floor(ratios[0]*n)``,
   val = the next ``floor(ratios[1]*n)``, test = the rest (so test takes the rounding
   remainder). An empty split is a DataError.
7. Expansion: a sequence ``s`` of length ``L`` gives ``L`` rows, one per target position
   ``i = 0..L-1``: ``target = s[i]``; ``history`` = ``s[max(0, i-10):i]`` (the last <= 10 items, oldest
   first) followed by pad ids up to 10; ``length = len(history items)``, except the row with no
   history (``i = 0``), stored as the authors store it: ``length 1`` and the pad id in position 0.
   Rows keep sequence order, then position order; each row's ``sequence`` is its sequence's
   0-based index within the split (the authors' files follow the same order).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from harness.data.splits import SEQ_LEN, SequenceSplits, Split, content_checksum
from harness.errors import DataError

if TYPE_CHECKING:  # pandas is imported where splits are built, not by every command
    import pandas as pd

BUILDER_VERSION = "1"  # bump when the conventions above change: it keys the dataset cache


def expand_sequences(items: np.ndarray, lengths: np.ndarray, pad_id: int) -> Split:
    """Expand concatenated sequences (``items`` [sum(lengths)], ``lengths`` [S]) into one row per item; the
    rows' ``sequence`` ids are 0..S-1 in that order."""
    items = np.asarray(items, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    n = items.shape[0]
    row = np.arange(n)
    pos = row - np.repeat(np.cumsum(lengths) - lengths, lengths)  # position i within its sequence
    k = np.minimum(pos, SEQ_LEN)  # real history items of the row
    cols = np.arange(SEQ_LEN)
    idx = np.minimum((row - k)[:, None] + cols[None, :], max(n - 1, 0))
    history = np.where(cols[None, :] < k[:, None], items[idx], pad_id) if n else np.empty((0, SEQ_LEN), np.int64)
    sequence = np.repeat(np.arange(lengths.shape[0], dtype=np.int64), lengths)  # [N]
    return Split(history=np.ascontiguousarray(history, dtype=np.int64), length=np.maximum(k, 1), target=items.copy(),
                 sequence=sequence)


def build_splits(
    interactions: pd.DataFrame,
    name: str,
    min_item_count: int = 5,
    min_seq_len: int = 3,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> SequenceSplits:
    """Build train/val/test rows from a log with columns ``user, item, timestamp`` (see module doc)."""
    import pandas as pd

    missing = [c for c in ("user", "item", "timestamp") if c not in interactions.columns]
    if missing:
        raise DataError(
            f"{name}: the interaction log lacks columns {missing} (found {list(map(str, interactions.columns))}); "
            "rename its columns to user, item, timestamp"
        )
    if len(ratios) != 3 or min(ratios) < 0 or not math.isclose(sum(ratios), 1.0, abs_tol=1e-9):
        raise ValueError(f"ratios must be three non-negative numbers summing to 1, got {ratios!r}")
    df = interactions[["user", "item", "timestamp"]].reset_index(drop=True)
    if df.isna().any().any():
        raise DataError(f"{name}: the interaction log has missing user/item/timestamp values; drop those rows first")

    df = df[df.groupby("item")["item"].transform("size") >= min_item_count]
    df = df[df.groupby("user")["user"].transform("size") >= min_seq_len]
    df = df.sort_values("timestamp", kind="stable")
    codes, uniques = pd.factorize(df["item"])  # codes in order of first appearance
    n_items = len(uniques)

    first = df.groupby("user", sort=True)["timestamp"].min().sort_values(kind="stable")
    n = len(first)
    n_train = math.floor(ratios[0] * n + 1e-9)
    n_val = math.floor(ratios[1] * n + 1e-9)
    bounds = [0, n_train, n_train + n_val, n]
    if min(b - a for a, b in zip(bounds, bounds[1:])) == 0:
        raise DataError(
            f"{name}: {n} sequences survive filtering (items >= {min_item_count} interactions, sequences >= "
            f"{min_seq_len} items), too few for non-empty {ratios} train/val/test splits; use a larger log"
        )
    rank = pd.Series(np.arange(len(first)), index=first.index)
    seq_rank = df["user"].map(rank).to_numpy()
    order = np.argsort(seq_rank, kind="stable")  # by sequence, time order within
    items = codes[order].astype(np.int64)
    lengths = np.bincount(seq_rank, minlength=len(first)).astype(np.int64)

    ends = np.concatenate([[0], np.cumsum(lengths)])
    train, val, test = (
        expand_sequences(items[ends[a]:ends[b]], lengths[a:b], n_items) for a, b in zip(bounds, bounds[1:])
    )
    return SequenceSplits(
        name=name, train=train, val=val, test=test, n_items=n_items,
        checksum=content_checksum(train, val, test, n_items),
    )
