"""Table 1 from stored records: cells, significance tests and the Markdown, CSV and LaTeX renderings.

Pure functions of the records under ``<results>/records`` (and the paper's cells shipped in
``harness/paper/table1.csv``): nothing here trains or evaluates.

- A cell is one (dataset, model) under one protocol: test HR@20 and NDCG@20 over the finished
  seeds (failed runs are counted, never averaged in).
- DreamRec is compared with each baseline per dataset x metric: Welch's t-test over the seeds'
  means, and a paired sign-flip permutation test whose unit is the test sequence (each
  sequence's mean over its rows of the per-row metric averaged over seeds; the rows are the
  same for every model, and a sequence's rows are its prefixes, so they are not independent);
  both Holm-corrected across the baselines of that dataset x metric.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from harness import store
from harness.errors import HarnessError
from harness.evaluate import COVERAGE_K, row_metrics
from harness.report import PAPER_NAMES, paper_cells
from harness.stats import N_FLIPS, holm, mean_std, relative_improvement, sequence_sign_flip_p, welch_p

METRICS = ("hr@20", "ndcg@20")
METRIC_LABEL = {"hr@20": "HR@20", "ndcg@20": "NDCG@20"}
PAPER_KEY = {"hr@20": "hr20", "ndcg@20": "ndcg20"}
ALPHA = 0.05
#: seed of the Monte-Carlo sign flips, the same for every comparison (p does not depend on order)
PERM_SEED = 0
OURS = "dreamrec"
#: the mark of a cell with a record made before the table's ``since`` (older code)
OLDER = "°"
#: rows that are the harness's own code (no IPS or AdaRanker recommender in the DreamRec or DROS
#: releases; the DreamRec release holds AdaRanker's modules and a propensity, unused)
HARNESS_CODE = ("ips", "adaranker")
CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # harness.models.CONFIG_DIR, without torch
#: rows of a model under a config file of their own: row key -> (model, the file in
#: harness/configs/<dataset>/, label). A dataset without the file shows "—" in the row.
PRESET_ROWS = {"dreamrec.authors": ("dreamrec", "dreamrec.authors.toml", "DreamRec, authors' preset")}
BEYOND_ROWS = {
    "dreamrec.detached": ("dreamrec", "dreamrec.detached.toml", "DreamRec, detached targets"),
    "dreamrec.sphere": ("dreamrec", "dreamrec.sphere.toml", "DreamRec, targets on a sphere"),
    "dreamrec.sasrec": ("dreamrec", "dreamrec.sasrec.toml", "DreamRec, frozen SASRec items"),
}
CONFIG_ROWS = {**PRESET_ROWS, **BEYOND_ROWS}
#: the block of rows under the paper's: generative models and settings the paper does not have
BEYOND_TITLE = "Beyond the paper"


def row_model(row: str) -> str:
    """The model behind a row key (a config row's key is ``<model>.<name>``)."""
    return CONFIG_ROWS[row][0] if row in CONFIG_ROWS else row


def preset_file(row: str, dataset: str) -> Path:
    """The config file of config row ``row`` on ``dataset`` (it may not exist)."""
    return CONFIG_DIR / dataset / CONFIG_ROWS[row][1]


def is_beyond(row: str) -> bool:
    """A row of the "beyond the paper" block: a model the paper has no row for, or one of
    :data:`BEYOND_ROWS`."""
    return row in BEYOND_ROWS or (row not in PRESET_ROWS and row not in PAPER_NAMES)


#: the names of the registered models the paper has no row for, in the order shown
BEYOND_NAMES = {"preferdiff": "PreferDiff", "diffurec": "DiffuRec"}


def row_label(model: str) -> str:
    if model in CONFIG_ROWS:
        return CONFIG_ROWS[model][2]
    name = PAPER_NAMES.get(model) or BEYOND_NAMES.get(model, model)
    return name + (" ‡" if model in HARNESS_CODE else "")


@dataclass
class Cell:
    """One model on one dataset under one protocol."""

    dataset: str
    model: str
    values: dict[str, list[float]] = field(default_factory=dict)  # metric -> per-seed test value
    row_means: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> [n_rows] over seeds
    seeds: list[int] = field(default_factory=list)
    failed: int = 0
    devices: set[str] = field(default_factory=set)
    config_hashes: set[str] = field(default_factory=set)
    #: the [model] settings of each config among the records (usually one)
    model_configs: list[dict[str, Any]] = field(default_factory=list)
    n_items: int = 0
    data_checksum: str | None = None
    #: each finished record's "created" time (ISO 8601)
    created: list[str] = field(default_factory=list)
    #: the epochs of the records trained without early stopping (a patience that outlasts
    #: max_epochs: :func:`harness.store.fixed_epochs`), one entry each
    full_length: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.seeds)

    def mean(self, metric: str) -> float:
        return mean_std(self.values[metric])[0]


def check_record(path: Path) -> tuple[dict[str, Any] | None, np.ndarray | None, str | None]:
    """A record, its per-row ranks, and why it cannot be used (None when it can).

    A record is refused when its JSON is unreadable or not a record, its ``.npz`` is missing or
    unreadable, or its test metrics are not the ones its per-row ranks give (a hand-edited or
    damaged record): nothing is averaged from such a file."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, ValueError) as e:
        return None, None, f"not readable JSON ({type(e).__name__}; truncated?)"
    if not isinstance(raw, dict) or raw.get("schema") != store.SCHEMA:
        return None, None, "not a record of this harness (no schema 1)"
    if raw.get("status") != "ok":
        return raw, None, None
    try:
        ranks = store.read_ranks(path)
    except (OSError, KeyError, ValueError) as e:
        return None, None, f"its per-row ranks {path.with_suffix('.npz').name} are missing or unreadable ({type(e).__name__})"
    try:
        test = {m: float(raw["test"][m]) for m in METRICS}
        rows = row_metrics(ranks, (20,))
    except (KeyError, TypeError, ValueError):
        return None, None, "its test metrics are missing"
    bad = [m for m in METRICS if not np.isclose(test[m], float(rows[m].mean()), rtol=1e-6, atol=1e-9)]
    if bad:
        return None, None, (f"its test {', '.join(METRIC_LABEL[m] for m in bad)} differ from what "
                            f"its per-row ranks give (hand-edited or damaged)")
    return raw, ranks, None


def load_cells(results_dir: Path, protocol: str, datasets: list[str], models: list[str],
               homes: dict[tuple[str, str], Path] | None = None,
               rejected: list[tuple[Path, str]] | None = None) -> dict[tuple[str, str], Cell]:
    """Every (dataset, model) with at least one record under ``protocol``, read from
    ``homes[(dataset, model)]`` (a results folder; default ``results_dir``; a config row
    (:data:`CONFIG_ROWS`) is read only from its home, never from the default). Records that
    cannot be used are left out and appended to ``rejected`` as (path, reason)."""
    cells: dict[tuple[str, str], Cell] = {}
    for dataset in datasets:
        for model in models:
            if model in CONFIG_ROWS and (dataset, model) not in (homes or {}):
                continue
            root = (homes or {}).get((dataset, model), Path(results_dir))
            folder = store.records_dir(root, dataset, row_model(model)) / protocol
            cell = Cell(dataset, model)
            per_row: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
            for path in sorted(folder.glob("seed*.json")):
                rec, ranks, why = check_record(path)
                if why is not None:
                    if rejected is not None:
                        rejected.append((path, why))
                    continue
                if rec.get("status") != "ok":
                    cell.failed += 1
                    continue
                cell.seeds.append(int(rec["seed"]))
                cell.created.append(str(rec.get("created", "")))
                cell.n_items = int(rec.get("n_items", 0))
                cell.data_checksum = rec.get("data_checksum")
                cell.devices.add(record_devices(rec))
                if str(rec.get("config_hash")) not in cell.config_hashes:
                    cell.model_configs.append(dict(rec.get("config", {}).get("model", {})))
                cell.config_hashes.add(str(rec.get("config_hash")))
                if epochs := store.fixed_epochs(rec.get("config", {}).get("train", {})):
                    cell.full_length.append(epochs)
                rows = row_metrics(ranks, (20,))
                if "coverage@20" in rec["test"]:
                    cell.values.setdefault("coverage@20", []).append(float(rec["test"]["coverage@20"]))
                for m in METRICS:
                    cell.values.setdefault(m, []).append(float(rec["test"][m]))
                    per_row[m].append(rows[m])
            if cell.n or cell.failed:
                for m in METRICS:
                    if per_row[m] and len({a.shape for a in per_row[m]}) == 1:
                        cell.row_means[m] = np.mean(per_row[m], axis=0)
                cells[(dataset, model)] = cell
    return cells


@dataclass
class Comparison:
    """DreamRec against one baseline on one dataset x metric."""

    dataset: str
    metric: str
    baseline: str
    welch_p: float
    seq_perm_p: float  # NaN when the test rows' sequences are not known
    welch_p_holm: float = float("nan")
    seq_perm_p_holm: float = float("nan")


def _tests(ours: Cell, base: Cell, dataset: str, metric: str,
           sequences: dict[str, np.ndarray] | None) -> Comparison:
    """Welch over seeds and the sign flips over test sequences, ``ours`` against ``base``."""
    w = welch_p(ours.values[metric], base.values[metric])
    x, y = ours.row_means.get(metric), base.row_means.get(metric)  # [n_rows]
    seq = (sequences or {}).get(dataset)
    r = (sequence_sign_flip_p(x, y, seq, np.random.default_rng(PERM_SEED))
         if x is not None and y is not None and seq is not None
         and x.shape == y.shape == seq.shape else float("nan"))
    return Comparison(dataset, metric, base.model, w, r)


def _holm(family: list[Comparison]) -> None:
    for attr in ("welch_p", "seq_perm_p"):
        for c, adj in zip(family, holm([getattr(c, attr) for c in family])):
            setattr(c, f"{attr}_holm", adj)


def compare(cells: dict[tuple[str, str], Cell], datasets: list[str], models: list[str],
            sequences: dict[str, np.ndarray] | None = None) -> dict[tuple[str, str, str], Comparison]:
    """(dataset, metric, baseline) -> DreamRec's tests against that baseline, Holm-corrected
    across the baselines of the dataset x metric. ``sequences``: dataset -> [n_test_rows] each
    test row's sequence id; a dataset without it gets no sequence test (NaN)."""
    out: dict[tuple[str, str, str], Comparison] = {}
    for dataset in datasets:
        ours = cells.get((dataset, OURS))
        if ours is None or ours.n == 0:
            continue
        for metric in METRICS:
            family = [_tests(ours, cells[(dataset, m)], dataset, metric, sequences)
                      for m in models if m != OURS and (dataset, m) in cells
                      and cells[(dataset, m)].n]
            _holm(family)
            for c in family:
                out[(dataset, metric, c.baseline)] = c
    return out


