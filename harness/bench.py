"""``python -m harness.bench``: training-epoch and evaluation times of one model on one dataset.

Measures, for each thread count, the mean wall time of a training epoch (the trainer's own loop:
seeded shuffle, batch 256, AdamW) and of one evaluation pass over val + test. For DreamRec (the
default) the pass is timed for each sampler -- DDPM over the dataset's T steps and DDIM over k of
them -- with the exact mlp1 fast path and with the generic guided path (encoding, sampling, then
scoring and ranking every real item); for any other model (``--model``) it is the evaluator over
the model's ``full_sort_predict``. Examples:
``python -m harness.bench --dataset zhihu --threads 1,2 --samplers ddpm,ddim:50``,
``python -m harness.bench --model adaranker --dataset zhihu --threads 1 --epochs 1``.

``--against-official DIR`` times the official DreamRec code (a checkout of
github.com/YangZhengyi98/DreamRec the user supplies) beside the harness's DreamRec, on the same
dataset files with the same settings, in interleaved rounds (official, then harness, for each
thread count and round), and prints the ratios; see :mod:`harness.bench_official` for how the
official side is timed without changing its code. Example:
``python -m harness.bench --dataset zhihu --threads 1,2 --against-official ~/DreamRec``.
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

from harness import bench_official, cli, store
from harness.data import DATASETS, check_dataset_name, load_dataset
from harness.data.registry import AUTHORS_DATASETS, default_data_dir
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


def header(prog: str, argv: list[str] | None) -> str:
    """A benchmark file's first line: the command, when, which commit, how loaded the machine."""
    git = store.git_state()
    cmd = " ".join(argv if argv is not None else sys.argv[1:])
    return (f"`python -m {prog} {cmd}` ({store.now_iso()}, commit {git['commit']}"
            f"{' (uncommitted changes)' if git.get('dirty') else ''}, 1-minute load average "
            f"{os.getloadavg()[0]:.1f})\n\n")


def emit(text: str, out: str | None) -> int:
    """Print a benchmark's text, and write it to ``out`` when given; exit status 0."""
    print(text)
    if out:
        store.write_text(Path(out), text)
    return 0


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


def check_official(args, dreamrec: bool) -> Path:
    """The official checkout, after the checks that it can be compared here."""
    if not dreamrec:
        raise HarnessError(f"--against-official times the official DreamRec code; drop it for "
                           f"--model {args.model}")
    if args.dataset not in AUTHORS_DATASETS:
        raise HarnessError(f"--against-official needs one of the authors' datasets "
                           f"({', '.join(AUTHORS_DATASETS)}), which the official code reads; "
                           f"got {args.dataset}")
    if args.epochs < 1 or args.rounds < 1:
        raise HarnessError("--against-official needs --epochs >= 1 and --rounds >= 1")
    return bench_official.check_checkout(args.against_official)


