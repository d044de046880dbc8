"""``python -m harness.bench_recbole``: a training epoch of the harness's SASRec against RecBole's own.

Same model class (RecBole 1.2.1's SASRec, its default settings, history 10), batch 256, one uniform
negative per positive and the BPR loss on both sides, on ml-100k, with torch's thread count set
explicitly. RecBole's side is its own pipeline: ``Config``, ``create_dataset``,
``data_preparation`` (leave-two-out split by time, every prefix a training row) and
``Trainer._train_epoch``; it runs with autograd anomaly detection as RecBole's import leaves it
(on), and once more with it off to separate that cost. The harness's side is ``harness.train`` on
the harness's ml-100k splits (the paper's protocol, so the row counts differ: both are printed,
with the time per 1,000 rows). RecBole writes its logs and dataset cache in a temporary folder.

Example: ``python -m harness.bench_recbole --threads 1 --epochs 3``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from tabulate import tabulate

from baselines.compat import isolated_recbole_config, recbole_models
from harness import cli, store
from harness.bench import time_epochs
from harness.data import load_dataset
from harness.models import get_model


@contextlib.contextmanager
def _in_temp_dir():
    old = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(old)


def recbole_epochs(epochs: int, anomaly: bool) -> tuple[float, int]:
    """Mean seconds of RecBole's ``_train_epoch`` over ``epochs`` epochs after one warm-up, and
    the number of training rows."""
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    settings = {"MAX_ITEM_LIST_LENGTH": 10, "train_batch_size": 256, "loss_type": "BPR",
                "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1,
                                          "alpha": 1.0, "dynamic": False, "candidate_num": 0},
                "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
                              "group_by": "user"},
                "use_gpu": False, "show_progress": False, "state": "ERROR", "epochs": epochs + 1,
                "learner": "adam", "weight_decay": 0.0, "seed": 0, "reproducibility": True,
                "worker": 0}
    with _in_temp_dir(), warnings.catch_warnings(), \
            isolated_recbole_config("SASRec", "ml-100k", settings) as config:
        warnings.simplefilter("ignore")  # pandas and torch deprecation notes from RecBole's code
        init_seed(config["seed"], config["reproducibility"])
        logging.disable(logging.CRITICAL)
        dataset = create_dataset(config)
        train_data, _, _ = data_preparation(config, dataset)
        model = recbole_models().SASRec(config, train_data.dataset).to(config["device"])
        trainer = Trainer(config, model)
        previous = torch.is_anomaly_enabled()
        torch.autograd.set_detect_anomaly(anomaly)
        try:
            times = []
            for epoch in range(epochs + 1):
                t0 = time.perf_counter()
                trainer._train_epoch(train_data, epoch, show_progress=False)
                times.append(time.perf_counter() - t0)
        finally:
            torch.autograd.set_detect_anomaly(previous)
            logging.disable(logging.NOTSET)
        return sum(times[1:]) / epochs, len(train_data.dataset)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.bench_recbole",
                                 description=cli.description(__doc__))
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up (default: 3)")
    ap.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = ap.parse_args(argv)
    if args.threads < 1 or args.epochs < 1:
        print("error: --threads and --epochs must be >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    rows = []
    for anomaly in (True, False):
        sec, n = recbole_epochs(args.epochs, anomaly)
        label = "RecBole Trainer, anomaly detection " + ("on (as its import leaves it)" if anomaly
                                                         else "off")
        rows.append([label, n, sec, 1000 * sec / n])
    spec = get_model("sasrec")
    splits = load_dataset("ml-100k")
    model_cfg, train_cfg = spec.configs("ml-100k", {"loss": "bpr", "lr": "1e-3"})
    sec = time_epochs(spec, splits, model_cfg, train_cfg, args.epochs, torch.device("cpu"))
    rows.append(["harness.train + SASRec adapter", len(splits.train), sec,
                 1000 * sec / len(splits.train)])
    ours = rows[-1][3]
    for row in rows:
        row.append(row[3] / ours)
    table = tabulate(rows, headers=["training epoch of RecBole's SASRec", "rows", "s / epoch",
                                    "ms / 1000 rows", "x harness (per row)"],
                     tablefmt="github", floatfmt=".3f")
    versions = store.package_versions()
    load = os.getloadavg()[0]  # other jobs sharing the cores slow both sides alike
    text = (f"# SASRec training epoch: harness vs RecBole's trainer (ml-100k, batch 256, BPR, "
            f"1 negative)\n\nGenerated by `python -m harness.bench_recbole --threads {args.threads} "
            f"--epochs {args.epochs}` on {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, torch {versions.get('torch')}, recbole "
            f"{versions.get('recbole')}, {args.threads} thread(s), load average {load:.1f} at the end; "
            f"mean of {args.epochs} epochs after one warm-up.\n\n{table}\n")
    print(text)
    if args.out:
        store.write_text(Path(args.out), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