def compare_beyond(cells: dict[tuple[str, str], Cell], datasets: list[str], models: list[str],
                   beyond: list[str], sequences: dict[str, np.ndarray] | None = None
                   ) -> dict[tuple[str, str, str], Comparison]:
    """(dataset, metric, row) -> a "beyond the paper" row's tests against the best baseline of
    the column (the best paper row other than DreamRec), Holm-corrected across the block's rows
    of the dataset x metric."""
    out: dict[tuple[str, str, str], Comparison] = {}
    for dataset in datasets:
        for metric in METRICS:
            best = best_baseline(cells, dataset, metric, models)
            if best is None:
                continue
            family = {row: _tests(cells[(dataset, row)], cells[(dataset, best)], dataset,
                                  metric, sequences)
                      for row in beyond if (dataset, row) in cells and cells[(dataset, row)].n}
            _holm(list(family.values()))
            out.update({(dataset, metric, row): c for row, c in family.items()})
    return out


def rankable(cells: dict[tuple[str, str], Cell], dataset: str, model: str) -> bool:
    """Whether the model's cell takes part in ranking and in "best baseline": it has results,
    and more than one seed unless no cell of the table has more (a one-seed mean among
    several-seed means is one draw with no spread to test: a row whose new config has only its
    tuning trial yet is shown, marked "(1 seed)", and ranked once its seeds land)."""
    cell = cells.get((dataset, model))
    if cell is None or cell.n == 0:
        return False
    return cell.n > 1 or max(c.n for c in cells.values()) == 1


def best_baseline(cells: dict[tuple[str, str], Cell], dataset: str, metric: str,
                  models: list[str]) -> str | None:
    cands = [m for m in models if m != OURS and rankable(cells, dataset, m)]
    return max(cands, key=lambda m: cells[(dataset, m)].mean(metric)) if cands else None


def _ranked(cells, dataset: str, metric: str, models: list[str]) -> list[str]:
    """The models ranked in the column (:func:`rankable`), best first."""
    have = [m for m in models if rankable(cells, dataset, m)]
    return sorted(have, key=lambda m: -cells[(dataset, m)].mean(metric))


def _placed(cells, dataset: str, metric: str, models: list[str]) -> list[str]:
    """The column's best and second model, or [] when fewer than two models have results (one
    model alone is not "best" of anything)."""
    ranked = _ranked(cells, dataset, metric, models)
    return ranked[:2] if len(ranked) > 1 else []


@dataclass
class Table:
    """Everything one rendering needs, for one protocol."""

    protocol: str
    datasets: list[str]
    models: list[str]
    cells: dict[tuple[str, str], Cell]
    comparisons: dict[tuple[str, str, str], Comparison]
    missing_data: dict[str, str]  # dataset -> reason its files are missing
    quick: bool = False
    #: dataset -> test metrics of the most-popular reference (harness.evaluate.most_popular)
    references: dict[str, dict[str, float]] = field(default_factory=dict)
    #: dataset -> [n_test_rows] bool, the test rows whose target never occurs as a training target
    cold_rows: dict[str, np.ndarray] = field(default_factory=dict)
    #: dataset -> [n_test_rows] int64, each test row's sequence (the unit of the † test)
    sequences: dict[str, np.ndarray] = field(default_factory=dict)
    #: dataset -> (each test row's popularity group, the groups' labels): 0 never a training
    #: target, 1..5 the fifths of the other rows by their target's count (:func:`popularity_groups`)
    target_groups: dict[str, tuple[np.ndarray, list[str]]] = field(default_factory=dict)
    #: record files left out, with the reason (unreadable, hand-edited, ...)
    rejected: list[tuple[Path, str]] = field(default_factory=list)
    #: rows shown under ``models``, not ranked with them: preset rows (:data:`PRESET_ROWS`),
    #: not tested, then the "beyond the paper" block (:func:`is_beyond`), each tested against
    #: the best baseline of the column (``beyond_comparisons``)
    extras: list[str] = field(default_factory=list)
    beyond_comparisons: dict[tuple[str, str, str], Comparison] = field(default_factory=dict)
    #: a time (timezone-aware): cells with a record made before it are marked OLDER
    since: datetime | None = None
    #: (dataset, row) of the cells with a record of a config other than the row's as it is now
    #: (its config file changed since: a patience raised, a setting tuned), marked OLDER too
    stale: set[tuple[str, str]] = field(default_factory=set)

    def older(self, cell: Cell | None) -> bool:
        """Whether ``cell`` has a record made before :attr:`since` (an undated one counts) or
        of another config than its row's now (:attr:`stale`)."""
        if cell is None:
            return False
        if (cell.dataset, cell.model) in self.stale:
            return True
        if self.since is None:
            return False
        return any(not c or datetime.fromisoformat(c) < self.since for c in cell.created)

    @property
    def presets(self) -> list[str]:
        return [r for r in self.extras if not is_beyond(r)]

    @property
    def beyond(self) -> list[str]:
        return [r for r in self.extras if is_beyond(r)]

    @property
    def rows(self) -> list[str]:
        """Every row in the order shown: the paper's, the presets, the block beyond."""
        return self.models + self.presets + self.beyond

    def beyond_marker(self, dataset: str, metric: str, row: str) -> str:
        c = self.beyond_comparisons.get((dataset, metric, row))
        if c is None:
            return ""
        return ("*" if c.welch_p_holm < ALPHA else "") + ("†" if c.seq_perm_p_holm < ALPHA else "")

    def data_missing(self, dataset: str) -> bool:
        """The dataset's files are missing and no record of it is here either: its cells say
        "data missing" (with records, they show the records, the others "not run")."""
        return dataset in self.missing_data and not any(
            c.n or c.failed for (d, _), c in self.cells.items() if d == dataset)

    def set_data(self, references: dict[str, dict[str, float]], cold_rows: dict[str, np.ndarray],
                 sequences: dict[str, np.ndarray],
                 target_groups: dict[str, tuple[np.ndarray, list[str]]] | None = None) -> None:
        """Attach what comes from the datasets' files (or their kept references) rather than the
        records, and redo the comparisons with the test rows' sequences."""
        self.references, self.cold_rows, self.sequences = references, cold_rows, sequences
        self.target_groups = dict(target_groups or {})
        self.comparisons = compare(self.cells, self.datasets, self.models, sequences)
        self.beyond_comparisons = compare_beyond(self.cells, self.datasets, self.models,
                                                 self.beyond, sequences)

    def marker(self, dataset: str, metric: str) -> str:
        """'*' Welch and/or '†' sequence test significant (Holm, alpha 0.05) against the best
        baseline."""
        best = best_baseline(self.cells, dataset, metric, self.models)
        c = self.comparisons.get((dataset, metric, best)) if best else None
        if c is None:
            return ""
        return ("*" if c.welch_p_holm < ALPHA else "") + ("†" if c.seq_perm_p_holm < ALPHA else "")


