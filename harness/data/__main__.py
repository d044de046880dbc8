"""``python -m harness.data describe DATASET [--data-dir DIR] [--cache-dir DIR]``: split statistics."""

from __future__ import annotations

import argparse
import sys

import numpy as np
from tabulate import tabulate

from harness import cli
from harness.data.registry import DATASETS, load_dataset
from harness.data.splits import SequenceSplits
from harness.errors import HarnessError


def describe(splits: SequenceSplits) -> str:
    """Per split: rows, sequences, distinct items (history ∪ target) and the split's checksum."""
    rows = []
    for which in ("train", "val", "test"):
        s = splits.split(which)
        items = np.union1d(s.history[s.history != splits.pad_id], s.target)
        rows.append([which, len(s), s.n_sequences(splits.pad_id), items.size, s.checksum()])
    table = tabulate(rows, headers=["split", "rows", "sequences", "items", "checksum"], intfmt=",")
    return (f"{splits.name}: n_items {splits.n_items:,} (pad id {splits.pad_id})\n{table}\n"
            f"dataset checksum {splits.checksum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.data", description=cli.description(__doc__))
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("describe", help="print row/sequence/item counts of a dataset's splits")
    p.add_argument("dataset", choices=DATASETS, help="the dataset to describe")
    p.add_argument("--data-dir", default=None, help="folder holding yc/, ks/, zhihu/ (default: $HARNESS_DATA_DIR "
                   "or ../shared/data/dreamrec beside the repository)")
    p.add_argument("--cache-dir", default=None, help="npz cache folder (default: $HARNESS_CACHE_DIR or .cache/data)")
    args = parser.parse_args(argv)
    try:
        print(describe(load_dataset(args.dataset, args.data_dir, args.cache_dir)))
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
