"""``python -m harness.bench_cost``: what a dataset's Table 1 column costs, model by model.

For every model (default: the eight rows of Table 1) this times, on one torch thread, training
steps through the trainer's own step (seeded shuffle, batch and negatives as the trainer draws
them, AdamW) and one evaluation pass over the validation split (the model's configured scoring:
DreamRec samples with its configured sampler), each in a child process of its own. The seconds
per epoch are the mean step time times the epoch's steps (``--steps 0``: a whole epoch timed).

``--before REV`` times the same on the code of git revision ``REV`` as well (a copy made with
``git archive`` in a temporary folder), interleaved model by model with the working tree, and
prints the speed-ups.

The CPU-hours are an estimate, labelled as one: epochs per seed are the mean ``epochs_run`` of
the model's committed zhihu validation records (``--epochs-from``), one validation pass every
``eval_every`` epochs (the dataset's config) and one test pass; times five seeds. Tuning
multiplies it by the number of grid points. Example:
``python -m harness.bench_cost --dataset yc --before df0e6c6 --steps 300 --out results/bench/yc-cost-cpu.md``;
on a GPU machine, the prepared yc measurement is
``python -m harness.bench_cost --dataset yc --device cuda --steps 300 --out results/bench/yc-cost-cuda.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from tabulate import tabulate

from harness import cli, store
from harness.bench import emit, header
from harness.data import DATASETS, check_dataset_name
from harness.data.registry import REPO_ROOT, default_data_dir
from harness.errors import HarnessError
from harness.models import get_model

#: the rows of Table 1, in the table's order
TABLE1_MODELS = ("gru4rec", "caser", "sasrec", "ips", "adaranker", "cl4srec", "diffrec",
                 "dreamrec")

# the child measures through APIs that the harness has had since its first Table 1 (so that it
# runs on older revisions too); where the trainer's step is a function (train_step) it is used,
# elsewhere the same body as the trainer's loop of those revisions
_CHILD = r"""
import json, sys, time
import numpy as np
import torch
a = json.loads(sys.argv[1])
torch.set_num_threads(1)
dev = torch.device(a.get("device", "cpu"))
def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()
import harness.train as T
from baselines.contract import Batch
from harness.data import load_dataset
from harness.evaluate import evaluate
from harness.models import get_model
if hasattr(T, "reuse_freed_memory"):
    T.reuse_freed_memory()
splits = load_dataset(a["dataset"], a["data_dir"])
spec = get_model(a["model"])
mc, tc = spec.configs(a["dataset"], {})
torch.set_flush_denormal(tc.flush_denormal)
torch.manual_seed(0)
model = spec.build(splits.n_items, mc).to(dev)
model.train()
model.set_epoch(model.warmup_epochs)  # the main phase (IPS: after its propensity epochs)
opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
tr = splits.train
history, length, target = (torch.from_numpy(np.ascontiguousarray(x)).to(dev) for x in
                           (tr.history, tr.length, tr.target))