def build(results_dir: Path, protocol: str, datasets: list[str], models: list[str],
          missing_data: dict[str, str], quick: bool = False,
          homes: dict[tuple[str, str], Path] | None = None,
          extras: list[str] | None = None) -> Table:
    """One protocol's table from the records (``homes``: where each cell's records are, see
    :func:`load_cells`), with the preset rows ``extras`` under the models'. A dataset whose
    files are missing still shows the cells it has records for."""
    rejected: list[tuple[Path, str]] = []
    extras = list(extras or [])
    cells = load_cells(results_dir, protocol, datasets, models + extras, homes, rejected)
    t = Table(protocol, datasets, models, cells, compare(cells, datasets, models),
              missing_data, quick, rejected=rejected, extras=extras)
    t.beyond_comparisons = compare_beyond(cells, datasets, models, t.beyond)
    return t


def _cell_text(t: Table, dataset: str, model: str, metric: str, bold, under, fmt=str,
               mark=str) -> str:
    """A cell's "mean ± std" (``fmt`` renders it), best of a column of two or more ``bold``,
    second ``under``, DreamRec's significance marks through ``mark``; or why it is empty."""
    cell = t.cells.get((dataset, model))
    if model in CONFIG_ROWS and not preset_file(model, dataset).is_file():
        return "—"  # no such config for this dataset
    if (cell is None or cell.n == 0) and t.data_missing(dataset):
        return "data missing"
    if cell is None or cell.n == 0:
        return "not run" if cell is None else f"failed ({cell.failed})"
    m, s = mean_std(np.asarray(cell.values[metric]) * 100)
    text = f"{m:.2f} ± {s:.2f}" if cell.n > 1 else f"{m:.2f} (1 seed)"
    most = max(c.n for c in t.cells.values())
    if 1 < cell.n < most:  # a cell still missing seeds says so
        text += f" ({cell.n} seeds)"
    text = fmt(text)
    placed = _placed(t.cells, dataset, metric, t.models)
    if placed and placed[0] == model:
        text = bold(text)
    elif placed and placed[1] == model:
        text = under(text)
    if t.older(cell):
        text += mark(OLDER)
    if model == OURS and t.marker(dataset, metric):
        text += mark(t.marker(dataset, metric))
    if t.beyond_marker(dataset, metric, model):
        text += mark(t.beyond_marker(dataset, metric, model))
    return text


def _paper_text(dataset: str, model: str, metric: str, paper) -> str:
    if is_beyond(model):
        return "—"  # the paper has no such row
    model = row_model(model)  # a preset row shows its model's published cell
    cell = paper.get((PAPER_NAMES.get(model, model), dataset))
    if cell is None:
        return "—"
    k = PAPER_KEY[metric]
    return f"{cell[k + '_mean']:.2f} ± {cell[k + '_std']:.2f}"


def _title(t: Table) -> str:
    sel = ("validation-selected (best validation NDCG@20; test evaluated once, on that state)"
           if t.protocol == "validation" else
           "PUBLISHED PROTOCOL: test-selected (the evaluation with the best test NDCG@20), "
           "optimistic; shown to measure the selection gap")
    return ("QUICK LOOK (short budget, not comparable to the paper) -- " if t.quick else "") + sel


#: what the selection gap can and cannot show, in the notes of every table
SELECTION_GAP_NOTE = (
    "Selection gap (published protocol minus validation-selected): a lower bound on what "
    "selecting on test adds. Every run here stops with validation's early stopping, and the "
    "published protocol picks the best test evaluation among the ones that run made; the "
    "official DreamRec code trains 1,000 epochs without stopping and reads the best test "
    "printout of all of them.")


def full_length_note(t: Table) -> str | None:
    """The rows of ``t`` whose records trained without early stopping, for the selection-gap
    note (their published protocol reads every epoch, as the official code does); None when
    there are none."""
    rows = [f"{d} {row_label(m)} ({'/'.join(str(e) for e in sorted(set(c.full_length)))} "
            f"epochs)" for d in t.datasets for m in t.rows
            if (c := t.cells.get((d, m))) and c.full_length]
    return (f"Trained without early stopping, every run to its max_epochs (its published "
            f"protocol reads every epoch's test, as the official code does, so no lower bound): "
            f"{'; '.join(rows)}." if rows else None)


def same_config(cells: dict[tuple[str, str], Cell], dataset: str, row: str) -> bool:
    """A config row (a preset) whose records are its model's row's own: both have records,
    of one config hash (the tuning rule chose the published setting itself)."""
    own, preset = cells.get((dataset, row_model(row))), cells.get((dataset, row))
    return bool(own and preset and own.n and preset.n and preset.config_hashes
                and own.config_hashes == preset.config_hashes)


