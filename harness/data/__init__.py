"""Data layer: every dataset becomes a :class:`SequenceSplits`."""

from harness.data.splits import SEQ_LEN, SequenceSplits, Split, content_checksum

__all__ = ["SEQ_LEN", "SequenceSplits", "Split", "content_checksum"]
