"""Shared pieces of the command lines: the help texts every command repeats, and descriptions."""

from __future__ import annotations

import os
from datetime import datetime

DATA_DIR = ("folder with the authors' yc/ks/zhihu folders (default: $HARNESS_DATA_DIR, else "
            "../shared/data/dreamrec)")
RESULTS_DIR = "the results folder to read and write (default: results/)"
SET = "override a setting of the config file, e.g. --set lr=0.005 (repeatable)"
SEEDS = "number of seeds (default: 5)"
FIRST_SEED = "seeds are first..first+N-1 (default: 0)"
THREADS = "torch CPU threads (default: all cores)"


def torch_threads(n: int) -> int:
    """The torch threads of ``--threads n`` where 0 (its default) means every core; HarnessError
    below 0."""
    from harness.errors import HarnessError

    if n < 0:
        raise HarnessError(f"--threads must be >= 1 (0: all cores), got {n}")
    return n or len(os.sched_getaffinity(0))


def device(default: str) -> str:
    return {"auto": "auto (default: cuda when present), cpu or cuda",
            "cpu": "cpu (default), cuda or auto",
            "cuda": "cuda (default), cpu or auto"}[default]


def description(doc: str | None) -> str:
    """A module docstring's first paragraph as a ``--help`` description, without reST marks."""
    first = (doc or "").strip().split("\n\n")[0]
    return " ".join(first.replace("``", "").split())


def add_cluster_options(ap) -> None:
    """``--address`` and ``--gpus-per-run``: where the runs of an invocation train (Ray)."""
    ap.add_argument("--address", default=None,
                    help="a running Ray cluster to send the runs to (the address `ray start "
                    "--head` prints, or auto for the one this machine joined); the results and "
                    "data folders must then be on a filesystem every node shares (default: a "
                    "local Ray started for this invocation; with --jobs 1, this process)")
    ap.add_argument("--gpus-per-run", type=float, default=None, metavar="F",
                    help="GPUs each run reserves on Ray; a fraction lets runs share one (0.25: "
                    "four runs per GPU) (default: 0 with --device cpu or no GPU here, else "
                    "1/--jobs)")


def cluster(args, jobs: int, threads: int):
    """The :class:`harness.execute.Cluster` of ``args`` (checked; HarnessError on bad input)."""
    from harness.errors import HarnessError
    from harness.execute import Cluster

    gpus = args.gpus_per_run
    if gpus is not None and (gpus < 0 or gpus > 1 and gpus != int(gpus)):
        raise HarnessError(f"--gpus-per-run takes a fraction in [0, 1] or a whole number of "
                           f"GPUs, got {gpus:g}")
    if gpus is None:
        import torch

        gpus = 0.0 if args.device == "cpu" or not torch.cuda.is_available() else 1.0 / jobs
    if args.address is not None and not args.address.strip():
        raise HarnessError("--address is empty; give the cluster's address (e.g. --address "
                           "auto, or the host:port that `ray start --head` printed)")
    return Cluster(args.address, threads, gpus)


def iso_time(text: str, option: str) -> datetime:
    """``text`` as a timezone-aware time (records' "created" times have one); HarnessError,
    one line naming ``option``, otherwise."""
    from harness.errors import HarnessError

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise HarnessError(f"{option} expects an ISO time such as 2026-12-03T00:00:00+00:00, "
                           f"got {text!r}") from None
    if when.tzinfo is None:
        raise HarnessError(f"{option} {text} needs a time zone (records' times have one), e.g. "
                           f"{when.isoformat()}+00:00")
    return when