def footnotes(t: Table) -> list[str]:
    seeds = sorted({c.n for c in t.cells.values() if c.n})
    devices = sorted({d for c in t.cells.values() for d in c.devices})
    notes = [
        f"Test HR@20 and NDCG@20 in %, mean ± sample std over seeds ({', '.join(map(str, seeds)) or 'no'} "
        f"seeds per cell); full ranking over all items; {_title(t)}. Device(s): "
        f"{', '.join(devices) or '—'}. The paper's columns are its Table 1.",
        "Bold: best of our rows in the column; underlined: second; a column with results for "
        "fewer than two models is not ranked, nor is a one-seed cell among cells of several "
        "seeds (it is not the best baseline either until its seeds land).",
        f"On DreamRec's cells, * marks a difference to the best baseline of the column (better "
        f"or worse: the last row gives its sign and size) with p < {ALPHA} in Welch's t-test "
        f"over seeds, † the same in a paired sign-flip permutation test whose unit is the test "
        f"sequence (a sequence's test rows are its prefixes, not independent draws), both after "
        f"Holm's correction across the baselines; every p-value is in table1.csv.",
        f"The † test: per sequence, the mean over its rows of each row's metric averaged over "
        f"seeds; the differences DreamRec minus baseline, one per sequence, in a two-sided test "
        f"of |sum of the differences| under random signs (exact over all sign assignments when "
        f"there are at most {N_FLIPS:,} of them, else {N_FLIPS:,} seeded random ones with p = "
        f"(1 + hits) / (1 + {N_FLIPS:,})); a sequence with a zero difference adds nothing to "
        f"the statistic but stays in the sample.",
        SELECTION_GAP_NOTE,
        *filter(None, [full_length_note(t)]),
    ]
    older = [f"{d} {row_label(m)}" for d in t.datasets for m in t.rows
             if t.older(t.cells.get((d, m))) and t.cells[(d, m)].n]
    if older:
        made = (f"made before {t.since.isoformat()} (--since), on the code of that time or older, "
                f"or " if t.since else "")
        notes.append(f"{OLDER} A record {made}made with settings other than the row's config as "
                     f"it is now (its file changed since) is among the cell's: "
                     + "; ".join(older) + ".")
    for row in t.presets:
        model = PAPER_NAMES.get(row_model(row), row_model(row))
        notes.append(f"{row_label(row)}: {model} with the settings its authors published for the "
                     f"dataset (harness/configs/<dataset>/{PRESET_ROWS[row][1]}), not tuned here; "
                     f"trained, selected and evaluated as every row; not ranked, not tested; — "
                     f"where no setting was published for the dataset.")
        same = [d for d in t.datasets if same_config(t.cells, d, row)]
        if same:
            notes.append(f"{row_label(row)}: on {', '.join(same)} the tuning rule chose the "
                         f"published setting itself, so the two rows are one config (one config "
                         f"hash) and show the same records.")
    if t.beyond:
        notes.append(f"{BEYOND_TITLE}: generative rows the paper does not have ("
                     + ", ".join(row_label(r) for r in t.beyond) + "), tuned by the same rule "
                     "and run on the same splits; not ranked with the paper's rows. On their "
                     "cells * and † mark a difference to the best baseline of the column (the "
                     "best paper row other than DreamRec) in the same two tests, Holm-corrected "
                     "across the rows of this block; every p-value is in table1.csv.")
    for d in t.datasets:
        cov = [f"{row_label(m)} {100 * np.mean(t.cells[(d, m)].values['coverage@20']):.1f}"
               for m in t.rows
               if (d, m) in t.cells and "coverage@20" in t.cells[(d, m)].values]
        if cov:
            notes.append(f"{d}, top-20 coverage (% of the items in at least one test row's top "
                         f"20; a model ranking every row alike covers {_one_list_pct(t, d):.1f} %), "
                         f"mean over seeds: {', '.join(cov)}.")
    for d, ref in t.references.items():
        notes.append(f"{d}, most-popular reference (the same list for every row, by training-"
                     f"target counts; no training): HR@20 {100 * ref['hr@20']:.2f}, NDCG@20 "
                     f"{100 * ref['ndcg@20']:.2f}.")
    if any(m in HARNESS_CODE for m in t.models):
        notes.append("‡ The harness's own code: neither the DreamRec nor the DROS release has an "
                     "IPS or an AdaRanker recommender (the DreamRec release holds AdaRanker's "
                     "NeuProcessEncoder and MemoryUnit modules and a popularity propensity, all "
                     "unused); see baselines/ips.py and baselines/adaranker.py for where each "
                     "part comes from." + _propensities(t))
    for d in t.datasets:
        if d not in t.sequences and any(c.dataset == d for c in t.comparisons.values()):
            notes.append(f"{d}: no † test: its test rows' sequences come from its files or from "
                         f"references/{d}.json, and neither is here (run python -m "
                         f"harness.reproduce_table1 --render-only where the files are).")
    for d, why in t.missing_data.items():
        needs = [x for x, got in (("the most-popular reference", d in t.references),
                                  ("the never-trained-target split", d in t.cold_rows)) if not got]
        if t.data_missing(d):
            notes.append(f"{d}: data missing ({why}).")
        elif needs:  # rendered from the records; what needs the data says so
            notes.append(f"{d}: its files are not here ({why}); its cells come from the records, "
                         f"{' and '.join(needs)} need the files (--data-dir).")
    for path, why in t.rejected:
        notes.append(f"Left out, not averaged: {Path(path).as_posix()}: {why}.")
    return notes


def _propensities(t: Table) -> str:
    """" IPS's propensity in these records: <dataset> <kind>, ..." (from the records' own
    settings: sequential is S-IPS's p(target | history), popularity the DreamRec code's), or ""."""
    kinds = []
    for d in t.datasets:
        cell = t.cells.get((d, "ips"))
        if cell is not None and cell.n:
            found = sorted({str(c["propensity"]) if "propensity" in c else
                            f"sequential, the earlier design (a fixed clip of "
                            f"{c.get('propensity_clip', '?')})" for c in cell.model_configs})
            kinds.append(f"{d} {' and '.join(found)}")
    return f" IPS's propensity in these records: {', '.join(kinds)}." if kinds else ""


def _n_items(t: Table, dataset: str) -> int:
    for (d, _), c in t.cells.items():
        if d == dataset and c.n_items:
            return c.n_items
    return 0


def _one_list_pct(t: Table, dataset: str) -> float:
    """coverage@20 in % of a model that shows every row the same 20 items."""
    return 100 * COVERAGE_K / max(1, _n_items(t, dataset))


def _improvement_row(t: Table, fmt=lambda s: s) -> list[str]:
    row = [fmt("DreamRec vs best baseline")]
    for d in t.datasets:
        for metric in METRICS:
            best = best_baseline(t.cells, d, metric, t.models)
            ours = t.cells.get((d, OURS))
            if best is None or ours is None or ours.n == 0:
                row += ["—", ""]
                continue
            rel = relative_improvement(ours.mean(metric), t.cells[(d, best)].mean(metric))
            row += [f"{100 * rel:+.1f} % ({best})", ""]
    return row


def markdown(t: Table) -> str:
    paper = paper_cells()
    head = ["model"]
    for d in t.datasets:
        for metric in METRICS:
            head += [f"{d} {METRIC_LABEL[metric]}", "paper"]
    body = []
    for model in t.rows:
        if t.beyond and model == t.beyond[0]:
            body.append([f"*{BEYOND_TITLE}*"] + [""] * (len(head) - 1))
        row = [row_label(model)]
        for d in t.datasets:
            for metric in METRICS:
                row += [_cell_text(t, d, model, metric, lambda s: f"**{s}**", lambda s: f"<u>{s}</u>"),
                        _paper_text(d, model, metric, paper)]
        body.append(row)
    body.append(_improvement_row(t, lambda s: f"*{s}*"))
    return (tabulate(body, headers=head, tablefmt="github") + "\n\n"
            + "\n".join(f"- {n}" for n in footnotes(t)) + "\n")


#: characters LaTeX reads as commands, and the non-ASCII ones the tables use: everything the
#: .tex files hold is ASCII, so they compile under any input encoding
_TEX = {"\\": r"\textbackslash{}", "%": r"\%", "_": r"\_", "&": r"\&", "#": r"\#", "$": r"\$",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "<": "$<$", ">": "$>$", "|": "$|$", "*": "$^*$", "`": "'", "/": r"/\allowbreak{}",
        "±": r"$\pm$", "†": r"$^\dagger$", "‡": r"$^\ddagger$", "—": "---", "–": "--",
        "−": "$-$", "×": r"$\times$", "≤": r"$\leq$", "≥": r"$\geq$", "≈": r"$\approx$",
        "·": r"$\cdot$", "°": r"$^\circ$", "…": r"\dots{}", "’": "'", "‘": "`", "“": "``", "”": "''"}


def _tex_escape(s: str) -> str:
    """``s`` as LaTeX text (see :data:`_TEX`); a slash may break a line."""
    return "".join(_TEX.get(ch, ch) for ch in s)


def _tex_marks(marks: str) -> str:
    """Significance marks ("*", "†") as one superscript."""
    return "$^{" + marks.replace("†", r"\dagger").replace(OLDER, r"\circ") + "}$"


TEX_NO_RESULT = "--"  # a cell without a result (not run, failed, data missing; table1.md says which)


def _tex_label(model: str) -> str:
    if model in CONFIG_ROWS or model in BEYOND_NAMES:
        return _tex_escape(row_label(model))
    mark = r"$^\ddagger$" if model in HARNESS_CODE else ""
    return _tex_escape(PAPER_NAMES.get(model, model)) + mark


