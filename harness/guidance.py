"""``python -m harness.guidance``: DreamRec's guidance-strength sweep (the paper's Figure 4).

For each seed DreamRec is trained once with the dataset's config; every guidance strength w is
an evaluation variant selected on validation by the run's own rule (best validation NDCG@20,
early stopping, the same evaluation generators), which is exactly what a run trained with that
w would select, since w enters generation only. Example::

    python -m harness.guidance --dataset zhihu --w 0,2,4,6,8,10 --seeds 5

One JSON per seed goes to ``results/guidance/<dataset>/`` (an interrupted command resumes the
seed in progress from its checkpoint and skips finished seeds; the seed files of another
config, such as the one before a retuning, first move to ``results/variants/<config
hash>/guidance/<dataset>/``); ``results/guidance.md`` and
``results/figures/guidance.png``/``.pdf`` are rendered from every seed file present. The
config's own selected state is kept as ``harness.run --save-model`` keeps it, so
``harness.sampling`` needs no training after this command.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tabulate import tabulate

from harness import cli, store
from harness.data import DATASETS, check_dataset_name, load_dataset
from harness.errors import HarnessError
from harness.models import get_model
from harness.run import build_model, parse_overrides, pick_device, record_base, w_name, w_variants
from harness.stats import format_mean_std
from harness.train import train

SCHEMA = 1
METRICS = ("hr@20", "ndcg@20")


def seed_path(results_dir: Path, dataset: str, seed: int) -> Path:
    return Path(results_dir) / "guidance" / dataset / f"seed{seed}.json"


def set_aside(results_dir: Path, dataset: str, chash: str) -> list[tuple[Path, Path]]:
    """Make ``guidance/<dataset>/`` the home of config ``chash``'s seed files: another config's
    move to ``variants/<their hash>/guidance/<dataset>/`` (as :func:`harness.store.set_aside`
    does for records), so a sweep of a retuned config neither overwrites nor mixes with the old
    one's. A destination that exists is never replaced: HarnessError, nothing moved."""
    folder = Path(results_dir) / "guidance" / dataset
    moves = []
    for path in sorted(folder.glob("seed*.json")):
        rec = store.read_json(path)
        if rec and rec.get("config_hash") and rec["config_hash"] != chash:
            moves.append((path, store.variant_dir(results_dir, rec["config_hash"])
                          / path.relative_to(results_dir)))
    store.check_free(moves, results_dir)
    store.move_records(moves)
    return moves


def run_seed(spec, splits, model_cfg, train_cfg, seed: int, device, base: dict[str, Any],
             chash: str, ws: list[float], results_dir: Path, dataset: str) -> None:
    path = seed_path(results_dir, dataset, seed)
    old = store.read_json(path)
    if old and old.get("config_hash") == chash and set(old["w"]) >= {w_name(w) for w in ws}:
        print(f"seed {seed}: every w already measured ({path}), skipped", file=sys.stderr)
        return
    own = model_cfg.w
    model = build_model(spec, splits, model_cfg, seed, device, dataset)
    variants = w_variants(ws, own)
    ckpt = store.checkpoint_path(results_dir, dataset, "dreamrec-guidance", seed)
    key = f"{chash}:guidance:{','.join(v.name for v in variants)}"
    result = train(model, splits, train_cfg, seed, device, progress=False,
                   desc=f"guidance/{dataset} seed {seed}", log_evals=True, checkpoint=ckpt,
                   checkpoint_key=key, variants=variants)
    state = store.state_path(store.default_model_dir(), dataset, "dreamrec", chash, seed)
    if not state.exists():  # the config's own selected state, for harness.sampling to reuse
        store.save_state(state, model.state_dict(), selected_epoch=result.best_epoch,
                         config_hash=chash)
    out: dict[str, Any] = {}
    for w in ws:
        if w == own:
            curve = [(e["epoch"], e["val"]) for e in result.history if "val" in e]
            out[w_name(w)] = {"w": w, "selected_epoch": result.best_epoch,
                              "stop_epoch": result.epochs_run - 1, "val": result.val.metrics,
                              "test": result.test.metrics, "val_curve": curve}
        else:
            v = result.variants[w_name(w)]
            out[w_name(w)] = {"w": w, "selected_epoch": v.best_epoch, "stop_epoch": v.stop_epoch,
                              "val": v.val.metrics, "test": v.test.metrics, "val_curve": v.curve}
    run_rec = store.read_record(store.record_path(results_dir, dataset, "dreamrec", "validation", seed))
    matches = None
    if run_rec and run_rec.get("config_hash") == chash and run_rec.get("status") == "ok":
        matches = all(result.test.metrics.get(k) == v for k, v in run_rec["test"].items())
    store.write_json(path, dict(
        base, schema=SCHEMA, seed=seed, device=str(device), torch_threads=torch.get_num_threads(),
        created=store.now_iso(), own_w=own, wall=result.wall,
        selection="each w: the state with the best validation NDCG@20 under that w, early "
        "stopping after `patience` evaluations without a gain (one training serves every w)",
        own_w_matches_run_record=matches, w=out))
    ckpt.unlink(missing_ok=True)
    msg = ", ".join(f"{n} {r['test']['hr@20'] * 100:.2f}" for n, r in out.items())
    print(f"seed {seed}: test HR@20 % {msg}", file=sys.stderr)


