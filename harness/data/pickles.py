"""Safe loader for the DreamRec authors' pandas pickles (``train/val/test_data.df``, ``data_statis.df``).

A pickle can run arbitrary code when loaded, so the files go through :class:`RestrictedUnpickler`,
which resolves only the numpy/pandas globals these files are made of and refuses anything else
before it is ever called. Each split is then validated against the protocol (see
:mod:`harness.data.splits`) and converted to int64 arrays.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.data.splits import SEQ_LEN, SequenceSplits, Split, content_checksum, prefix_sequences
from harness.errors import DataError

SPLIT_FILES = {"train": "train_data.df", "val": "val_data.df", "test": "test_data.df"}
STATIS_FILE = "data_statis.df"
DEFAULT_ORIGIN = "the DreamRec authors' release (github.com/YangZhengyi98/DreamRec, data/<dataset>/)"

# The globals the authors' files (and re-serialised copies) are made of, with numpy 1's
# ``numpy.core.*`` module names normalised to numpy 2's ``numpy._core.*`` (the same functions).
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", "slice"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("pandas", "DataFrame"),
        ("pandas", "Index"),
        ("pandas", "RangeIndex"),
        ("pandas", "StringDtype"),
        ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("pandas.arrays", "StringArray"),
        ("pandas.core.frame", "DataFrame"),
        ("pandas.core.indexes.base", "Index"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas.core.indexes.range", "RangeIndex"),
        ("pandas.core.internals", "BlockManager"),
        ("pandas.core.internals.managers", "BlockManager"),
    }
)

# The two namings of the columns found in copies of the authors' files: (history, length, target).
COLUMN_NAMINGS: tuple[tuple[str, str, str], ...] = (("seq", "len_seq", "next"), ("seq", "seq_len", "tgt"))


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS`; any other global raises DataError."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        resolved = module
        if module == "numpy.core" or module.startswith("numpy.core."):
            resolved = "numpy._core" + module[len("numpy.core"):]  # numpy 2 name, no deprecation warning
        if (resolved, name) not in ALLOWED_GLOBALS and (
                module.startswith("pyarrow") or name == "ArrowStringArray"):
            raise DataError(
                f"{self.path} holds pandas strings stored by pyarrow ({module}.{name}), which "
                "this reader does not unpickle (a pickled pyarrow buffer is not checked); "
                "re-save the frame with object strings, as the authors' files were written "
                "(df.columns = df.columns.astype(object), and the same for any text column)"
            )
        if (resolved, name) not in ALLOWED_GLOBALS:
            raise DataError(
                f"{self.path} refers to the global {module}.{name}, which a data file never needs; "
                "it was refused and not executed — do not use this file, re-copy it from a trusted source"
            )
        return super().find_class(resolved, name)


def read_frame(path: Path, origin: str = DEFAULT_ORIGIN) -> pd.DataFrame:
    """Unpickle one DataFrame through :class:`RestrictedUnpickler`."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            obj = RestrictedUnpickler(fh, path).load()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"file {path} does not exist; copy it from {origin}") from None
    except (EOFError, pickle.UnpicklingError) as exc:
        raise DataError(
            f"file {path} is truncated or not a pickle; re-copy it from {origin} (unpickler: {_one_line(exc)})"
        ) from None
    except Exception as exc:  # a damaged stream fails inside numpy/pandas constructors
        raise DataError(
            f"file {path} could not be unpickled ({type(exc).__name__}: {_one_line(exc)}); re-copy it from {origin}"
        ) from None
    if not isinstance(obj, pd.DataFrame):
        raise DataError(
            f"file {path} holds a {type(obj).__name__}, not a pandas DataFrame; re-copy it from {origin}"
        )
    return obj


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _as_ids(values: Any, path: Path, what: str, origin: str) -> np.ndarray:
    """Convert integer or integral float ids to int64; anything else is a DataError."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f":
        _check((~np.isfinite(arr) | (arr != np.round(arr))).reshape(len(arr), -1).any(axis=1),
               path, f"{what} holds whole numbers", origin)
        return arr.astype(np.int64)
    raise DataError(f"{path}: {what} has dtype {arr.dtype}, expected integer ids; re-copy the file from {origin}")


def _check(bad: np.ndarray, path: Path, rule: str, origin: str) -> None:
    """Raise one DataError line when any row of the boolean row mask ``bad`` [N] breaks ``rule``."""
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: {int(bad.sum())} of {bad.size} rows break the rule '{rule}' (first: row {first}); "
            f"re-copy the file from {origin} or regenerate it with the authors' preprocessing"
        )


def split_from_frame(df: pd.DataFrame, n_items: int, path: Path, origin: str = DEFAULT_ORIGIN) -> Split:
    """Validate one authors' split frame and convert it to a :class:`Split` (history [N,10], length [N], target [N],
    sequence [N]: each row's sequence, from the order the authors list the rows in)."""
    cols = sorted(map(str, df.columns))
    naming = next((n for n in COLUMN_NAMINGS if sorted(n) == cols), None)
    if naming is None:
        expected = " or ".join(str(list(n)) for n in COLUMN_NAMINGS)
        raise DataError(
            f"{path}: columns {list(map(str, df.columns))} are not the expected {expected}; "
            "pass the authors' train_data.df / val_data.df / test_data.df files"
        )
    if len(df) == 0:
        raise DataError(f"{path} has no rows; an empty split cannot be trained or evaluated, re-copy it from {origin}")
    seq_col, len_col, tgt_col = naming
    seqs = df[seq_col].tolist()
    try:
        sizes = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    except TypeError:
        raise DataError(
            f"{path}: column '{seq_col}' must hold one list of {SEQ_LEN} ids per row; re-copy it from {origin}"
        ) from None
    _check(sizes != SEQ_LEN, path, f"{seq_col} has exactly {SEQ_LEN} entries", origin)

    history = _as_ids(np.array(seqs), path, seq_col, origin)
    if history.ndim != 2:
        raise DataError(
            f"{path}: column '{seq_col}' must hold flat lists of {SEQ_LEN} ids; re-copy it from {origin}"
        )
    length = _as_ids(df[len_col].to_numpy(), path, len_col, origin)
    target = _as_ids(df[tgt_col].to_numpy(), path, tgt_col, origin)
    pad = n_items
    _check((history < 0).any(axis=1) | (history > pad).any(axis=1), path,
           f"history ids lie in [0, item_num={n_items}] (item_num is the pad id)", origin)
    _check((target < 0) | (target >= n_items), path, f"{tgt_col} lies in [0, item_num={n_items})", origin)
    _check((length < 1) | (length > SEQ_LEN), path, f"{len_col} lies in [1, {SEQ_LEN}]", origin)

    real = np.arange(SEQ_LEN)[None, :] < length[:, None]
    _check((~real & (history != pad)).any(axis=1), path, f"every {seq_col} position >= {len_col} is the pad id", origin)
    no_history = (length == 1) & (history[:, 0] == pad)
    pad_in_real = real & (history == pad)
    pad_in_real[no_history, 0] = False
    rule = f"the first {len_col} entries of {seq_col} are real items (except a no-history row: length 1, pad first)"
    _check(pad_in_real.any(axis=1), path, rule, origin)
    sequence, broken = prefix_sequences(history, length, target, pad)
    _check(broken, path, f"rows list each sequence's prefixes in order: a row whose {seq_col} is "
           f"empty (pad first) starts a sequence, any other row's {seq_col} is the row above's "
           f"{seq_col} followed by the row above's {tgt_col}", origin)
    return Split(history=np.ascontiguousarray(history), length=length, target=target, sequence=sequence)


