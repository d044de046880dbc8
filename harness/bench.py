"""``python -m harness.bench``: training-epoch and evaluation times of one model on one dataset.

Measures, for each thread count, the mean wall time of a training epoch (the trainer's own loop:
seeded shuffle, batch 256, AdamW) and of one evaluation pass over val + test. For DreamRec (the
default) the pass is timed for each sampler -- DDPM over the dataset's T steps and DDIM over k of
them -- with the exact mlp1 fast path and with the generic guided path (encoding, sampling, then
scoring and ranking every real item); for any other model (``--model``) it is the evaluator over
the model's ``full_sort_predict``. Examples:
``python -m harness.bench --dataset zhihu --threads 1,2 --samplers ddpm,ddim:50``,
``python -m harness.bench --model adaranker --dataset zhihu --threads 1 --epochs 1``.
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

from harness import cli, store
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


def time_generation(model, splits, device, fast: bool, batch_size: int, plan=None,
                    repeats: int = 1) -> float:
    """DreamRec: seconds for one evaluation pass over val + test (the fastest of ``repeats``)."""
    fn = (lambda h, ln, g: model.item_scores(model.generate(h, ln, g, fast=fast, plan=plan)))
    return time_evaluation(model, fn, splits, device, batch_size, repeats)


def time_evaluation(model, score_fn, splits, device, batch_size: int, repeats: int = 1) -> float:
    """Seconds for one evaluation pass of ``score_fn`` over val + test (fastest of ``repeats``)."""
    model.eval()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for split in ("val", "test"):
            evaluate(score_fn, splits.split(split), splits.n_items, device, batch_size,
                     torch.Generator(device).manual_seed(0))
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def spec_label(model: str, cfg) -> str:
    """The model and the settings that set its cost."""
    if model == "dreamrec":
        return f"DreamRec (T={cfg.timesteps}, {cfg.denoiser})"
    return model


def parse_samplers(text: str) -> list[tuple[str, int]]:
    """``ddpm,ddim:50`` -> [("ddpm", 0), ("ddim", 50)] (0: all T steps)."""
    out = []
    for item in text.split(","):
        name, _, k = item.strip().partition(":")
        if name not in ("ddpm", "ddim") or (k and not k.isdigit()) or (name == "ddim" and not k):
            raise HarnessError(f"--samplers takes ddpm or ddim:K items, comma-separated "
                               f"(e.g. ddpm,ddim:50), got {item!r}")
        out.append((name, int(k or 0)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.bench", description=cli.description(__doc__))
    ap.add_argument("--model", default="dreamrec", help="the model to time (default: dreamrec)")
    ap.add_argument("--dataset", default="zhihu",
                    help=f"one of: {', '.join(DATASETS)} (default: zhihu)")
    ap.add_argument("--data-dir", default=None, help=cli.DATA_DIR)
    ap.add_argument("--device", default="cpu", help=cli.device("cpu"))
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts (default: 1,2)")
    ap.add_argument("--epochs", type=int, default=3,
                    help="timed epochs after one warm-up (default: 3; 0: generation only)")
    ap.add_argument("--samplers", default=None, help="DreamRec: ddpm and/or ddim:K, "
                    "comma-separated (default ddpm: all T steps)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="evaluation passes per setting; the fastest is reported (default: 3)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=cli.SET)
    ap.add_argument("--out", default=None, help="also write the output to this file")
    args = ap.parse_args(argv)
    store.git_state()
    try:
        check_dataset_name(args.dataset)
        spec = get_model(args.model)
        model_cfg, train_cfg = spec.configs(args.dataset, parse_overrides(args.set))
        device = pick_device(args.device)
        threads = [int(t) for t in args.threads.split(",")]
        dreamrec = args.model == "dreamrec"
        if args.samplers and not dreamrec:
            raise HarnessError(f"--samplers is DreamRec's; {args.model} is evaluated through its "
                               f"full_sort_predict (drop --samplers)")
        samplers = parse_samplers(args.samplers or "ddpm") if dreamrec else []
        splits = load_dataset(args.dataset, args.data_dir)
    except (HarnessError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_eval = len(splits.val) + len(splits.test)
    epoch_rows, gen_rows = [], []
    for n in threads:
        torch.set_num_threads(n)
        if args.epochs > 0:
            epoch_s = time_epochs(spec, splits, model_cfg, train_cfg, args.epochs, device)
            epoch_rows.append([n, f"{epoch_s:.2f}"])
        torch.manual_seed(0)
        model = spec.build(splits.n_items, model_cfg).to(device)
        if not dreamrec:
            eval_s = time_evaluation(model, model.full_sort_predict, splits, device,
                                     train_cfg.eval_batch_size, args.repeats)
            gen_rows.append([n, f"{eval_s:.2f}"])
        for name, k in samplers:
            plan = model.sampling_plan(name, k)
            row = [n, f"{name.upper()} {len(plan.steps)} steps"]
            for fast in (True, False):
                row.append(f"{time_generation(model, splits, device, fast, train_cfg.eval_batch_size, plan, args.repeats):.2f}")
            gen_rows.append(row)
    cmd = " ".join(argv if argv is not None else sys.argv[1:])
    text = (
        f"`python -m harness.bench {cmd}` ({store.now_iso()}, commit "
        f"{store.git_state()['commit']}, 1-minute load average {os.getloadavg()[0]:.1f})\n\n"
        f"{spec_label(args.model, model_cfg)} on {args.dataset}: {len(splits.train)} train rows, "
        f"batch {train_cfg.batch_size}; val+test = {n_eval} rows, {splits.n_items} items; "
        f"device {device}; {os.cpu_count()} cores, {platform.machine()}, "
        f"torch {torch.__version__}.\n\n"
    )
    if epoch_rows:
        text += (f"Training: seconds per epoch, mean of {args.epochs} epochs after a warm-up.\n\n"
                 + tabulate(epoch_rows, headers=["threads", "epoch s"], tablefmt="github")
                 + "\n\n")
    if dreamrec:
        text += (f"Generation: seconds for one pass over val+test (encoding, sampling, scoring and "
                 f"ranking all items), fastest of {args.repeats}; fast = the exact mlp1 path, "
                 f"generic = batched cond/uncond denoiser calls.\n\n"
                 + tabulate(gen_rows, headers=["threads", "sampler", "val+test gen s (fast)",
                                               "val+test gen s (generic)"], tablefmt="github") + "\n")
    else:
        text += (f"Evaluation: seconds for one pass over val+test (full_sort_predict, then "
                 f"ranking all items), fastest of {args.repeats}, on the untrained model.\n\n"
                 + tabulate(gen_rows, headers=["threads", "val+test eval s"], tablefmt="github")
                 + "\n")
    print(text)
    if args.out:
        store.write_text(Path(args.out), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
