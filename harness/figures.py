"""``python -m harness.figures``: every figure, from the stored records (PNG and PDF).

- ``results/figures/val-curves.png``: validation HR@20 per epoch for each model, one panel per
  dataset (mean over the seeds that reached the epoch; validation-protocol records).
- ``results/figures/guidance.png``: the guidance-strength sweep (``harness.guidance`` records).
- ``results/figures/sampling.png``: DDPM against DDIM (``harness.sampling`` records).

A figure whose records are absent is skipped with a note saying which command makes them.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from harness import cli, guidance, sampling, store
from harness.data import DATASETS
from harness.errors import HarnessError
from harness.report import PAPER_NAMES


def curves(results_dir: Path) -> dict[str, dict[str, dict[int, list[float]]]]:
    """dataset -> model -> epoch -> validation HR@20 of each seed that evaluated that epoch."""
    out: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(dict))
    for path in sorted((Path(results_dir) / "records").glob("*/*/validation/seed*.json")):
        rec = store.read_record(path)
        if not rec or rec.get("status") != "ok":
            continue
        for e in rec.get("history", []):
            if "val" in e:
                out[rec["dataset"]][rec["model"]].setdefault(e["epoch"], []).append(e["val"]["hr@20"])
    return out


def plot_curves(data, stem: Path, metric_label: str = "HR@20") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    datasets = sorted(data, key=lambda d: DATASETS.index(d) if d in DATASETS else 99)
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    order = list(PAPER_NAMES)
    models = sorted({m for d in data.values() for m in d},
                    key=lambda m: (order.index(m) if m in order else len(order), m))
    colour = {m: f"C{i % 10}" for i, m in enumerate(models)}  # one colour per model in every panel
    seeds: dict[str, set[int]] = {m: set() for m in models}
    handles: dict[str, Any] = {}
    for ax, dataset in zip(axes[0], datasets):
        for model in (m for m in models if m in data[dataset]):  # the paper's order
            by_epoch = data[dataset][model]
            epochs = sorted(by_epoch)
            mean = [100 * np.mean(by_epoch[e]) for e in epochs]
            n = max(len(v) for v in by_epoch.values())
            seeds[model].add(n)
            (handles[model],) = ax.plot(
                [e + 1 for e in epochs], mean, marker="." if len(epochs) < 60 else None,
                color=colour[model], label=f"{PAPER_NAMES.get(model, model)} ({n} seeds)")
        ax.set_xscale("log")
        last = max(max(by) for by in data[dataset].values()) + 1
        ax.set_xticks([t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if t <= last * 1.2])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("epoch (log scale)")
        ax.set_ylabel(f"validation {metric_label} (%)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
    # one legend for the figure, below the panels, so that no panel's curves hide behind it
    labels = []
    for m in models:
        lo, hi = min(seeds[m]), max(seeds[m])
        count = str(lo) if lo == hi else f"{lo}-{hi}"
        labels.append(f"{PAPER_NAMES.get(m, m)} ({count} seed{'s' if hi > 1 else ''})")
    fig.legend([handles[m] for m in models], labels, loc="lower center", fontsize=9,
               ncol=min(len(models), 8), frameon=False)
    fig.suptitle(f"Validation {metric_label} per epoch (mean over seeds; a run ends at early stopping)")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    store.save_figure(fig, stem)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.figures", description=cli.description(__doc__))
    ap.add_argument("--results-dir", default="results", help=cli.RESULTS_DIR)
    args = ap.parse_args(argv)
    res = Path(args.results_dir)
    made = []
    data = curves(res)
    if data:
        plot_curves(data, res / "figures" / "val-curves")
        made.append(res / "figures" / "val-curves.png")
    else:
        print("val-curves: no records; python -m harness.run (or harness.reproduce_table1) "
              "makes them", file=sys.stderr)
    for name, module in (("guidance", guidance), ("sampling", sampling)):
        try:
            module.render(res)
            made.append(res / "figures" / f"{name}.png")
        except HarnessError as e:
            print(f"{name}: {e}", file=sys.stderr)
    if not made:
        print("error: no records to draw from under " + str(res), file=sys.stderr)
        return 2
    print("\n".join(str(p) for p in made))
    return 0


if __name__ == "__main__":
    sys.exit(main())
