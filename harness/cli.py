"""Shared pieces of the command lines: the help texts every command repeats, and descriptions."""

from __future__ import annotations

DATA_DIR = ("folder with the authors' yc/ks/zhihu folders (default: $HARNESS_DATA_DIR, else "
            "../shared/data/dreamrec)")
RESULTS_DIR = "the results folder to read and write (default: results/)"
SET = "override a setting of the config file, e.g. --set lr=0.005 (repeatable)"
SEEDS = "number of seeds (default: 5)"
FIRST_SEED = "seeds are first..first+N-1 (default: 0)"
THREADS = "torch CPU threads (default: all cores)"


def device(default: str) -> str:
    return {"auto": "auto (default: cuda when present), cpu or cuda",
            "cpu": "cpu (default), cuda or auto",
            "cuda": "cuda (default), cpu or auto"}[default]


def description(doc: str | None) -> str:
    """A module docstring's first paragraph as a ``--help`` description, without reST marks."""
    first = (doc or "").strip().split("\n\n")[0]
    return " ".join(first.replace("``", "").split())
