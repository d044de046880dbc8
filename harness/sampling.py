"""``python -m harness.sampling``: what fast oracle generation costs DreamRec in accuracy.

For each seed, the validation-selected DreamRec state of the dataset's config (DDPM over all T
steps during selection, as in the paper) is sampled with DDPM and with DDIM over k of the T
trained steps; val and test HR/NDCG and the wall time of one val+test generation pass
(sampling, scoring and ranking every real item) are recorded per seed and sampler. Example::

    python -m harness.sampling --dataset zhihu --seeds 5 --steps 10,20,50,100 --threads 2

The selected state comes from ``$HARNESS_MODEL_DIR`` (``.cache/models/``) when
``python -m harness.run --save-model`` or an earlier call left it there, and is trained otherwise
(the same training as ``harness.run``, so DDPM's test metrics equal the run record's; each seed
file says whether they do). One JSON per seed goes to ``results/sampling/<dataset>/``, so an
interrupted command rerun computes only what is missing; ``results/sampling.md``, ``.csv`` and
``results/figures/sampling.png``/``.pdf`` are rendered from every seed file present.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tabulate import tabulate

from dreamrec.model import DreamRec
from dreamrec.schedule import SamplingPlan
from harness import cli, store
from harness.data import DATASETS, SequenceSplits, check_dataset_name, load_dataset
from harness.errors import HarnessError
from harness.evaluate import evaluate
from harness.models import get_model
from harness.run import build_model, parse_overrides, pick_device, record_base
from harness.stats import format_mean_std
from harness.train import eval_generator, train

SCHEMA = 1
METRICS = ("hr@20", "ndcg@20")


def variant_name(sampler: str, steps: int, eta: float) -> str:
    return f"ddpm-T{steps}" if sampler == "ddpm" else f"ddim-k{steps}-eta{eta:g}"


def variants(model: DreamRec, steps: list[int], etas: list[float]) -> dict[str, SamplingPlan]:
    """DDPM over all T trained steps, then DDIM for each k x eta (k above T is left out)."""
    T = model.config.timesteps
    out = {variant_name("ddpm", T, 1.0): model.sampling_plan("ddpm", 0)}
    for k in steps:
        for eta in etas:
            if k <= T:
                out[variant_name("ddim", k, eta)] = model.sampling_plan("ddim", k, eta)
    return out


def seed_path(results_dir: Path, dataset: str, seed: int) -> Path:
    return Path(results_dir) / "sampling" / dataset / f"seed{seed}.json"


def selected_model(spec, splits: SequenceSplits, model_cfg, train_cfg, seed: int,
                   device: torch.device, chash: str, dataset: str) -> tuple[DreamRec, int, str]:
    """The validation-selected state of one seed: (model in eval mode, selected epoch, source).

    Read from the model folder when a run saved it; trained (and saved) otherwise.
    """
    path = store.state_path(store.default_model_dir(), dataset, spec.name, chash, seed)
    model = build_model(spec, splits, model_cfg, seed, device, dataset)  # + its item table
    saved = store.load_state(path)
    if saved is not None and saved.get("config_hash") == chash:
        model.load_state_dict(saved["state_dict"])
        return model.to(device).eval(), int(saved["selected_epoch"]), f"saved state {path}"
    result = train(model, splits, train_cfg, seed, device, progress=False,
                   desc=f"dreamrec/{dataset} seed {seed}", log_evals=True)
    store.save_state(path, model.state_dict(), selected_epoch=result.best_epoch,
                     config_hash=chash)
    return model.to(device).eval(), result.best_epoch, "trained here"


def measure(model: DreamRec, plan: SamplingPlan, splits: SequenceSplits, device: torch.device,
            seed: int, epoch: int, batch_size: int) -> dict[str, Any]:
    """val and test metrics of one sampler, and the wall time of the val+test pass.

    Each split draws from the generator training used for it at the selected epoch, so DDPM
    reproduces the run's own evaluation."""
    fn = (lambda h, ln, g: model.item_scores(model.generate(h, ln, g, plan=plan)))
    out: dict[str, Any] = {"sampler": plan.sampler, "steps": len(plan.steps), "eta": plan.eta}
    t0 = time.perf_counter()
    for split in ("val", "test"):
        ev = evaluate(fn, splits.split(split), splits.n_items, device, batch_size,
                      eval_generator(device, seed, epoch, split))
        out[split] = ev.metrics
        if split == "test":
            out["test_ranks_sha"] = store.array_digest(ev.ranks)
    if device.type == "cuda":
        torch.cuda.synchronize()
    out["gen_s"] = time.perf_counter() - t0
    return out


