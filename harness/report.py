"""``python -m harness.report``: summarise every stored record beside the paper's Table 1 cells.

Writes ``<results>/summary.md``: one row per (dataset, model, protocol) with the number of
finished seeds, test HR@20 and NDCG@20 in % (mean ± sample std over seeds), mean selected
epoch, and the paper's cell for the same dataset and model. Failed runs are counted, never
averaged in. A second table sets every other config's records (``<results>/variants/<config
hash>/``: configs a tuning replaced, the authors' presets) beside the current cell, with the
config fields that differ, so that a change of config shows its old and new cell. Everything in
it is computed from the records under ``<results>/records`` and ``<results>/variants``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from tabulate import tabulate

from harness import cli, store
from harness.stats import format_mean_std

PAPER_TABLE = Path(__file__).resolve().parent / "paper" / "table1.csv"
PAPER_NAMES = {"gru4rec": "GRU4Rec", "caser": "Caser", "sasrec": "SASRec", "ips": "IPS",
               "adaranker": "AdaRanker", "cl4srec": "CL4SRec", "diffrec": "DiffRec",
               "dreamrec": "DreamRec"}


def paper_cells() -> dict[tuple[str, str], dict[str, float]]:
    """(paper model name, dataset) -> {"hr20_mean": ..., ...} from the paper's Table 1 (in %)."""
    with open(PAPER_TABLE, newline="") as fh:
        return {(r["model"], r["dataset"]): {k: float(v) for k, v in r.items()
                                             if k not in ("model", "dataset")}
                for r in csv.DictReader(fh)}


def collect(results_dir: Path) -> dict[tuple[str, str, str], list[dict]]:
    """(dataset, model, protocol) -> records found under ``results_dir/records``."""
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for path in sorted((results_dir / "records").glob("*/*/*/seed*.json")):
        rec = store.read_record(path)
        if rec is None:
            print(f"warning: {path} is not a readable record; ignored", file=sys.stderr)
            continue
        groups[(rec["dataset"], rec["model"], rec["protocol"])].append(rec)
    return groups


def _cell(recs: list[dict]) -> list[str]:
    """Seeds, test HR@20 and NDCG@20 (mean ± std, %) of one group's finished records."""
    ok = [r for r in recs if r["status"] == "ok"]
    failed = len(recs) - len(ok)
    return [f"{len(ok)}" + (f" (+{failed} failed)" if failed else ""),
            format_mean_std([r["test"]["hr@20"] for r in ok]) if ok else "—",
            format_mean_std([r["test"]["ndcg@20"] for r in ok]) if ok else "—"]


def _flat(config: dict) -> dict[str, object]:
    """A record's config as one flat mapping (model fields, then training fields)."""
    return {k: v for part in ("model", "train") for k, v in config.get(part, {}).items()}


def config_changes(old: dict, new: dict) -> str:
    """The fields in which config ``old`` differs from ``new``, as ``field old → new`` (``—``
    where one of them has no such field), in field order."""
    a, b = _flat(old), _flat(new)
    keys = list(a) + [k for k in b if k not in a]
    return "; ".join(f"{k} {a.get(k, '—')} → {b.get(k, '—')}"
                     for k in keys if a.get(k, "—") != b.get(k, "—")) or "(none)"


def _val(recs: list[dict]) -> str:
    """Validation NDCG@20 (mean ± std, %) of one group's finished records."""
    ok = [r for r in recs if r["status"] == "ok"]
    return format_mean_std([r["val"]["ndcg@20"] for r in ok]) if ok else "—"


def set_aside(results_dir: Path, current: dict[tuple[str, str, str], list[dict]]) -> list[list[str]]:
    """One row per other config under ``results_dir/variants`` (validation protocol): its
    cell and validation NDCG@20, the same of the current config of the dataset and model
    (``current``: :func:`collect` of ``results_dir``), and what differs from it."""
    rows = []
    for folder in sorted((Path(results_dir) / store.VARIANTS).glob("*")):
        for (dataset, model, protocol), recs in sorted(collect(folder).items()):
            if protocol != "validation":
                continue
            now = current.get((dataset, model, protocol), [])
            rows.append([dataset, model, folder.name, *_cell(recs), _val(recs),
                         *(_cell(now) + [_val(now)] if now else ["0", "—", "—", "—"]),
                         config_changes(recs[0]["config"], now[0]["config"]) if now else "—"])
    return rows