def against_official(args, argv, official: Path, spec, splits, model_cfg, train_cfg, device,
                     threads: list[int], samplers) -> int:
    """Interleaved rounds: for each round and thread count, the official training epochs, the
    harness's, the official val+test generation, the harness's; fastest of the rounds."""
    data_dir = (Path(args.data_dir) if args.data_dir else default_data_dir()).resolve()
    off_argv = bench_official.official_argv(args.dataset, model_cfg, train_cfg, 1 + args.epochs)
    gen_argv = bench_official.official_argv(args.dataset, model_cfg, train_cfg, 1)
    best: dict[tuple[str, int], float] = {}
    rows_official = 0

    def keep(key, value):
        best[key] = min(best.get(key, float("inf")), value)

    for r in range(args.rounds):
        for n in threads:
            torch.set_num_threads(n)
            out = bench_official.measure(official, data_dir, "train", n, off_argv)
            keep(("official epoch", n), sum(out["seconds"]) / len(out["seconds"]))
            keep(("epoch", n), time_epochs(spec, splits, model_cfg, train_cfg, args.epochs, device))
            out = bench_official.measure(official, data_dir, "generate", n, gen_argv)
            keep(("official gen", n), out["seconds"][0])
            rows_official = out["rows"]
            torch.manual_seed(0)
            model = spec.build(splits.n_items, model_cfg).to(device)
            for name, k in samplers:
                plan = model.sampling_plan(name, k)
                keep((f"gen {name}:{k}", n), time_generation(
                    model, splits, device, True, train_cfg.eval_batch_size, plan, 1))
            print(f"round {r + 1}/{args.rounds}, {n} thread(s) done", file=sys.stderr, flush=True)
    n_train = len(splits.train)
    epoch_rows = [[n, f"{best[('official epoch', n)]:.2f}", f"{best[('epoch', n)]:.2f}",
                   f"{best[('official epoch', n)] / best[('epoch', n)]:.1f}x"] for n in threads]
    gen_rows = []
    for n in threads:
        off = best[("official gen", n)]
        for name, k in samplers:
            ours = best[(f"gen {name}:{k}", n)]
            label = f"DDPM {model_cfg.timesteps} steps" if name == "ddpm" else f"DDIM {k} steps"
            gen_rows.append([n, f"{off:.1f}", label, f"{ours:.2f}", f"{off / ours:.1f}x"])
    text = (
        header("harness.bench", argv)
        + f"{spec_label(args.model, model_cfg)} on {args.dataset}, the official code "
        f"(github.com/YangZhengyi98/DreamRec, from {official}) against the harness, same data "
        f"files and settings (batch {train_cfg.batch_size}, lr {train_cfg.lr}, w "
        f"{model_cfg.w}, AdamW); {os.cpu_count()} cores, {platform.machine()}, torch "
        f"{torch.__version__}; fastest of {args.rounds} interleaved rounds.\n\n"
        f"Training: seconds per epoch, mean of {args.epochs} epochs after a warm-up epoch. The "
        f"official epoch is {n_train // train_cfg.batch_size} batches drawn with "
        f"`DataFrame.sample`; the harness's is one pass over the {n_train} rows "
        f"({-(-n_train // train_cfg.batch_size)} batches).\n\n"
        + tabulate(epoch_rows, headers=["threads", "official epoch s", "harness epoch s",
                                        "speed-up"], tablefmt="github")
        + f"\n\nGeneration: seconds for one pass over val + test. The official `evaluate` "
        f"(DDPM over all {model_cfg.timesteps} steps, batch 100, the last partial batch "
        f"dropped: {rows_official} rows); the harness's exact mlp1 path over all "
        f"{len(splits.val) + len(splits.test)} rows (batch {train_cfg.eval_batch_size}), "
        f"scoring and ranking every item.\n\n"
        + tabulate(gen_rows, headers=["threads", "official val+test s", "harness sampler",
                                      "harness val+test s", "speed-up"], tablefmt="github")
        + "\n"
    )
    return emit(text, args.out)


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
    ap.add_argument("--against-official", default=None, metavar="DIR",
                    help="also time the official DreamRec code from this checkout of "
                         "github.com/YangZhengyi98/DreamRec, interleaved with the harness "
                         "(DreamRec on yc, ks or zhihu only)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="--against-official: interleaved rounds; the fastest is kept "
                         "(default: 2)")
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
        default = "ddpm,ddim:50" if args.against_official else "ddpm"
        samplers = parse_samplers(args.samplers or default) if dreamrec else []
        official = None
        if args.against_official:
            official = check_official(args, dreamrec)
        splits = load_dataset(args.dataset, args.data_dir)
    except (HarnessError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if official is not None:
        return against_official(args, argv, official, spec, splits, model_cfg, train_cfg,
                                device, threads, samplers)
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
    text = (
        header("harness.bench", argv)
        + f"{spec_label(args.model, model_cfg)} on {args.dataset}: {len(splits.train)} train rows, "
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
    return emit(text, args.out)


if __name__ == "__main__":
    sys.exit(main())