def run_seed(spec, splits, model_cfg, train_cfg, seed, device, base, chash, args,
             results_dir: Path) -> dict[str, Any]:
    path = seed_path(results_dir, args.dataset, seed)
    old = store.read_json(path)
    done = old["variants"] if old and old.get("config_hash") == chash else {}
    model, epoch, source = selected_model(spec, splits, model_cfg, train_cfg, seed, device, chash,
                                          args.dataset)
    plans = variants(model, args.steps, args.etas)
    todo = [name for name in plans if name not in done]
    if not todo:
        print(f"seed {seed}: every sampler already measured ({path}), skipped", file=sys.stderr)
        return old
    results = dict(done)
    load = [os.getloadavg()[0]]
    for name in todo:
        results[name] = measure(model, plans[name], splits, device, seed, epoch,
                                train_cfg.eval_batch_size)
        r = results[name]
        print(f"seed {seed} {name}: test HR@20 {r['test']['hr@20']:.4f} NDCG@20 "
              f"{r['test']['ndcg@20']:.4f}, val+test generation {r['gen_s']:.2f} s",
              file=sys.stderr)
    load.append(os.getloadavg()[0])
    ddpm = results[next(iter(plans))]
    run_rec = store.read_record(store.record_path(results_dir, args.dataset, "dreamrec",
                                                  "validation", seed))
    matches = None
    if run_rec and run_rec.get("config_hash") == chash and run_rec.get("status") == "ok":
        matches = (all(ddpm["test"].get(k) == v for k, v in run_rec["test"].items())
                   and run_rec["selected_epoch"] == epoch)
    rec = dict(base, schema=SCHEMA, seed=seed, device=str(device),
               torch_threads=torch.get_num_threads(), cpu=f"{os.cpu_count()} cores, "
               f"{platform.machine()}", load_avg_1min=load, created=store.now_iso(),
               selection="state with the best validation NDCG@20 under the config's own sampler "
               "(DDPM over all T steps): every sampler is evaluated on that one state",
               selected_epoch=epoch, state=source, ddpm_matches_run_record=matches,
               variants=results)
    store.write_json(path, rec)
    return rec


# -- rendering ----------------------------------------------------------------------------------