perm = torch.from_numpy(np.random.default_rng(0).permutation(len(tr))).to(dev)
gen = torch.Generator(dev).manual_seed(0)
bs = tc.batch_size
per_epoch = -(-len(tr) // bs)
def step(i):
    idx = perm[(i % per_epoch) * bs:(i % per_epoch + 1) * bs]
    if hasattr(T, "train_step"):
        return T.train_step(model, opt, history, length, target, idx, splits.n_items, gen)
    tg = target[idx]
    neg = T.sample_negatives(tg, splits.n_items, model.n_negatives, gen) if model.n_negatives else None
    loss = model.calculate_loss(Batch(history[idx], length[idx], tg, neg, gen))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()
for i in range(a["warmup"]):
    step(i)
n = a["steps"] or per_epoch
sync()
t0 = time.perf_counter()
acc = torch.zeros((), device=dev)
for i in range(n):
    acc += step(a["warmup"] + i)
float(acc)
step_s = (time.perf_counter() - t0) / n
model.eval()
t0 = time.perf_counter()
with torch.no_grad():
    evaluate(model.full_sort_predict, splits.split("val"), splits.n_items, dev,
             tc.eval_batch_size, torch.Generator(dev).manual_seed(1), mask_history=tc.mask_history)
sync()
val_s = time.perf_counter() - t0
print(json.dumps({"step_s": step_s, "steps_per_epoch": per_epoch, "timed_steps": n,
                  "val_s": val_s, "val_rows": len(splits.val), "test_rows": len(splits.test),
                  "eval_every": tc.eval_every}))
"""


def measure(tree: Path, model: str, dataset: str, data_dir: Path, steps: int,
            warmup: int, device: str = "cpu") -> dict:
    """One model's times on the code in ``tree`` (a child process, one torch thread)."""
    arg = json.dumps({"model": model, "dataset": dataset, "data_dir": str(data_dir),
                      "steps": steps, "warmup": warmup, "device": device})
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _CHILD, arg], cwd=tree, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise HarnessError(f"timing {model} on {tree} failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def export_revision(rev: str, into: Path) -> Path:
    """The code of git revision ``rev`` (its packages and configs) in folder ``into``."""
    out = subprocess.run(["git", "archive", "--format=tar", rev, "harness", "dreamrec",
                          "baselines"] + (["kernels"] if _has_path(rev, "kernels") else []),
                         cwd=REPO_ROOT, capture_output=True)
    if out.returncode != 0:
        raise HarnessError(f"--before {rev}: git cannot export that revision "
                           f"({out.stderr.decode().strip().splitlines()[-1:]}); give a commit "
                           f"of this repository")
    tar_path = into / "code.tar"
    tar_path.write_bytes(out.stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into, filter="data")
    tar_path.unlink()
    return into


def _has_path(rev: str, path: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{rev}:{path}"], cwd=REPO_ROOT,
                          capture_output=True).returncode == 0


def recorded_epochs(results: Path, dataset: str, model: str) -> float | None:
    """Mean ``epochs_run`` of the model's finished validation records on ``dataset``."""
    folder = results / "records" / dataset / model / "validation"
    runs = []
    for path in sorted(folder.glob("seed*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("status") == "ok" and rec.get("epochs_run"):
            runs.append(rec["epochs_run"])
    return sum(runs) / len(runs) if runs else None


def cpu_hours(t: dict, epochs: float) -> float:
    """One seed: ``epochs`` training epochs, a val pass every ``eval_every``, one test pass."""
    evals = math.ceil(epochs / t["eval_every"])
    test_s = t["val_s"] * t["test_rows"] / t["val_rows"]
    return (epochs * t["step_s"] * t["steps_per_epoch"] + evals * t["val_s"] + test_s) / 3600


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.bench_cost",
                                 description=cli.description(__doc__))
    ap.add_argument("--dataset", default="yc", help=f"one of: {', '.join(DATASETS)} (default: yc)")
    ap.add_argument("--data-dir", default=None, help=cli.DATA_DIR)
    ap.add_argument("--models", default=",".join(TABLE1_MODELS),
                    help="comma-separated models (default: the eight rows of Table 1)")
    ap.add_argument("--steps", type=int, default=0,
                    help="timed training steps per model; 0: one whole epoch (default: 0)")
    ap.add_argument("--warmup", type=int, default=20,
                    help="untimed steps before the timed ones (default: 20)")
    ap.add_argument("--before", default=None, metavar="REV",
                    help="also time the code of this git revision, interleaved")
    ap.add_argument("--epochs-from", default="zhihu",
                    help="dataset whose validation records give the epochs per seed "
                         "(default: zhihu)")
    ap.add_argument("--seeds", type=int, default=5, help="seeds in the estimate (default: 5)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu; one torch "
                    "thread for the host either way)")
    ap.add_argument("--results", default="results", help=cli.RESULTS_DIR)
    ap.add_argument("--out", default=None, help="also write the output to this file")
    args = ap.parse_args(argv)
    store.git_state()  # read now: the code as it is when the measurement starts
    try:
        check_dataset_name(args.dataset)
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        for m in models:
            get_model(m)
        if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
            raise HarnessError(f"--device takes cpu or cuda, got {args.device!r}")
        if args.device != "cpu":
            import torch

            if not torch.cuda.is_available():
                raise HarnessError(f"--device {args.device}: no CUDA device here; use --device cpu")
        if args.steps < 0 or args.warmup < 0 or args.seeds < 1:
            raise HarnessError("--steps and --warmup must be >= 0, --seeds >= 1")
        data_dir = (Path(args.data_dir) if args.data_dir else default_data_dir()).resolve()
        if args.before and not _has_path(args.before, "harness"):
            raise HarnessError(f"--before {args.before}: not a revision of this repository "
                               f"holding the harness (try a commit from `git log`)")
        if args.out:
            store.check_writable(Path(args.out).parent, "--out")
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results = Path(args.results)
    times: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"after": REPO_ROOT}
        if args.before:
            trees = {"before": export_revision(args.before, Path(tmp)), **trees}
        for m in models:
            for side, tree in trees.items():
                try:
                    times[(m, side)] = measure(tree, m, args.dataset, data_dir, args.steps,
                                               args.warmup, args.device)
                except HarnessError as e:
                    print(f"error: {e}", file=sys.stderr)
                    return 1
                t = times[(m, side)]
                print(f"{m} ({side}): {t['step_s'] * 1e3:.1f} ms a step, val {t['val_s']:.1f} s",
                      file=sys.stderr, flush=True)
    rows, total = [], 0.0
    for m in models:
        after = times[(m, "after")]
        epoch_after = after["step_s"] * after["steps_per_epoch"]
        row = [m, after["steps_per_epoch"]]
        if args.before:
            b = times[(m, "before")]
            epoch_before = b["step_s"] * b["steps_per_epoch"]
            row += [f"{epoch_before:.0f}", f"{epoch_after:.0f}", f"{epoch_before / epoch_after:.2f}x",
                    f"{b['val_s']:.1f}", f"{after['val_s']:.1f}", f"{b['val_s'] / after['val_s']:.2f}x"]
        else:
            row += [f"{epoch_after:.0f}", f"{after['val_s']:.1f}"]
        epochs = recorded_epochs(results, args.epochs_from, m)
        if epochs is None:
            row += ["no records", "", ""]
        else:
            h = cpu_hours(after, epochs)
            total += h * args.seeds
            row += [f"{epochs:.0f}", f"{h:.2f}", f"{h * args.seeds:.1f}"]
        rows.append(row)
    headers = ["model", "steps/epoch"]
    headers += (["epoch s before", "epoch s after", "speed-up", "val s before", "val s after",
                 "speed-up"] if args.before else ["epoch s", "val s"])
    headers += [f"epochs/seed ({args.epochs_from} records)", "CPU-h/seed (estimate)",
                f"CPU-h, {args.seeds} seeds (estimate)"]
    timed = (f"{args.steps} timed steps after {args.warmup} warm-up steps, times the epoch's "
             f"steps" if args.steps else f"one whole epoch after {args.warmup} warm-up steps")
    text = (
        header("harness.bench_cost", argv)
        + f"{args.dataset} on {args.device}: one torch thread, {os.cpu_count()} cores, "
        f"{platform.machine()}. "
        f"Epoch seconds: {timed}; val seconds: one pass over the validation split with the "
        f"model's configured scoring. "
        + (f"Before: revision {args.before}; after: the working tree; interleaved model by "
           f"model. " if args.before else "")
        + f"\n\nThe CPU-hours are an **estimate**: epochs per seed are the mean epochs_run of "
        f"the model's {args.epochs_from} validation records, with a validation pass every "
        f"eval_every epochs of the {args.dataset} config and one test pass; at the 'after' "
        f"speed, on one run at a time. Tuning multiplies a row by its grid's points.\n\n"
        + tabulate(rows, headers=headers, tablefmt="github")
        + f"\n\nTotal, {args.seeds} seeds of every row with records: {total:.1f} CPU-hours "
        f"(estimate).\n"
    )
    return emit(text, args.out)


if __name__ == "__main__":
    sys.exit(main())