def collect(results_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every readable seed file, by dataset (a file that cannot be read is reported, skipped)."""
    return store.read_seed_files(Path(results_dir) / "guidance", SCHEMA, "w", "guidance")


def _order(data):
    return sorted(data, key=lambda d: DATASETS.index(d) if d in DATASETS else 99)


def render(results_dir: Path) -> str:
    data = collect(results_dir)
    if not data:
        raise HarnessError(f"no guidance records under {Path(results_dir) / 'guidance'}; run "
                           "python -m harness.guidance --dataset zhihu first")
    md = ["# DreamRec: guidance strength w (the paper's Figure 4)", "",
          "Produced by `python -m harness.guidance` from the seed files under "
          "`results/guidance/`. For each w, the state with the best validation NDCG@20 under "
          "that w (early stopping as in every run); HR@20 and NDCG@20 in %, mean ± std over "
          "seeds. One training per seed serves every w (w enters generation only), so each "
          "column is what runs trained with that w give.", ""]
    for dataset in _order(data):
        recs = data[dataset]
        ws = sorted({r["w"][n]["w"] for r in recs for n in r["w"]})
        rows = []
        for w in ws:
            have = [r["w"][w_name(w)] for r in recs if w_name(w) in r["w"]]
            rows.append([f"{w:g}" + (" (config)" if w == recs[0]["own_w"] else ""), len(have)]
                        + [format_mean_std([h[s][m] for h in have]) for s in ("val", "test")
                           for m in METRICS]
                        + [f"{np.mean([h['selected_epoch'] for h in have]):.0f}"])
        m0 = recs[0]["config"]["model"]
        md += [f"## {dataset}", "",
               f"T = {m0['timesteps']} ({m0['schedule']}), config w = {recs[0]['own_w']:g}; "
               f"seeds {', '.join(str(r['seed']) for r in sorted(recs, key=lambda r: r['seed']))}; "
               f"device {recs[0]['device']}.", "",
               tabulate(rows, headers=["w", "seeds", "val HR@20", "val NDCG@20", "test HR@20",
                                       "test NDCG@20", "mean selected epoch"], tablefmt="github"),
               ""]
    text = "\n".join(md)
    store.write_text(Path(results_dir) / "guidance.md", text)
    plot(data, Path(results_dir) / "figures" / "guidance")
    return text


def plot(data: dict[str, list[dict[str, Any]]], stem: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = _order(data)
    fig, axes = plt.subplots(len(datasets), 2, figsize=(9, 3.4 * len(datasets)), squeeze=False)
    for r, dataset in enumerate(datasets):
        recs = data[dataset]
        ws = sorted({rec["w"][n]["w"] for rec in recs for n in rec["w"]})
        for c, metric in enumerate(METRICS):
            ax = axes[r, c]
            for split, style in (("val", "o--"), ("test", "s-")):
                vals = [[rec["w"][w_name(w)][split][metric] * 100 for rec in recs
                         if w_name(w) in rec["w"]] for w in ws]
                ax.errorbar(ws, [np.mean(v) for v in vals],
                            yerr=[np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals],
                            fmt=style, capsize=3, label=split)
            ax.set_title(f"{dataset}: {metric.upper()} ({len(recs)} seeds)")
            ax.set_xlabel("guidance strength w")
            ax.set_ylabel(f"{metric.upper()} (%)")
            ax.set_xticks(ws)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle("DreamRec: guidance strength, validation-selected per w (mean ± std)")
    fig.tight_layout()
    store.save_figure(fig, stem)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.guidance", description=cli.description(__doc__))
    ap.add_argument("--dataset", default="zhihu",
                    help=f"one of: {', '.join(DATASETS)} (default: zhihu)")
    ap.add_argument("--w", default="0,2,4,6,8,10", help="guidance strengths (default 0,2,4,6,8,10)")
    ap.add_argument("--seeds", type=int, default=5, help=cli.SEEDS)
    ap.add_argument("--first-seed", type=int, default=0, help=cli.FIRST_SEED)
    ap.add_argument("--device", default="auto", help=cli.device("auto"))
    ap.add_argument("--threads", type=int, default=0, help=cli.THREADS)
    ap.add_argument("--data-dir", default=None, help=cli.DATA_DIR)
    ap.add_argument("--results-dir", default="results", help=cli.RESULTS_DIR)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=cli.SET)
    ap.add_argument("--render-only", action="store_true",
                    help="only render the outputs from the seed files that exist")
    args = ap.parse_args(argv)
    store.git_state()
    results_dir = Path(args.results_dir)
    try:
        if not args.render_only:
            check_dataset_name(args.dataset)
            try:
                ws = sorted({float(x) for x in args.w.split(",") if x.strip()})
            except ValueError:
                raise HarnessError(f"--w takes comma-separated numbers, got {args.w!r}") from None
            if not ws or min(ws) < 0:
                raise HarnessError(f"--w takes guidance strengths >= 0, got {args.w!r}")
            if args.seeds < 1:
                raise HarnessError(f"--seeds must be >= 1, got {args.seeds}")
            spec = get_model("dreamrec")
            model_cfg, train_cfg = spec.configs(args.dataset, parse_overrides(args.set))
            device = pick_device(args.device)
            torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
            splits = load_dataset(args.dataset, args.data_dir)
            base, chash = record_base(spec, args.dataset, splits, model_cfg, train_cfg)
            for src, dest in set_aside(results_dir, args.dataset, chash):
                print(f"{src}: another config's sweep, moved to {dest}", file=sys.stderr)
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                run_seed(spec, splits, model_cfg, train_cfg, seed, device, base, chash, ws,
                         results_dir, args.dataset)
        print(render(results_dir))
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
