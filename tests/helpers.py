"""Small learnable synthetic data shared by the model and trainer tests."""

from __future__ import annotations

import numpy as np

from harness.data import SEQ_LEN, SequenceSplits, Split, content_checksum


def chain_split(n_rows: int, n_items: int, rng: np.random.Generator) -> Split:
    """Rows of the chain s, s+1, ..., s+l-1 (mod n_items) whose target is s+l: learnable."""
    start = rng.integers(0, n_items, n_rows)
    length = rng.integers(1, SEQ_LEN + 1, n_rows)
    history = np.full((n_rows, SEQ_LEN), n_items, dtype=np.int64)
    for i, (s, ln) in enumerate(zip(start, length)):
        history[i, :ln] = (s + np.arange(ln)) % n_items
    target = (start + length) % n_items
    return Split(history, length.astype(np.int64), target.astype(np.int64))


def chain_splits(n_items: int = 100, n_train: int = 3000, n_eval: int = 400, seed: int = 0) -> SequenceSplits:
    rng = np.random.default_rng(seed)
    tr, va, te = (chain_split(n, n_items, rng) for n in (n_train, n_eval, n_eval))
    return SequenceSplits("chain", tr, va, te, n_items, content_checksum(tr, va, te, n_items))


def to_authors_pickle(frame, path) -> None:
    """Pickle ``frame`` as the authors' files are: column labels as object strings (pandas >= 3
    with pyarrow installed, which Ray brings, stores them as pyarrow arrays, which the harness's
    restricted reader refuses)."""
    frame = frame.copy()
    frame.columns = frame.columns.astype(object)
    frame.to_pickle(path)