def read_statis(path: Path, origin: str = DEFAULT_ORIGIN) -> int:
    """Read ``data_statis.df`` and return ``item_num`` (the number of items, also the pad id)."""
    df = read_frame(path, origin)
    if not {"seq_size", "item_num"} <= set(map(str, df.columns)) or len(df) != 1:
        raise DataError(
            f"{path}: expected one row with columns seq_size and item_num, found {len(df)} rows and columns "
            f"{list(map(str, df.columns))}; re-copy it from {origin}"
        )
    seq_size, item_num = df["seq_size"].iloc[0], df["item_num"].iloc[0]
    if seq_size != SEQ_LEN:
        raise DataError(f"{path}: seq_size is {seq_size}, the protocol needs {SEQ_LEN}; re-copy it from {origin}")
    try:
        n_items = int(item_num)
    except (TypeError, ValueError, OverflowError):
        n_items = 0
    if n_items < 1 or n_items != item_num:
        raise DataError(f"{path}: item_num {item_num} is not a positive integer; re-copy it from {origin}")
    return n_items


def load_authors_splits(directory: Path, name: str, origin: str = DEFAULT_ORIGIN) -> SequenceSplits:
    """Load ``directory/{data_statis,train_data,val_data,test_data}.df`` into a :class:`SequenceSplits`."""
    directory = Path(directory)
    n_items = read_statis(directory / STATIS_FILE, origin)
    splits = {
        which: split_from_frame(read_frame(directory / fname, origin), n_items, directory / fname, origin)
        for which, fname in SPLIT_FILES.items()
    }
    checksum = content_checksum(splits["train"], splits["val"], splits["test"], n_items)
    return SequenceSplits(name=name, n_items=n_items, checksum=checksum, **splits)
