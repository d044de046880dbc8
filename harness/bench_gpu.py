"""``python -m harness.bench_gpu``: DreamRec epoch and generation times, and concurrent-run throughput.

Prepared for a CUDA machine (it runs on the CPU too, for a check): for each dataset, the wall
time of one training epoch and of one val+test generation pass (DDPM over all T steps and DDIM
over 50), then the throughput of N concurrent ``harness.run`` processes sharing the device, each
training one seed for a fixed budget of epochs on the first dataset. Example::

    python -m harness.bench_gpu --device cuda --datasets zhihu,yc --jobs 1,2,4,8 \\
        --out results/bench/gpu.md

Throughput is reported as budget runs per hour (N x 3600 / wall time of the N runs started
together) and as training epochs per hour over all N runs; a full run's length is set by early
stopping, so multiply by its epoch count to estimate full runs per hour.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

from harness import cli, store
from harness.bench import time_epochs, time_generation
from harness.data import check_dataset_name, load_dataset
from harness.errors import HarnessError
from harness.models import get_model
from harness.run import parse_overrides, pick_device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def concurrent_runs(n: int, dataset: str, epochs: int, device: str, sets: list[str],
                    data_dir: str | None, workdir: Path) -> float:
    """Start ``n`` one-seed runs at once (seeds 0..n-1, own results folders); wall seconds until
    all have finished. A run that fails raises with its stderr."""
    cmd = [sys.executable, "-m", "harness.run", "--model", "dreamrec", "--dataset", dataset,
           "--seeds", "1", "--device", device, "--threads", "1", "--no-progress",
           "--set", f"max_epochs={epochs}", "--set", f"patience={10**6}"]
    for s in sets:
        cmd += ["--set", s]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd + ["--first-seed", str(i), "--results-dir",
                                     str(workdir / f"n{n}-{i}")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    errs = [p.communicate()[1] for p in procs]
    wall = time.perf_counter() - t0
    for p, err in zip(procs, errs):
        if p.returncode != 0:
            tail = err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}"
            raise HarnessError(f"a concurrent run failed: {tail}")
    return wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.bench_gpu",
                                 description=cli.description(__doc__))
    ap.add_argument("--device", default="cuda", help=cli.device("cuda"))
    ap.add_argument("--datasets", default="zhihu,yc", help="comma-separated (default zhihu,yc)")
    ap.add_argument("--jobs", default="1,2,4,8", help="concurrent run counts (default 1,2,4,8)")
    ap.add_argument("--budget-epochs", type=int, default=10,
                    help="epochs per concurrent run (default 10; evaluation as the config says)")
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs after a warm-up (default 1)")
    ap.add_argument("--data-dir", default=None, help=cli.DATA_DIR)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a DreamRec setting everywhere (e.g. timesteps=50 for a check)")
    ap.add_argument("--out", default=None, help="also write the report to this file")
    args = ap.parse_args(argv)
    store.git_state()
    try:
        device = pick_device(args.device)
        datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
        for d in datasets:
            check_dataset_name(d)
        try:
            jobs = [int(j) for j in args.jobs.split(",")]
        except ValueError:
            raise HarnessError(f"--jobs takes comma-separated integers, got {args.jobs!r}") from None
        if not jobs or min(jobs) < 1 or args.budget_epochs < 1 or args.epochs < 1:
            raise HarnessError("--jobs, --budget-epochs and --epochs must be positive")
        overrides = parse_overrides(args.set)
        spec = get_model("dreamrec")
        loaded = {d: (load_dataset(d, args.data_dir), spec.configs(d, overrides)) for d in datasets}
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    single = []
    for d, (splits, (model_cfg, train_cfg)) in loaded.items():
        epoch_s = time_epochs(spec, splits, model_cfg, train_cfg, args.epochs, device)
        torch.manual_seed(0)
        model = spec.build(splits.n_items, model_cfg).to(device)
        gens = [time_generation(model, splits, device, True, train_cfg.eval_batch_size,
                                model.sampling_plan(name, k), repeats=2)
                for name, k in (("ddpm", 0), ("ddim", min(50, model_cfg.timesteps)))]
        single.append([d, len(splits.train), len(splits.val) + len(splits.test),
                       model_cfg.timesteps, f"{epoch_s:.2f}", f"{gens[0]:.2f}", f"{gens[1]:.2f}"])
        print(f"{d}: epoch {epoch_s:.2f} s, val+test DDPM {gens[0]:.2f} s, DDIM-50 {gens[1]:.2f} s",
              file=sys.stderr)
    first = datasets[0]
    through = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in jobs:
            try:
                wall = concurrent_runs(n, first, args.budget_epochs, device.type, args.set,
                                       args.data_dir, Path(tmp))
            except HarnessError as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
            through.append([n, f"{wall:.2f}", f"{n * 3600 / wall:.1f}",
                            f"{n * args.budget_epochs * 3600 / wall:.0f}"])
            print(f"{n} concurrent runs: {wall:.1f} s", file=sys.stderr)
    cmd = " ".join(argv if argv is not None else sys.argv[1:])
    text = (
        f"`python -m harness.bench_gpu {cmd}` ({store.now_iso()}, commit "
        f"{store.git_state()['commit']})\n\n"
        f"Device: {device_name(device)}; torch {torch.__version__}; host {os.cpu_count()} CPU "
        f"cores; 1 torch CPU thread per process.\n\n"
        f"One process: seconds per training epoch (mean of {args.epochs} after a warm-up, batch "
        f"256) and per val+test generation pass (encoding, sampling, scoring and ranking every "
        f"item; fastest of 2), mlp1 fast path.\n\n"
        + tabulate(single, headers=["dataset", "train rows", "val+test rows", "T", "epoch s",
                                    "gen s DDPM", "gen s DDIM-50 (k ≤ T)"], tablefmt="github")
        + f"\n\nConcurrent runs on {first}: N `harness.run` processes started together on one "
        f"device, each one seed of {args.budget_epochs} epochs with evaluation every "
        f"{loaded[first][1][1].eval_every} (DDPM generation), including process start and data "
        f"loading.\n\n"
        + tabulate(through, headers=["N", "wall s", f"{args.budget_epochs}-epoch runs per hour",
                                     "epochs per hour"], tablefmt="github") + "\n"
    )
    print(text)
    if args.out:
        store.write_text(Path(args.out), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