def _tex_tabular(datasets: list[str], rows: list[list[str]], last: list[str] | None,
                 extra: list[list[str]] | None = None,
                 beyond: list[list[str]] | None = None) -> list[str]:
    """A booktabs tabular in the paper's layout, one row per model, HR@20 and NDCG@20 under
    each dataset (then the ``extra`` rows, the ``beyond`` block under its title, and ``last``,
    each after a rule), scaled down to the line width when wider (graphicx)."""
    head = [" & " + " & ".join(rf"\multicolumn{{2}}{{c}}{{{_tex_escape(d)}}}" for d in datasets)
            + r" \\",
            "".join(rf"\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(len(datasets))),
            "Model & " + " & ".join(METRIC_LABEL[m] for _ in datasets for m in METRICS) + r" \\"]
    lines = [r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
             r"\begin{tabular}{l" + "c" * 2 * len(datasets) + "}", r"\toprule", *head, r"\midrule"]
    lines += [" & ".join(r) + r" \\" for r in rows]
    if extra:
        lines += [r"\midrule"] + [" & ".join(r) + r" \\" for r in extra]
    if beyond:
        lines += [r"\midrule", rf"\multicolumn{{{1 + 2 * len(datasets)}}}{{l}}"
                  rf"{{\emph{{{BEYOND_TITLE}}}}} \\"] + [" & ".join(r) + r" \\" for r in beyond]
    if last is not None:
        lines += [r"\midrule", " & ".join(last) + r" \\"]
    return lines + [r"\bottomrule", r"\end{tabular}}"]


def _tex_header(what: str, source: str = "the records") -> list[str]:
    return [f"% Table 1, {what}: written by python -m harness.reproduce_table1 from {source}; "
            f"do not edit.",
            r"% \input it inside a table environment; needs \usepackage{booktabs} and "
            r"\usepackage{graphicx}."]


def latex_body(t: Table) -> str:
    """One protocol's Table 1 as a tabular to \\input into a paper: a row per model, HR@20 and
    NDCG@20 (%) per dataset as mean ± std over seeds, best in bold and second underlined
    (columns of two or more models), DreamRec's significance marks, and its relative difference
    to the best baseline as the last row."""
    rows = []
    for model in t.rows:
        row = [_tex_label(model)]
        for d in t.datasets:
            for metric in METRICS:
                cell = t.cells.get((d, model))
                row.append(TEX_NO_RESULT if cell is None or cell.n == 0 else _cell_text(
                    t, d, model, metric, lambda s: rf"\textbf{{{s}}}",
                    lambda s: rf"\underline{{{s}}}", _tex_escape, _tex_marks))
        rows.append(row)
    n, k = len(t.models), len(t.presets)
    rows, extra, beyond = rows[:n], rows[n:n + k], rows[n + k:]
    last = [r"DreamRec vs.\ best baseline"]
    for d in t.datasets:
        for metric in METRICS:
            best = best_baseline(t.cells, d, metric, t.models)
            ours = t.cells.get((d, OURS))
            if best is None or ours is None or ours.n == 0:
                last.append(TEX_NO_RESULT)
            else:
                rel = relative_improvement(ours.mean(metric), t.cells[(d, best)].mean(metric))
                last.append(rf"${100 * rel:+.1f}$\,\%")
    what = ("validation-selected" if t.protocol == "validation" else
            "published protocol (test-selected)")
    return "\n".join(_tex_header(what) + _tex_tabular(t.datasets, rows, last, extra, beyond)) + "\n"


PAPER_SOURCE = "harness/paper/table1.csv (the paper's Table 1)"


def latex_paper_body(t: Table) -> str:
    """The paper's own Table 1 cells in the same layout (its datasets and models among ``t``'s),
    for the reader to set beside :func:`latex_body`."""
    paper = paper_cells()
    datasets = [d for d in t.datasets if any((PAPER_NAMES.get(m, m), d) in paper for m in t.models)]
    if not datasets:
        return "\n".join(_tex_header("the paper's cells", PAPER_SOURCE)
                         + ["% none: the paper's Table 1 has none of these datasets"]) + "\n"
    rows = []
    for model in t.models:
        if not any((PAPER_NAMES.get(model, model), d) in paper for d in datasets):
            continue
        rows.append([_tex_escape(PAPER_NAMES.get(model, model))] + [  # the paper's rows: no ‡
            _tex_escape(_paper_text(d, model, metric, paper)).replace("---", TEX_NO_RESULT)
            for d in datasets for metric in METRICS])
    return "\n".join(_tex_header("the paper's cells", PAPER_SOURCE)
                     + _tex_tabular(datasets, rows, None)) + "\n"


def _body_name(stem: str, protocol: str) -> str:
    return f"{stem}-{'' if protocol == 'validation' else protocol + '-'}body.tex"


def latex_bodies(tables: list[Table], stem: str = "table1") -> dict[str, str]:
    """File name -> body: ``<stem>-body.tex`` (validation-selected), ``<stem>-published-body.tex``
    and ``<stem>-paper-body.tex``, for the protocols in ``tables``."""
    out = {_body_name(stem, t.protocol): latex_body(t) for t in tables}
    out[f"{stem}-paper-body.tex"] = latex_paper_body(tables[0])
    return out


def latex(tables: list[Table], stem: str = "table1") -> str:
    """A standalone LaTeX document with every body of :func:`latex_bodies` (the same text, so it
    compiles from any folder) in a table float with its caption, and the notes below each."""
    bodies = latex_bodies(tables, stem)
    parts = [r"\documentclass{article}", r"\usepackage[a4paper,margin=2cm]{geometry}",
             r"\usepackage{booktabs}", r"\usepackage{graphicx}",
             r"\renewcommand{\labelitemi}{$\bullet$}",  # the text bullet is a bitmap without cm-super
             r"\begin{document}", r"\sloppy"]
    for t in tables:
        name = _body_name(stem, t.protocol)
        notes = footnotes(t) + [
            "--: no result (not run, failed, or the dataset's files missing; table1.md says "
            "which). Last row: DreamRec's relative difference to the best baseline of the column "
            "(the best-ranked row other than DreamRec)."]
        title = _title(t)[0].upper() + _title(t)[1:]
        parts += [r"\begin{table}[!ht]", r"\centering", rf"\caption{{{_tex_escape(title)}}}",
                  bodies[name].rstrip("\n"), r"\end{table}",
                  r"\begin{itemize}\footnotesize\setlength{\itemsep}{0pt}"]
        parts += [rf"\item {_tex_escape(n)}" for n in notes] + [r"\end{itemize}", r"\clearpage"]
    paper = bodies[f"{stem}-paper-body.tex"]
    if r"\begin{tabular}" in paper:
        parts += [r"\begin{table}[!ht]", r"\centering",
                  r"\caption{The paper's Table 1 (HR@20 and NDCG@20 in \%, mean $\pm$ std as "
                  r"published), for comparison}", paper.rstrip("\n"), r"\end{table}"]
    return "\n".join(parts + [r"\end{document}"]) + "\n"


def csv_text(tables: list[Table]) -> str:
    """One row per protocol x dataset x row x metric, with every p-value. ``block``: "paper"
    (the paper's rows; a baseline's p-values are DreamRec's tests against it), "preset", or
    "beyond" (a row's own tests against the column's best baseline)."""
    paper = paper_cells()
    fields = ["protocol", "quick", "dataset", "block", "model", "metric", "seeds", "failed", "mean_pct",
              "std_pct", "paper_mean_pct", "paper_std_pct", "rank", "welch_p", "welch_p_holm",
              "seq_perm_p", "seq_perm_p_holm", "best_baseline", "rel_improvement_vs_best_baseline",
              "coverage20_pct", "note"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for t in tables:
        for d in t.datasets:
            for metric in METRICS:
                ranked = _ranked(t.cells, d, metric, t.models)
                best = best_baseline(t.cells, d, metric, t.models)
                for model in t.rows:
                    if model in CONFIG_ROWS and not preset_file(model, d).is_file():
                        continue
                    cell = t.cells.get((d, model))
                    pc = paper.get((PAPER_NAMES.get(row_model(model), row_model(model)), d))
                    block = ("beyond" if is_beyond(model) else "preset" if model in PRESET_ROWS
                             else "paper")
                    row: dict[str, Any] = {"protocol": t.protocol, "quick": t.quick, "dataset": d,
                                           "block": block, "model": model, "metric": metric}
                    if pc:
                        row["paper_mean_pct"] = pc[PAPER_KEY[metric] + "_mean"]
                        row["paper_std_pct"] = pc[PAPER_KEY[metric] + "_std"]
                    if t.data_missing(d) and (cell is None or cell.n == 0):
                        row["note"] = f"data missing: {t.missing_data[d]}"
                    elif cell is None or cell.n == 0:
                        row["note"] = "not run" if cell is None else "failed"
                    if model in CONFIG_ROWS:
                        row["note"] = "; ".join(filter(None, [
                            f"{row_label(model)} ({CONFIG_ROWS[model][1]}), not ranked",
                            row.get("note")]))
                    if cell is not None and cell.n:
                        m, s = mean_std(np.asarray(cell.values[metric]) * 100)
                        row.update(seeds=cell.n, failed=cell.failed, mean_pct=f"{m:.4f}",
                                   std_pct=f"{s:.4f}", rank=ranked.index(model) + 1
                                   if len(ranked) > 1 and model in ranked else "")
                        if "coverage@20" in cell.values:
                            row["coverage20_pct"] = f"{100 * np.mean(cell.values['coverage@20']):.2f}"
                        if block == "paper" and not rankable(t.cells, d, model):
                            row["note"] = "one seed among cells of several, not ranked"
                    c = (t.beyond_comparisons if block == "beyond" else t.comparisons).get(
                        (d, metric, model))
                    if c is not None:
                        row.update(welch_p=c.welch_p, welch_p_holm=c.welch_p_holm,
                                   seq_perm_p=c.seq_perm_p, seq_perm_p_holm=c.seq_perm_p_holm)
                    if (model == OURS or block == "beyond") and best and cell is not None and cell.n:
                        row["best_baseline"] = best
                        row["rel_improvement_vs_best_baseline"] = relative_improvement(
                            cell.mean(metric), t.cells[(d, best)].mean(metric))
                    w.writerow(row)
    return buf.getvalue()


def record_devices(rec: dict[str, Any]) -> str:
    """Where a record's training ran: its device, or, for a run resumed on another device
    type, each one in order ("cuda+cpu", from ``wall.segments``)."""
    devices: list[str] = []
    for seg in rec.get("wall", {}).get("segments") or [{"device": rec.get("device", "?")}]:
        name = str(seg.get("device", "?"))
        if not devices or devices[-1] != name:
            devices.append(name)
    return "+".join(devices)


#: one line per ``reproduce_table1`` invocation that ran something, under the results folder
INVOCATIONS = "logs/invocations.jsonl"


def timed_records(results_dir: Path, dataset: str, model: str) -> list[dict[str, Any]]:
    """The finished validation records of ``model`` on ``dataset`` that measured their run time
    (one per seed; one training serves both protocols)."""
    recs = []
    for path in sorted((store.records_dir(results_dir, dataset, model) / "validation").glob("seed*.json")):
        rec = store.read_record(path)
        if rec and rec.get("status") == "ok" and "total_s" in rec.get("wall", {}):
            recs.append(rec)
    return recs


def last_invocation(results_dir: Path) -> str:
    """The wall time of the last ``reproduce_table1`` invocation that ran anything (from
    ``INVOCATIONS``), per model and in all; "" when there is none."""
    path = Path(results_dir) / INVOCATIONS
    try:
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    except (OSError, ValueError):
        return ""
    if not lines:
        return ""
    inv = lines[-1]
    per_model: dict[str, list[float]] = {}
    for r in inv.get("per_run", []):
        per_model.setdefault(r["run"].split("/")[0], []).append(r["wall_s"])
    commit = (inv.get("git") or {}).get("commit") or "?"
    parts = ", ".join(f"{row_label(m)} {sum(w) / 60:.0f}" for m, w in per_model.items())
    return (f"\n- The last `python -m harness.reproduce_table1` that ran anything (started "
            f"{inv['started']}, commit {commit[:7]}): {inv['runs']} runs "
            f"({inv['failed']} failed), `--jobs {inv['jobs']}` with {inv['threads_per_run']} "
            f"thread(s) each on {inv['cores']} cores, **{inv['wall_s'] / 3600:.2f} h "
            f"({inv['wall_s'] / 60:.0f} min) of wall time** from the first run started to the "
            f"last one ended. Process minutes per "
            f"model, all its runs: {parts}.")


def timing(results_dir: Path, datasets: list[str], models: list[str]) -> str:
    """Run time per dataset x model from the records (each seed's ``wall.total_s``: training and
    every evaluation, in its own process; one training serves both protocols)."""
    rows, totals = [], {}
    for d in datasets:
        for m in models:
            recs = timed_records(results_dir, d, m)
            walls = [store.record_minutes(r) for r in recs]
            devices = [record_devices(r) for r in recs]
            if walls:
                m_, s_ = mean_std(walls)
                rows.append([d, row_label(m), ", ".join(sorted(set(devices))), len(walls),
                             f"{m_:.1f} ± {s_:.1f}", f"{sum(walls):.0f}"])
                if all(x == "cpu" for x in devices):
                    totals[d] = totals.get(d, 0.0) + sum(walls)
    if not rows:
        return ""
    text = tabulate(rows, headers=["dataset", "model", "device", "seeds", "minutes per seed",
                                   "minutes, all seeds"], tablefmt="github")
    text += "\n\n" + "\n".join(
        f"- {d}: {t:.0f} minutes of CPU runs in all; run two at a time on two cores "
        f"(`--jobs 2`), about {t / 2:.0f} minutes of wall time if they pack evenly."
        for d, t in totals.items())
    text += last_invocation(results_dir)
    if any("+" in r[2] or "cuda" in r[2] for r in rows):
        text += ("\n- A device of cuda+cpu: the run trained its first epochs on a GPU and was "
                 "resumed from that checkpoint on the CPU (each record's wall.segments gives the "
                 "epochs of each); its minutes add both stretches.")
    return text + "\n"


def _p_text(p: float) -> str:
    return "n/a" if not np.isfinite(p) else (f"{p:.2g}" if p >= 1e-4 else "< 1e-4")


def _significance(c: Comparison | None) -> str:
    if c is None:
        return "not tested"
    welch, seq = c.welch_p_holm < ALPHA, c.seq_perm_p_holm < ALPHA
    verdict = ("significant in both tests" if welch and seq else
               "significant in Welch's test only" if welch else
               "significant in the sequence test only" if seq else "not significant in either test")
    return (f"{verdict} (Holm-corrected p: Welch over seeds {_p_text(c.welch_p_holm)}, "
            f"sign flips over test sequences {_p_text(c.seq_perm_p_holm)})")


def cold_rows_text(t: Table, dataset: str, models: list[str]) -> str:
    """How each model does on the test rows whose target never occurs as a training target,
    and on the others, from the per-row ranks of the records ("" when there are no such rows).

    A model trained on its targets' embeddings (DreamRec's MSE, or a baseline's negatives) never
    learns such an item; a model that still hits it is ranking by something else, such as the
    initial norm of an embedding no loss has touched."""
    cold = t.cold_rows.get(dataset)
    if cold is None or not cold.any():
        return ""
    parts = []
    for m in models:
        rows = t.cells[(dataset, m)].row_means.get("hr@20")
        if rows is not None and rows.shape == cold.shape:
            parts.append(f"{row_label(m)} {100 * rows[cold].mean():.2f} / {100 * rows[~cold].mean():.2f}")
    text = (f"{100 * cold.mean():.1f} % of the test rows have a target that never occurs as a "
            f"training target")
    return text + (f"; HR@20 on those rows / on the others: {', '.join(parts)}." if parts else ".")


def popularity_groups(counts: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each test row's group by its target's count as a training target (``counts``
    [n_test_rows]): 0 for a target that never is one, then 1..5 for the fifths of the other rows
    (quantile edges of their counts; a count on an edge goes to the lower group, so ties never
    split), and each group's label (its counts, "" for an empty group)."""
    c = np.asarray(counts, dtype=np.int64)
    groups = np.zeros(c.shape, dtype=np.int8)
    trained = c > 0
    if trained.any():
        edges = np.quantile(c[trained], [0.2, 0.4, 0.6, 0.8])
        groups[trained] = 1 + np.searchsorted(edges, c[trained], side="left")
    labels = ["never a training target"]
    for g in range(1, 6):
        inside = c[groups == g]
        labels.append("" if not inside.size else f"{inside.min()}" if inside.min() == inside.max()
                      else f"{inside.min()}–{inside.max()}")
    return groups, labels


def popularity_table(t: Table, dataset: str) -> str:
    """HR@20 % of the best classifier and of each generative row (DreamRec and the block beyond
    the paper) on the test rows grouped by how often their target is a training target
    (:func:`popularity_groups`); † marks a generative row whose sequence-level sign-flip test
    against the best classifier on the group's rows is significant (Holm over every
    generative row x group of the dataset, alpha 0.05). "" without the groups, the sequences
    or a generative row."""
    kept, seq = t.target_groups.get(dataset), t.sequences.get(dataset)
    best = best_baseline(t.cells, dataset, "hr@20", t.models)
    if kept is None or seq is None or best is None:
        return ""
    groups, labels = kept
    base = t.cells[(dataset, best)].row_means.get("hr@20")
    gen = [r for r in [OURS] + t.beyond if (dataset, r) in t.cells and t.cells[(dataset, r)].n
           and (rm := t.cells[(dataset, r)].row_means.get("hr@20")) is not None
           and rm.shape == groups.shape]
    if base is None or base.shape != groups.shape or seq.shape != groups.shape or not gen:
        return ""
    masks = {g: groups == g for g in range(6) if np.any(groups == g)}
    hits = {r: t.cells[(dataset, r)].row_means["hr@20"] for r in gen}
    tests = {(r, g): sequence_sign_flip_p(hits[r][m], base[m], seq[m],
                                          np.random.default_rng(PERM_SEED))
             for r in gen for g, m in masks.items()}
    adjusted = dict(zip(tests, holm(list(tests.values()))))
    body = []
    for g, mask in masks.items():
        label = labels[g] if g == 0 else f"fifth {g}: {labels[g]} times"
        body.append([label, f"{int(mask.sum())} ({100 * mask.mean():.1f} %)",
                     f"{100 * base[mask].mean():.2f}"]
                    + [f"{100 * hits[r][mask].mean():.2f}" + ("†" if adjusted[(r, g)] < ALPHA
                                                               else "") for r in gen])
    headers = (["test rows by their target's count as a training target", "rows",
                f"{row_label(best)} (best classifier)"] + [row_label(r) for r in gen])
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def reading(tables: list[Table]) -> str:
    """What the table says, computed from the records: per dataset the ranking (of two or more
    models), DreamRec against the best baseline with both tests, top-20 lists that are nearly one
    list for every row, how far each cell is from the paper's, and the selection gap (published
    minus validation-selected, a lower bound). Nothing here is typed in by hand: it changes when
    the records do."""
    val = next((t for t in tables if t.protocol == "validation"), tables[0])
    pub = next((t for t in tables if t.protocol == "published"), None)
    paper = paper_cells()
    out: list[str] = []
    for d in val.datasets:
        ranked = _ranked(val.cells, d, "hr@20", val.models)
        single = [m for m in val.models if (d, m) in val.cells and val.cells[(d, m)].n
                  and m not in ranked]
        if not ranked and not single:
            continue
        def pct(m: str, metric: str = "hr@20", t: Table = val) -> float:
            return 100 * t.cells[(d, m)].mean(metric)
        if len(ranked) > 1:
            out.append(f"- **{d}**, validation-selected test HR@20 %, best first: "
                       + ", ".join(f"{row_label(m)} {pct(m):.2f}" for m in ranked) + ".")
        elif ranked:
            out.append(f"- **{d}**, validation-selected test HR@20 %: {row_label(ranked[0])} "
                       f"{pct(ranked[0]):.2f}, the only model with results here (not ranked).")
        else:
            out.append(f"- **{d}**, validation-selected test HR@20 %: no model has more than "
                       f"one seed here yet (not ranked).")
        if single:
            out.append("  Not ranked, one seed so far: " + ", ".join(
                f"{row_label(m)} {pct(m):.2f}" for m in single) + ".")
        if OURS in ranked and len(ranked) > 1:
            parts = []
            for metric in METRICS:
                best = best_baseline(val.cells, d, metric, val.models)
                rel = relative_improvement(val.cells[(d, OURS)].mean(metric),
                                           val.cells[(d, best)].mean(metric))
                parts.append(f"{METRIC_LABEL[metric]} {100 * rel:+.1f} % against {row_label(best)}, "
                             f"{_significance(val.comparisons.get((d, metric, best)))}")
            out.append(f"  DreamRec ranks {ranked.index(OURS) + 1} of {len(ranked)}: " + "; ".join(parts) + ".")
        for row in val.extras:
            cell = val.cells.get((d, row))
            if cell is not None and cell.n:
                model = row_model(row)
                same = model in ranked and same_config(val.cells, d, row)
                tuned = (" (the same config and records as the " + row_label(model) + " row)"
                         if same else f" (the {row_label(model)} row: {pct(model):.2f})"
                         if model in ranked else "")
                out.append(f"  {row_label(row)}: HR@20 {pct(row):.2f}{tuned}, "
                           f"NDCG@20 {pct(row, 'ndcg@20'):.2f}, {cell.n} seed(s); not ranked.")
        beyond = [r for r in val.beyond if (d, r) in val.cells and val.cells[(d, r)].n]
        for row in beyond:
            parts = []
            for metric in METRICS:
                best = best_baseline(val.cells, d, metric, val.models)
                if best is None:
                    continue
                rel = relative_improvement(val.cells[(d, row)].mean(metric),
                                           val.cells[(d, best)].mean(metric))
                parts.append(f"{METRIC_LABEL[metric]} {100 * rel:+.1f} % against "
                             f"{row_label(best)}, {_significance(val.beyond_comparisons.get((d, metric, row)))}")
            out.append(f"  {BEYOND_TITLE}: {row_label(row)} HR@20 {pct(row):.2f}"
                       + (f"; {'; '.join(parts)}." if parts else "."))
        one_list = _one_list_pct(val, d)
        for m in ranked + beyond:
            cov = val.cells[(d, m)].values.get("coverage@20")
            if cov and 100 * np.mean(cov) < 3 * one_list:
                out.append(f"  {row_label(m)}'s top-20 lists cover {100 * np.mean(cov):.2f} % of the "
                           f"items, near the {one_list:.2f} % of one list shown to every row: it "
                           f"recommends nearly the same items to everyone (`python -m harness.diagnose` "
                           f"shows which).")
        cold = cold_rows_text(val, d, ranked + beyond)
        if cold:
            out.append(f"  {cold}")
        if d not in val.cold_rows or d not in val.references:
            out.append(f"  The never-trained-target split and the most-popular reference need "
                       f"{d}'s files, which are not here (pass --data-dir).")
        ref = val.references.get(d)
        if ref and ranked:
            below = [row_label(m) for m in ranked if pct(m) < 100 * ref["hr@20"]]
            where = (f"; below it in HR@20: {', '.join(below)}." if below and len(ranked) > 1 else
                     "; every model is above it in HR@20." if len(ranked) > 1 else
                     f"; {row_label(ranked[0])} is {'below' if below else 'above'} it in HR@20.")
            out.append(f"  A most-popular list (one list for every row, items by their count as "
                       f"training targets; no training, no seed) scores HR@20 "
                       f"{100 * ref['hr@20']:.2f}, NDCG@20 {100 * ref['ndcg@20']:.2f}" + where)
        diffs = [f"{row_label(m)} {pct(m) - paper[(PAPER_NAMES.get(m, m), d)]['hr20_mean']:+.2f}"
                 for m in ranked if (PAPER_NAMES.get(m, m), d) in paper]
        if diffs:
            paper_rank = sorted((m for m in ranked if (PAPER_NAMES.get(m, m), d) in paper),
                                key=lambda m: -paper[(PAPER_NAMES.get(m, m), d)]["hr20_mean"])
            out.append(f"  Ours minus the paper, HR@20 points: {', '.join(diffs)}."
                       + (f" Among these models the paper's best is {row_label(paper_rank[0])}, "
                          f"ours {row_label(ranked[0])}." if len(paper_rank) > 1 else ""))
        if pub is not None:
            gaps = [f"{row_label(m)} {pct(m, t=pub) - pct(m):+.2f}" for m in ranked
                    if (d, m) in pub.cells and pub.cells[(d, m)].n]
            if gaps:
                full = [f"{row_label(m)} trains all "
                        f"{'/'.join(str(e) for e in sorted(set(val.cells[(d, m)].full_length)))}"
                        for m in ranked if (d, m) in val.cells and val.cells[(d, m)].full_length]
                out.append(f"  Selection gap, published minus validation-selected HR@20 points "
                           f"(a lower bound: these runs stop early on validation, the official "
                           f"code reads the best test printout of 1,000 epochs"
                           + (f"; without early stopping, {', '.join(full)} epochs" if full
                              else "") + f"): {', '.join(gaps)}.")
    where = [(d, popularity_table(val, d)) for d in val.datasets]
    where = [(d, text) for d, text in where if text]
    if where:
        out.append("\nWhere the generative rows win or lose: validation-selected test HR@20 % on "
                   "the test rows grouped by how often their target occurs as a training target "
                   "(never, then fifths of the other rows from the rarest targets to the most "
                   "popular); † the sequence-level sign-flip test against the best classifier on "
                   "those rows, Holm over the table's generative cells, p < 0.05.")
        for d, text in where:
            out.append(f"\n{d}:\n\n{text}")
    return "\n".join(out) + ("\n" if out else "")


#: per dataset, what the table needs from the data besides the records (the most-popular
#: reference, the never-trained-target rows and each test row's sequence), kept so a table
#: renders without the data
REFERENCES = "references"


def reference_path(results_dir: Path, dataset: str) -> Path:
    return Path(results_dir) / REFERENCES / f"{dataset}.json"


def save_references(results_dir: Path, dataset: str, checksum: str, popular: dict[str, float],
                    cold: np.ndarray, sequence: np.ndarray,
                    groups: tuple[np.ndarray, list[str]] | None = None) -> None:
    """Keep ``dataset``'s most-popular test metrics, its never-trained-target test rows
    ([n_test_rows] bool), each test row's sequence ([n_test_rows] int, 0-based, a sequence's
    rows consecutive: kept as the number of rows of each sequence) and, when given, each test
    row's popularity group with the groups' labels (:func:`popularity_groups`; one digit per
    row) for renderings without the data; the file is rewritten only when its content
    changes."""
    sequence = np.asarray(sequence, dtype=np.int64)
    if sequence.size and not (sequence[0] == 0 and np.all(np.isin(np.diff(sequence), (0, 1)))):
        raise ValueError(f"{dataset}: test sequence ids are not 0, 1, ... with each sequence's "
                         f"rows together; load the split with harness.data.load_dataset")
    payload = {"dataset": dataset, "data_checksum": checksum,
               "written_by": "python -m harness.reproduce_table1 (from the dataset's files)",
               "most_popular_test": {k: float(v) for k, v in sorted(popular.items())},
               "cold_test_rows": {"n": int(cold.size),
                                  "packed_bits_base64": base64.b64encode(
                                      np.packbits(cold.astype(bool)).tobytes()).decode()},
               "test_sequences": {"n_rows": int(sequence.size),
                                  "rows_per_sequence": " ".join(map(str, np.bincount(sequence)))}}
    if groups is not None:
        payload["test_target_groups"] = {"labels": list(groups[1]), "digits": "".join(
            map(str, np.asarray(groups[0], dtype=np.int64)))}
    text = json.dumps(payload, indent=1) + "\n"
    path = reference_path(results_dir, dataset)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        store.write_text(path, text)


def _kept(results_dir: Path, dataset: str, checksum: str | None) -> dict[str, Any] | None:
    """The references file of ``dataset`` when it was computed from the data whose content
    checksum is ``checksum``, else None."""
    obj = store.read_json(reference_path(results_dir, dataset))
    if not obj or checksum is None or obj.get("data_checksum") != checksum:
        return None
    return obj


def load_groups(results_dir: Path, dataset: str, checksum: str | None
                ) -> tuple[np.ndarray, list[str]] | None:
    """The test rows' popularity groups and their labels that :func:`save_references` kept for
    the data whose content checksum is ``checksum``, or None (other data, or a file without)."""
    obj = _kept(results_dir, dataset, checksum)
    if obj is None:
        return None
    try:
        kept = obj["test_target_groups"]
        groups = np.frombuffer(kept["digits"].encode(), dtype=np.uint8).astype(np.int8) - ord("0")
        labels = [str(x) for x in kept["labels"]]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if len(labels) != 6 or groups.size != obj.get("cold_test_rows", {}).get("n") or (
            groups.size and not (0 <= groups.min() and groups.max() <= 5)):
        return None
    return groups, labels


def load_references(results_dir: Path, dataset: str, checksum: str | None
                    ) -> tuple[dict[str, float], np.ndarray, np.ndarray | None] | None:
    """What :func:`save_references` kept for ``dataset`` (most-popular metrics, never-trained-
    target rows, test sequence ids or None when the file predates them), when it was computed
    from the data whose content checksum is ``checksum`` (that of the records); else None."""
    obj = _kept(results_dir, dataset, checksum)
    if obj is None:
        return None
    try:
        bits = obj["cold_test_rows"]
        cold = np.unpackbits(np.frombuffer(base64.b64decode(bits["packed_bits_base64"]),
                                           dtype=np.uint8))[:bits["n"]].astype(bool)
        popular = {k: float(v) for k, v in obj["most_popular_test"].items()}
    except (KeyError, TypeError, ValueError):
        return None
    sequence = None
    try:
        seqs = obj["test_sequences"]
        sizes = np.array(seqs["rows_per_sequence"].split(), dtype=np.int64)
        if sizes.sum() == seqs["n_rows"] == cold.size and np.all(sizes > 0):
            sequence = np.repeat(np.arange(sizes.size, dtype=np.int64), sizes)
    except (KeyError, TypeError, ValueError, AttributeError):
        pass
    return popular, cold, sequence


README_BEGIN = "<!-- table1:begin (written by python -m harness.reproduce_table1 --readme README.md) -->"
README_END = "<!-- table1:end -->"


def readme_block(tables: list[Table]) -> str:
    """The README's Table 1 section: the validation-selected table and its reading."""
    val = next((t for t in tables if t.protocol == "validation"), tables[0])
    return (f"{README_BEGIN}\n\n{_title(val)[0].upper()}{_title(val)[1:]}; the published-protocol "
            f"table, the run times and every p-value are in `results/table1.*`.\n\n{markdown(val)}\n"
            f"Reading, computed from the same records:\n\n{reading(tables)}\n{README_END}")


def readme_span(path: Path) -> tuple[str, int, int]:
    """``path``'s text and where its Table 1 block starts and ends; HarnessError without one."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        raise HarnessError(f"{path}: no Table 1 block there; add the lines '{README_BEGIN}' and "
                           f"'{README_END}' where the table should go")
    return text, start, end


def update_readme(path: Path, tables: list[Table]) -> None:
    """Replace the block between the Table 1 markers of ``path`` (atomically)."""
    text, start, end = readme_span(path)
    store.write_text(Path(path), text[:start] + readme_block(tables) + text[end + len(README_END):])


def write(results_dir: Path, tables: list[Table], stem: str = "table1") -> dict[str, str]:
    """Write ``<stem>.md``, ``.csv``, ``.tex`` and the LaTeX bodies of :func:`latex_bodies` under
    ``results_dir`` atomically; returns the texts of the first three."""
    md = [f"# Table 1{' (QUICK LOOK)' if tables[0].quick else ''}", "",
          "Produced by `python -m harness.reproduce_table1` from the records under `records/`; "
          "do not edit.", ""]
    for t in tables:
        md += [f"## {_title(t)[0].upper()}{_title(t)[1:]}", "", markdown(t)]
    read = reading(tables)
    if read:
        md += ["## Reading (computed from the records above)", "", read]
    t = tables[0]
    run_time = timing(results_dir, t.datasets, t.models)
    if run_time:
        md += ["## Run time", "", "Minutes per run as each record measured it (training and every "
               "evaluation, one torch thread per run unless the record says otherwise; other jobs "
               "on the machine slow them).", "", run_time]
    texts = {"md": "\n".join(md), "csv": csv_text(tables), "tex": latex(tables, stem)}
    for ext, text in texts.items():
        store.write_text(Path(results_dir) / f"{stem}.{ext}", text)
    for name, text in latex_bodies(tables, stem).items():
        store.write_text(Path(results_dir) / name, text)
    return texts
