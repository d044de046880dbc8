"""The value every model is fed: train/val/test rows of (history, length, target)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

SEQ_LEN = 10  # history window of the paper's protocol


@dataclass(frozen=True)
class Split:
    """One split as integer arrays.

    history: [N, SEQ_LEN] int64, the last <= 10 items before the target, real items first,
        then the pad id. A row with no history is stored as the authors store it: length 1
        and the pad id in position 0.
    length: [N] int64, number of real items in ``history`` (1 for a row with no history).
    target: [N] int64, the next item.
    sequence: [N] int64, the 0-based index within the split of the sequence the row comes from.
        A sequence's rows are consecutive, one per prefix, the empty-history row first (both
        loaders give rows in this order; :func:`prefix_sequences`). None for a split made by
        hand without it. Not part of :meth:`checksum`: it follows from the other three.
    """

    history: np.ndarray
    length: np.ndarray
    target: np.ndarray
    sequence: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def checksum(self) -> str:
        """sha256 (16 hex) of this split's integer content, as little-endian int64."""
        h = hashlib.sha256()
        for arr in (self.history, self.length, self.target):
            h.update(np.ascontiguousarray(arr, dtype="<i8").tobytes())
        return h.hexdigest()[:16]

    def n_sequences(self, pad_id: int) -> int:
        """Sequences in the split: each one contributes exactly one row with an empty history."""
        return int((self.history[:, 0] == pad_id).sum())


def prefix_sequences(history: np.ndarray, length: np.ndarray, target: np.ndarray,
                     pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Sequence ids of rows listed as the authors list them, and the rows that break that order.

    Convention: a row with an empty history (``history[:, 0] == pad_id``) starts a sequence;
    every other row continues the one above it, its history being the row above's history
    followed by the row above's target (the last ``SEQ_LEN`` items of them). Returns
    ``sequence`` [N] int64 (0-based, counted by empty-history rows) and ``broken`` [N] bool: the
    rows that neither start a sequence nor continue the row above (the first row breaks it
    unless its history is empty).
    """
    history = np.asarray(history, dtype=np.int64)  # [N, SEQ_LEN]
    target = np.asarray(target, dtype=np.int64)  # [N]
    n = target.shape[0]
    start = history[:, 0] == pad_id  # [N]
    k = np.where(start, 0, np.asarray(length, dtype=np.int64))  # [N] real history items
    broken = np.zeros(n, dtype=bool)
    if n:
        broken[0] = not start[0]
        # the history that continues row i-1: its real items, its target, pads; last SEQ_LEN kept
        grown = np.concatenate([history[:-1], np.full((n - 1, 1), pad_id)], axis=1)  # [N-1, SEQ_LEN+1]
        grown[np.arange(n - 1), k[:-1]] = target[:-1]
        full = k[:-1] == SEQ_LEN  # the window slides: the oldest item drops out
        expected = np.where(full[:, None], grown[:, 1:], grown[:, :SEQ_LEN])  # [N-1, SEQ_LEN]
        cont = (expected == history[1:]).all(axis=1) & (k[1:] == np.minimum(k[:-1] + 1, SEQ_LEN))
        broken[1:] = ~start[1:] & ~cont
    return np.cumsum(start, dtype=np.int64) - 1, broken


def target_counts(split: Split, n_items: int) -> np.ndarray:
    """[n_items] int64: how many rows of ``split`` have each item as their target."""
    return np.bincount(split.target, minlength=n_items)[:n_items]


def history_counts(split: Split, n_items: int) -> np.ndarray:
    """[n_items] int64: how many times each item occurs in ``split``'s histories (pads left
    out)."""
    h = split.history[split.history < n_items]
    return np.bincount(h, minlength=n_items)[:n_items]


@dataclass(frozen=True)
class SequenceSplits:
    """train/val/test of one dataset; items are 0..n_items-1 and ``pad_id == n_items``."""

    name: str
    train: Split
    val: Split
    test: Split
    n_items: int
    checksum: str

    @property
    def pad_id(self) -> int:
        return self.n_items

    def split(self, which: str) -> Split:
        if which not in ("train", "val", "test"):
            raise ValueError(f"unknown split {which!r}; valid: train, val, test")
        return getattr(self, which)


def content_checksum(train: Split, val: Split, test: Split, n_items: int) -> str:
    """sha256 over the exact integer content (dtype-normalised to little-endian int64)."""
    h = hashlib.sha256()
    h.update(f"n_items={n_items};seq_len={SEQ_LEN}".encode())
    for name, split in (("train", train), ("val", val), ("test", test)):
        h.update(name.encode())
        for arr in (split.history, split.length, split.target):
            h.update(np.ascontiguousarray(arr, dtype="<i8").tobytes())
    return h.hexdigest()
