"""``python -m harness.bench``: DreamRec training-epoch and generation times on one dataset.

Measures, for each thread count, the mean wall time of a training epoch (the trainer's own loop:
seeded shuffle, batch 256, AdamW) and of one evaluation pass over val + test (sampling with the
dataset's T, then scoring and ranking every real item), with the exact mlp1 fast path and with
the generic guided path. Example: ``python -m harness.bench --dataset zhihu --threads 1,2``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch
from tabulate import tabulate

from harness import store
from harness.data import DATASETS, check_dataset_name, load_dataset
from harness.errors import HarnessError
from harness.evaluate import evaluate
from harness.models import get_model
from harness.run import parse_overrides, pick_device
from harness.train import TrainConfig, train


def time_epochs(spec, splits, model_cfg, train_cfg: TrainConfig, epochs: int, device) -> float:
    """Mean seconds per training epoch over ``epochs`` epochs after one warm-up epoch."""
    torch.manual_seed(0)
    model = spec.build(splits.n_items, model_cfg)
    cfg = TrainConfig(**{**train_cfg.__dict__, "max_epochs": 1 + epochs,
                         "eval_every": 10**9, "patience": 10**9})
    # eval_every beyond max_epochs: only the final evaluation runs, outside the timed epochs
    result = train(model, splits, cfg, 0, device, progress=False)
    return result.wall["train_s_per_epoch_after_first"]


def time_generation(model, splits, device, fast: bool, batch_size: int) -> float:
    """Seconds for one evaluation pass over val + test."""
    model.eval()
    fn = (lambda h, ln, g: model.item_scores(model.generate(h, ln, g, fast=fast)))
    t0 = time.perf_counter()
    for split in ("val", "test"):
        evaluate(fn, splits.split(split), splits.n_items, device, batch_size,
                 torch.Generator(device).manual_seed(0))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="zhihu", help=f"one of: {', '.join(DATASETS)}")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=None, help="also write the output to this file")
    args = ap.parse_args(argv)
    store.git_state()
    try:
        check_dataset_name(args.dataset)
        spec = get_model("dreamrec")
        model_cfg, train_cfg = spec.configs(args.dataset, parse_overrides(args.set))
        device = pick_device(args.device)
        threads = [int(t) for t in args.threads.split(",")]
        splits = load_dataset(args.dataset, args.data_dir)
    except (HarnessError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_eval = len(splits.val) + len(splits.test)
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        epoch_s = time_epochs(spec, splits, model_cfg, train_cfg, args.epochs, device)
        torch.manual_seed(0)
        model = spec.build(splits.n_items, model_cfg).to(device)
        fast_s = time_generation(model, splits, device, True, train_cfg.eval_batch_size)
        slow_s = time_generation(model, splits, device, False, train_cfg.eval_batch_size)
        rows.append([n, f"{epoch_s:.2f}", f"{fast_s:.2f}", f"{slow_s:.2f}"])
    text = (
        f"`python -m harness.bench {' '.join(argv if argv is not None else sys.argv[1:])}` "
        f"({store.now_iso()}, commit {store.git_state()['commit']})\n\n"
        f"DreamRec on {args.dataset}: {len(splits.train)} train rows, batch "
        f"{train_cfg.batch_size}, T={model_cfg.timesteps}, {model_cfg.denoiser}; val+test = "
        f"{n_eval} rows; device {device}; {os.cpu_count()} cores, {platform.machine()}, "
        f"torch {torch.__version__}. Seconds, mean of {args.epochs} epochs after a warm-up; one "
        f"generation pass (sampling, scoring and ranking all items) over val+test.\n\n"
        + tabulate(rows, headers=["threads", "epoch s", "val+test gen s (fast)",
                                  "val+test gen s (generic)"], tablefmt="github") + "\n"
    )
    print(text)
    if args.out:
        store.atomic_write(Path(args.out), lambda fh: fh.write(text.encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