def collect(results_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every readable seed file, by dataset (a file that cannot be read is reported, skipped)."""
    return store.read_seed_files(Path(results_dir) / "sampling", SCHEMA, "variants", "sampling")


def summary_rows(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per sampler over the seeds that measured it, DDPM first, then by steps."""
    names: list[str] = []
    for r in recs:
        names += [n for n in r["variants"] if n not in names]
    ddpm = next((n for n in names if n.startswith("ddpm")), None)
    first = {n: next(r["variants"][n] for r in recs if n in r["variants"]) for n in names}
    key = (lambda n: (n != ddpm, -first[n]["steps"], first[n]["eta"]))  # DDPM, then most steps
    rows = []
    for name in sorted(names, key=key):
        have = [r for r in recs if name in r["variants"]]
        v = [r["variants"][name] for r in have]
        row: dict[str, Any] = {"variant": name, "sampler": v[0]["sampler"], "steps": v[0]["steps"],
                               "eta": v[0]["eta"], "seeds": len(v)}
        for split in ("val", "test"):
            for m in METRICS:
                row[f"{split}_{m}"] = [x[split][m] for x in v]
        row["gen_s"] = [x["gen_s"] for x in v]
        row["test_coverage@20"] = [x["test"]["coverage@20"] for x in v if "coverage@20" in x["test"]]
        if ddpm is not None:
            paired = [(r["variants"][name], r["variants"][ddpm]) for r in have
                      if ddpm in r["variants"]]
            if paired:
                base = np.mean([b["test"]["hr@20"] for _, b in paired])
                row["rel_hr20"] = (np.mean([a["test"]["hr@20"] for a, _ in paired]) - base) / base
                row["speedup"] = (np.mean([b["gen_s"] for _, b in paired])
                                  / np.mean([a["gen_s"] for a, _ in paired]))
        rows.append(row)
    return rows


def _secs(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def render(results_dir: Path) -> str:
    """Write ``sampling.md``, ``sampling.csv`` and the figure; returns the Markdown."""
    data = collect(results_dir)
    if not data:
        raise HarnessError(f"no sampling records under {Path(results_dir) / 'sampling'}; run "
                           "python -m harness.sampling --dataset zhihu first")
    md = ["# DreamRec: DDPM against DDIM sampling", "",
          "Produced by `python -m harness.sampling` from the seed files under "
          "`results/sampling/`. Every sampler is evaluated on the same validation-selected "
          "state per seed (selected with DDPM over all T steps, the paper's sampler); HR@20 and "
          "NDCG@20 in %, mean ± std over seeds; generation time is one val+test pass "
          "(encoding, sampling, scoring and ranking every real item), in seconds; ΔHR@20 is "
          "relative to DDPM on the same seeds; coverage@20 is the share of the items in at least one "
          "test row's top 20 (a model ranking every row alike covers 20 / n_items). DDIM runs "
          "with eta = 0 (deterministic given x_T) unless the row says otherwise.", ""]
    table: list[dict[str, Any]] = []
    for dataset in sorted(data, key=lambda d: DATASETS.index(d) if d in DATASETS else 99):
        recs = data[dataset]
        r0 = recs[0]
        loads = [x for r in recs for x in r.get("load_avg_1min", [])]
        rows = summary_rows(recs)
        md += [f"## {dataset}", "",
               f"T = {r0['config']['model']['timesteps']} ({r0['config']['model']['schedule']} "
               f"schedule), w = {r0['config']['model']['w']}; {r0['rows']['val']} + "
               f"{r0['rows']['test']} val + test rows, {r0['n_items']} items; device "
               f"{r0['device']}, {r0['torch_threads']} torch thread(s), {r0.get('cpu', '?')}, "
               f"1-minute load average {min(loads):.1f}–{max(loads):.1f} while measuring "
               f"(other jobs on the machine slow the times); seeds "
               f"{', '.join(str(r['seed']) for r in sorted(recs, key=lambda r: r['seed']))}.", ""]
        body = []
        for row in rows:
            body.append([row["sampler"].upper(), row["steps"],
                         f"{row['eta']:g}", row["seeds"],
                         format_mean_std(row["val_hr@20"]), format_mean_std(row["test_hr@20"]),
                         format_mean_std(row["test_ndcg@20"]),
                         format_mean_std(row["test_coverage@20"]) if row["test_coverage@20"] else "—",
                         f"{100 * row['rel_hr20']:+.1f} %" if "rel_hr20" in row else "—",
                         _secs(row["gen_s"]),
                         f"{row['speedup']:.1f}×" if "speedup" in row else "—"])
            table.append({"dataset": dataset, **{k: (json.dumps(v) if isinstance(v, list) else v)
                                                 for k, v in row.items()}})
        md.append(tabulate(body, headers=["sampler", "steps", "eta", "seeds", "val HR@20",
                                          "test HR@20", "test NDCG@20", "test coverage@20",
                                          "ΔHR@20 vs DDPM",
                                          "val+test gen s", "speed-up"], tablefmt="github"))
        md.append("")
    text = "\n".join(md)
    out = Path(results_dir)
    store.write_text(out / "sampling.md", text)
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for row in table for k in row))
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(table)
    store.write_text(out / "sampling.csv", buf.getvalue())
    plot(data, out / "figures" / "sampling")
    return text


