"""Data layer: every dataset becomes a :class:`SequenceSplits`.

``load_dataset(name)`` is the entry point; ``build_splits`` turns a raw interaction log into
splits with the paper's protocol; ``harness.data.pickles`` reads the authors' pickles safely.
"""

from harness.data.builder import build_splits
from harness.data.registry import (
    AUTHORS_DATASETS,
    DATASETS,
    SourceFile,
    check_dataset_name,
    default_cache_dir,
    default_data_dir,
    load_dataset,
    source_files,
)
from harness.data.splits import (SEQ_LEN, SequenceSplits, Split, content_checksum, history_counts,
                                  prefix_sequences, target_counts)

__all__ = [
    "AUTHORS_DATASETS",
    "DATASETS",
    "SEQ_LEN",
    "SequenceSplits",
    "SourceFile",
    "Split",
    "build_splits",
    "check_dataset_name",
    "content_checksum",
    "default_cache_dir",
    "default_data_dir",
    "history_counts",
    "load_dataset",
    "prefix_sequences",
    "source_files",
    "target_counts",
]