def _stopping(recs: list[dict]) -> str:
    """The early-stopping settings of ``recs`` ("10 × 5 epochs": 10 evaluations without a
    gain, one every 5 epochs), each distinct one once; "—" when none has them."""
    out = []
    for r in recs:
        train = (r.get("config") or {}).get("train") or {}
        if "patience" in train:
            text = (f"{train['patience']} × {train.get('eval_every', 1)} "
                    f"epoch{'s' if train.get('eval_every', 1) != 1 else ''}")
            if text not in out:
                out.append(text)
    return ", ".join(out) or "—"


def render(results_dir: Path) -> str:
    paper = paper_cells()
    rows = []
    order = {name: i for i, name in enumerate(PAPER_NAMES)}  # the paper's row order

    def key(item):
        (dataset, model, protocol), _ = item
        return dataset, order.get(model, len(order)), model, protocol

    current = collect(results_dir)
    for (dataset, model, protocol), recs in sorted(current.items(), key=key):
        ok = [r for r in recs if r["status"] == "ok"]
        cell = paper.get((PAPER_NAMES.get(model, model), dataset))
        rows.append([
            dataset, model,
            protocol + (" (test-selected)" if protocol == "published" else ""),
            *_cell(recs),
            " ".join(f"{r['selected_epoch']}/{r.get('epochs_run', '?')}"
                     for r in sorted(ok, key=lambda r: r["seed"])) or "—",
            _stopping(ok),
            (f"{100 * np.mean([r['test']['coverage@20'] for r in cov]):.1f} ({len(cov)})"
             if (cov := [r for r in ok if "coverage@20" in r["test"]]) else "—"),
            f"{cell['hr20_mean']:.2f} ± {cell['hr20_std']:.2f}" if cell else "—",
            f"{cell['ndcg20_mean']:.2f} ± {cell['ndcg20_std']:.2f}" if cell else "—",
        ])
    head = ["dataset", "model", "protocol", "seeds", "HR@20 %", "NDCG@20 %",
            "selected epoch / epochs run, each seed", "stops after", "coverage@20 % (seeds)",
            "paper HR@20 %", "paper NDCG@20 %"]
    return "\n".join([
        "# Results so far",
        "",
        "Generated by `python -m harness.report` from the records in `records/`; do not edit.",
        "Test metrics, full ranking over all items, mean ± sample std over seeds. `validation`:",
        "the state with the best validation NDCG@20, test evaluated once on it. `published`: the",
        "evaluation with the best *test* NDCG@20 (test-selected, optimistic), shown only to measure",
        "the selection gap. The paper's columns are its Table 1 (its protocol, 5 runs).",
        "coverage@20: the share of the items in at least one test row's top 20 (records made before",
        "the evaluator reported it have none; the number of seeds that do is in brackets).",
        "Each seed's selected epoch (counted from 0) and how many epochs it trained, seed 0 first,",
        "and what stops a run: so many evaluations without a gain, one every so many epochs (the",
        "records' configs). A validation-selected run that stopped early ends exactly that many",
        "evaluations after its selected state; whether the stop cut a run still improving is",
        "checked by running a seed again with a longer patience (`results/checks/patience30/`).",
        "",
        tabulate(rows, headers=head, tablefmt="github"),
        "",
        "## Other configs' records",
        "",
        "Records of configs that are not the current one (`variants/<config hash>/`): a config that",
        "tuning replaced, a preset such as the authors' DreamRec settings, or another config file",
        "of the model (IPS's popularity propensity). Validation protocol, test metrics in %, and",
        "the validation NDCG@20 that a choice between configs rests on, beside the current",
        "config's; the last column lists the fields in which the other config differs from the",
        "current one (other → current).",
        "",
        tabulate(set_aside(results_dir, current), headers=[
            "dataset", "model", "config", "seeds", "HR@20 %", "NDCG@20 %", "val NDCG@20 %",
            "current seeds", "current HR@20 %", "current NDCG@20 %", "current val NDCG@20 %",
            "differs (other → current)"],
            tablefmt="github") if (Path(results_dir) / store.VARIANTS).is_dir() else "(none)",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.report", description=cli.description(__doc__))
    ap.add_argument("--results-dir", default="results", help=cli.RESULTS_DIR)
    args = ap.parse_args(argv)
    results_dir = Path(args.results_dir)
    if not (results_dir / "records").is_dir():
        print(f"error: no records under {results_dir}/records; produce some with "
              "`python -m harness.run --model dreamrec --dataset ml-100k`", file=sys.stderr)
        return 2
    text = render(results_dir)
    store.write_text(results_dir / "summary.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
