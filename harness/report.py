"""``python -m harness.report``: summarise every stored record beside the paper's Table 1 cells.

Writes ``<results>/summary.md``: one row per (dataset, model, protocol) with the number of
finished seeds, test HR@20 and NDCG@20 in % (mean ± sample std over seeds), mean selected
epoch, and the paper's cell for the same dataset and model. Failed runs are counted, never
averaged in. A second table sets every other config's records (``<results>/variants/<config
hash>/``: configs a tuning replaced, the authors' presets) beside the current cell, with the
config fields that differ, so that a change of config shows its old and new cell. A third sets
every early-stopping check (a seed run again with a later stop, ``<results>/checks/patience<N>/``)
beside the record it checks. Everything in it is computed from the records under
``<results>/records``, ``<results>/variants`` and ``<results>/checks``.
"""

from __future__ import annotations

import argparse
import csv
import re
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
    gain, one every 5 epochs; "none (1000 epochs)" when the patience outlasts ``max_epochs``),
    each distinct one once; "—" when none has them."""
    out = []
    for r in recs:
        train = (r.get("config") or {}).get("train") or {}
        if "patience" in train:
            every = train.get("eval_every", 1)
            if store.fixed_epochs({"eval_every": every, **train}):
                text = f"none ({train['max_epochs']} epochs)"
            else:
                text = f"{train['patience']} × {every} epoch{'s' if every != 1 else ''}"
            if text not in out:
                out.append(text)
    return ", ".join(out) or "—"


#: the folders under ``<results>/checks`` that hold stopping checks (``patience120``,
#: ``epochs2000``); the others hold other checks (a reproduction, a state kept)
STOPPING_CHECK = re.compile(r"(patience|epochs)\d+")


def _stops_sooner(base: dict, check: dict) -> bool:
    """Whether record ``base`` is ``check``'s run with an earlier stop: the same config but
    for the stopping fields, each of which is no later in ``base`` and one earlier."""
    if not store.differs_only_in_stopping(base["config"], check["config"]):
        return False
    a, b = base["config"].get("train") or {}, check["config"].get("train") or {}
    pairs = [(a.get(k), b.get(k)) for k in store.STOPPING_FIELDS]
    if any(x is None or y is None for x, y in pairs):
        return False
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


def _finished_validation(folder: Path) -> list[list[dict]]:
    """The finished validation-protocol records under ``folder/records``, one list a config."""
    return [[r for r in recs if r["status"] == "ok"]
            for (_, _, protocol), recs in sorted(collect(folder).items())
            if protocol == "validation"]


def stopping_checks(results_dir: Path) -> list[list[str]]:
    """One row per seed run again with a later stop (the records under
    ``results_dir/checks/patience<N>/`` and ``epochs<N>/``, validation protocol) beside the
    record it checks: the same dataset, model and seed whose config differs only in the
    stopping fields, each set sooner (among several, the one that stops latest), from
    ``results_dir/records``, a config set aside under ``results_dir/variants``, or a tuning
    trial under ``results_dir/tuning`` (a trial the rule did not choose, run on to see whether
    its stop cut it). The base config's seeds give the scale of a gain; a trial's, which has
    one seed, is that of the row's current config."""
    results_dir = Path(results_dir)
    bases = []  # (record, the validation NDCG@20 of every seed of its config, where it is)
    row_seeds = {}  # (dataset, model) -> the current config's seeds, the scale for a trial
    for folder in store.config_roots(results_dir):
        where = "current" if folder == results_dir else f"{store.VARIANTS}/{folder.name}"
        for recs in _finished_validation(folder):
            seeds = [x["val"]["ndcg@20"] for x in recs]
            bases += [(r, seeds, where) for r in recs]
            if folder == results_dir and recs:
                row_seeds[(recs[0]["dataset"], recs[0]["model"])] = seeds
    # a tuning trial (one seed) run again with a later stop: was it cut, or beaten?
    for trial in sorted(p for p in (results_dir / "tuning").glob("*/*/*") if p.is_dir()):
        for folder in store.config_roots(trial):
            where = folder.relative_to(results_dir).as_posix()
            for recs in _finished_validation(folder):
                bases += [(r, row_seeds.get((r["dataset"], r["model"]), []), where)
                          for r in recs]
    rows = []
    for check_dir in sorted(p for p in (results_dir / "checks").glob("*")
                            if STOPPING_CHECK.fullmatch(p.name)):
        checks = [c for folder in store.config_roots(check_dir)
                  for recs in _finished_validation(folder) for c in recs]
        for check in checks:
            key = (check["dataset"], check["model"], check["seed"])
            found = [b for b in bases if (b[0]["dataset"], b[0]["model"], b[0]["seed"]) == key
                     and _stops_sooner(b[0], check)]
            if found:
                base, seeds, where = max(found, key=lambda b: [b[0]["config"]["train"][k]
                                                               for k in store.STOPPING_FIELDS])
                rows.append(_check_row(base, seeds, where, check, check_dir.name))
    order = {name: i for i, name in enumerate(PAPER_NAMES)}
    return sorted(rows, key=lambda r: (r[0], order.get(r[1], len(order)), r[1], r[3], r[2],
                                       r[5]))


def _check_row(base: dict, seeds: list[float], where: str, check: dict, folder: str) -> list:
    v0, v1 = 100 * base["val"]["ndcg@20"], 100 * check["val"]["ndcg@20"]
    if base["selected_epoch"] == check["selected_epoch"]:
        outcome = "the same state"
    else:
        std = 100 * float(np.std(seeds, ddof=1)) if len(seeds) > 1 else float("nan")
        whose = "the row's" if where.startswith("tuning/") else "the"
        scale = (f" ({(v1 - v0) / std:+.1f} × {whose} {len(seeds)} seeds' std, {std:.3f})"
                 if std > 0 else "")
        outcome = f"a later state: {v1 - v0:+.3f} points{scale}"
    return [base["dataset"], base["model"], base["seed"], where,
            config_changes(base["config"], check["config"]), f"checks/{folder}",
            f"{base['selected_epoch']}/{base['epochs_run']} → "
            f"{check['selected_epoch']}/{check['epochs_run']}",
            f"{v0:.3f} → {v1:.3f}",
            f"{100 * base['test']['hr@20']:.2f} → {100 * check['test']['hr@20']:.2f}",
            f"{100 * base['test']['ndcg@20']:.2f} → {100 * check['test']['ndcg@20']:.2f}",
            outcome]


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
        "## Early-stopping checks",
        "",
        "A seed run again with a later stop (`checks/patience<N>/`, `checks/epochs<N>/`: the",
        "plan's `*-patience*` jobs, each on the seed of its config that stopped first), beside",
        "the record it checks: the same seed of the config that differs from it only in its",
        "stopping settings (among several, the one that stops latest), current or set aside",
        "(`variants/<config hash>`: the fields in which it differs are under \"Other configs'",
        "records\"). Selected epoch / epochs run, validation NDCG@20 and test metrics in % (the",
        "earlier stop → the later one). A later state with a higher validation NDCG@20 means the",
        "earlier stop cut that run; the std of the validation NDCG@20 over the seeds of the",
        "earlier config gives its scale. Test is shown, never used to choose.",
        "",
        tabulate(stopping_checks(results_dir), headers=[
            "dataset", "model", "seed", "config", "stop (earlier → later)", "folder",
            "selected / run", "val NDCG@20 %", "test HR@20 %", "test NDCG@20 %", "outcome"],
            tablefmt="github") if (Path(results_dir) / "checks").is_dir() else "(none)",
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
