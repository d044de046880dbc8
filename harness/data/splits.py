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
    """

    history: np.ndarray
    length: np.ndarray
    target: np.ndarray

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


def target_counts(split: Split, n_items: int) -> np.ndarray:
    """[n_items] int64: how many rows of ``split`` have each item as their target."""
    return np.bincount(split.target, minlength=n_items)[:n_items]


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