def plot(data: dict[str, list[dict[str, Any]]], stem: Path) -> None:
    """Test HR@20 and generation time against the number of reverse steps, one column per
    dataset (PNG and PDF)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted(data, key=lambda d: DATASETS.index(d) if d in DATASETS else 99)
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(2, len(datasets), figsize=(max(6.5, 4.5 * len(datasets)), 6.5),
                             squeeze=False, sharex="col")
    for col, dataset in enumerate(datasets):
        rows = summary_rows(data[dataset])
        ax_hr, ax_t = axes[0, col], axes[1, col]
        for sampler, marker in (("ddim", "o"), ("ddpm", "s")):
            for eta in sorted({r["eta"] for r in rows if r["sampler"] == sampler}):
                sel = sorted((r for r in rows if r["sampler"] == sampler and r["eta"] == eta),
                             key=lambda r: r["steps"])
                if not sel:
                    continue
                label = "DDPM" if sampler == "ddpm" else f"DDIM, eta={eta:g}"
                k = [r["steps"] for r in sel]
                hr = [100 * np.mean(r["test_hr@20"]) for r in sel]
                hr_sd = [100 * np.std(r["test_hr@20"], ddof=1) if len(r["test_hr@20"]) > 1 else 0
                         for r in sel]
                sec = [np.mean(r["gen_s"]) for r in sel]
                ax_hr.errorbar(k, hr, yerr=hr_sd, marker=marker, capsize=3, label=label)
                ax_t.plot(k, sec, marker=marker, label=label)
        n_seeds = len(data[dataset])
        ax_hr.set_title(f"{dataset} ({n_seeds} seed{'' if n_seeds == 1 else 's'})")
        ax_hr.set_ylabel("test HR@20 (%)")
        ax_t.set_ylabel("val+test generation (s)")
        ax_t.set_xlabel("reverse steps (log scale)")
        steps = sorted({r["steps"] for r in rows})
        for ax in (ax_hr, ax_t):
            ax.set_xscale("log")
            ax.set_xticks(steps)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(alpha=0.3)
        ax_t.set_ylim(bottom=0)
        ax_hr.legend(fontsize=8)
    fig.suptitle("DreamRec: reverse steps against accuracy and time\n(mean ± std over seeds)")
    fig.tight_layout()
    store.save_figure(fig, stem)
    plt.close(fig)


def _ints(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise HarnessError(f"--steps takes comma-separated integers, got {text!r}") from None
    if not out or min(out) < 1:
        raise HarnessError(f"--steps takes positive step counts, got {text!r}")
    return out


def _floats(text: str) -> list[float]:
    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise HarnessError(f"--eta takes comma-separated numbers, got {text!r}") from None
    if not out or any(not 0.0 <= e <= 1.0 for e in out):
        raise HarnessError(f"--eta values must lie in [0, 1], got {text!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.sampling",
                                 description=cli.description(__doc__))
    ap.add_argument("--dataset", default="zhihu",
                    help=f"one of: {', '.join(DATASETS)} (default: zhihu)")
    ap.add_argument("--seeds", type=int, default=5, help=cli.SEEDS)
    ap.add_argument("--first-seed", type=int, default=0, help=cli.FIRST_SEED)
    ap.add_argument("--steps", default="10,20,50,100", help="DDIM step counts k (default 10,20,50,100)")
    ap.add_argument("--eta", default="0", help="DDIM eta values (default 0: deterministic)")
    ap.add_argument("--device", default="auto", help=cli.device("auto"))
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (default: all cores); times depend on it")
    ap.add_argument("--data-dir", default=None, help=cli.DATA_DIR)
    ap.add_argument("--results-dir", default="results", help=cli.RESULTS_DIR)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of the DreamRec config (the trained model)")
    ap.add_argument("--render-only", action="store_true",
                    help="only render sampling.md/.csv and the figure from existing seed files")
    args = ap.parse_args(argv)
    store.git_state()
    results_dir = Path(args.results_dir)
    try:
        if not args.render_only:
            check_dataset_name(args.dataset)
            if args.seeds < 1:
                raise HarnessError(f"--seeds must be >= 1, got {args.seeds}")
            args.steps, args.etas = _ints(args.steps), _floats(args.eta)
            spec = get_model("dreamrec")
            model_cfg, train_cfg = spec.configs(args.dataset, parse_overrides(args.set))
            over = [k for k in args.steps if k > model_cfg.timesteps]
            if over:
                print(f"warning: --steps {','.join(map(str, over))} exceed the trained "
                      f"T={model_cfg.timesteps}; left out", file=sys.stderr)
            device = pick_device(args.device)
            if args.threads < 0:
                raise HarnessError(f"--threads must be >= 0, got {args.threads}")
            torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
            splits = load_dataset(args.dataset, args.data_dir)
            base, chash = record_base(spec, args.dataset, splits, model_cfg, train_cfg)
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                run_seed(spec, splits, model_cfg, train_cfg, seed, device, base, chash, args,
                         results_dir)
        print(render(results_dir))
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
