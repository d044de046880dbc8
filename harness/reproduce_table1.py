"""``python -m harness.reproduce_table1``: run what Table 1 still needs, then render it.

Runs DreamRec and every baseline over every dataset and seed (one ``harness.run`` process per
missing seed, ``--jobs`` of them at a time), skips what is recorded, and renders
``results/table1.md``, ``.csv`` and ``.tex`` (validation-selected, and the published protocol
beside it; the LaTeX tables also as bodies to ``\\input``, ``results/table1-*body.tex``). Example::

    python -m harness.reproduce_table1 --datasets zhihu,ml-100k --jobs 2

A killed reproduction loses nothing finished: records are written atomically when a seed ends,
each run resumes from its last evaluation's checkpoint, and a rerun starts only what is missing.
``--quick`` is a first look with a short budget (3 epochs, evaluation every epoch), kept apart in
``results/quick/`` and labelled as such in every output.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness import cli, execute, store, table1
from harness.data import DATASETS, load_dataset, target_counts
from harness.errors import HarnessError
from harness.models import MODELS
from harness.evaluate import most_popular
from harness.report import PAPER_NAMES
from harness.run import hash_payload, parse_overrides, pick_device, recorded_home, resolve

TABLE_DATASETS = ("yc", "ks", "zhihu", "ml-100k")  # the paper's column order, then ours
QUICK_SETTINGS = ["max_epochs=3", "eval_every=1"]


@dataclass
class Task:
    dataset: str
    model: str  # a model, or a preset row's key (table1.PRESET_ROWS)
    seed: int

    @property
    def name(self) -> str:
        return f"{self.model}/{self.dataset}/seed{self.seed}"


def extra_rows(models: list[str]) -> list[str]:
    """The rows under the paper's, in the order shown: the presets of the models in the table
    (table1.PRESET_ROWS), then the "beyond the paper" block: the models the paper has no row
    for, and the config rows of the models in the table (table1.BEYOND_ROWS)."""
    return ([r for r in table1.PRESET_ROWS if table1.row_model(r) in models]
            + [m for m in models if table1.is_beyond(m)]
            + [r for r in table1.BEYOND_ROWS if table1.row_model(r) in models])


def model_order(names: list[str]) -> list[str]:
    """The paper's row order (GRU4Rec ... DreamRec), then the generative models beyond it
    (PreferDiff, DiffuRec), then any other registered model."""
    known = [m for m in (*PAPER_NAMES, *table1.BEYOND_NAMES) if m in names]
    return known + sorted(m for m in names if m not in known)


def _split_names(text: str | None, valid: tuple[str, ...] | list[str], what: str) -> list[str] | None:
    if text is None:
        return None
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise HarnessError(f"unknown {what} {', '.join(map(repr, bad)) or '(none given)'}; "
                           f"valid: {', '.join(valid)}")
    return names


def model_settings(items: list[str], models: list[str], base: list[str]) -> dict[str, list[str]]:
    """``--set`` items per model: ``KEY=VALUE`` for all, ``MODEL.KEY=VALUE`` for one."""
    out = {m: list(base) for m in models}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HarnessError(f"--set takes [MODEL.]KEY=VALUE, got {item!r} (e.g. --set dreamrec.w=2)")
        model, dot, name = key.partition(".")
        if dot:
            if model not in out:
                raise HarnessError(f"--set {item!r}: model {model!r} is not in this table; valid: "
                                   f"{', '.join(models)}")
            out[model].append(f"{name}={value}")
        else:
            for m in out:
                out[m].append(item)
    return out


def run_argv(task: Task, args: argparse.Namespace, threads: int, extra: list[str]) -> list[str]:
    """The ``harness.run`` arguments of one task (one seed, both protocols by default)."""
    model = table1.row_model(task.model)
    argv = ["--model", model, "--dataset", task.dataset, "--seeds", "1", "--first-seed",
            str(task.seed), "--protocol", args.protocol, "--device", args.device, "--threads",
            str(threads), "--results-dir", str(args.results_dir), "--no-progress", "--no-summary",
            *extra]
    if task.model in table1.CONFIG_ROWS:
        argv += ["--config", str(table1.preset_file(task.model, task.dataset))]
    # small states: DreamRec's reused by harness.sampling and harness.diagnose, SASRec's item
    # table by DreamRec with targets = "sasrec" (harness.run.pretrained_items)
    if model in ("dreamrec", "sasrec"):
        argv.append("--save-model")
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    return argv


def expected_minutes(results_dirs: list[Path], dataset: str, model: str) -> float | None:
    """What one seed of ``model`` on ``dataset`` took before: the mean run time of its
    validation records in the first of ``results_dirs`` that has any (any config), else None."""
    for res in results_dirs:
        walls = [store.record_minutes(r) for r in table1.timed_records(res, dataset, model)]
        if walls:
            return sum(walls) / len(walls)
    return None


def expected_costs(tasks: list[Task],
                   results_dirs: list[Path]) -> dict[tuple[str, str], float | None]:
    """(dataset, model) -> :func:`expected_minutes` of each pair among ``tasks``."""
    return {(d, m): expected_minutes(results_dirs, d, table1.row_model(m))
            for d, m in {(t.dataset, t.model) for t in tasks}}


def longest_first(tasks: list[Task], results_dirs: list[Path],
                  costs: dict[tuple[str, str], float | None] | None = None) -> list[Task]:
    """Tasks in the order to start them: longest expected first (from earlier records, or
    ``costs`` from :func:`expected_costs`), so the short runs fill the cores at the end instead
    of one long run finishing alone; runs never timed go first (they may be long), and ties
    keep the given order."""
    costs = expected_costs(tasks, results_dirs) if costs is None else costs

    def key(t: Task) -> float:
        minutes = costs[t.dataset, t.model]
        return -(float("inf") if minutes is None else minutes)

    return sorted(tasks, key=key)


def log_invocation(results_dir: Path, entry: dict) -> None:
    """Append one line per invocation that ran something: its wall time from the first run
    started to the last one ended, and each run's (read by the Run time section of table1.md)."""
    path = Path(results_dir) / table1.INVOCATIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(entry) + "\n")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m harness.reproduce_table1",
        description="Run what Table 1 still needs (one harness.run process per missing seed), "
        "then render results/table1.md, .csv and .tex from the records. Without a dataset's "
        "files its cells are rendered from its records. Example: python -m "
        "harness.reproduce_table1 --datasets zhihu,ml-100k")
    ap.add_argument("--datasets", default=None,
                    help="comma-separated, of: " + ", ".join(TABLE_DATASETS) + " (default: all; "
                    "one whose files are missing is rendered from its records, or shows 'data "
                    "missing')")
    ap.add_argument("--models", default=None,
                    help="comma-separated rows: models (" + ", ".join(MODELS) + ") and rows of "
                    "a model under a config file of its own (" + ", ".join(table1.CONFIG_ROWS)
                    + "); default: every one")
    ap.add_argument("--seeds", type=int, default=5, help="seeds per model (default: 5)")
    ap.add_argument("--device", default="auto", help=cli.device("auto"))
    ap.add_argument("--data-dir", default=None, help=cli.DATA_DIR)
    ap.add_argument("--results-dir", default=None,
                    help="where records and tables go (default: results/, or results/quick/ "
                    "with --quick)")
    ap.add_argument("--protocol", default="both", choices=["validation", "published", "both"],
                    help="which records each run writes (default: both, from one training)")
    ap.add_argument("--jobs", type=int, default=None,
                    help="runs at once, each in its own process with the cores shared out "
                    f"(default: one per core, here {execute.default_jobs()}; on one GPU several "
                    "small runs share it)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (and Ray CPUs) per run (default: the cores here "
                    "shared out among --jobs; 1 on a cluster)")
    cli.add_cluster_options(ap)
    ap.add_argument("--quick", action="store_true",
                    help="a first look: 3 epochs, evaluation every epoch; labelled QUICK, kept in "
                    "results/quick/")
    ap.add_argument("--set", action="append", default=[], metavar="[MODEL.]KEY=VALUE",
                    help="override a setting for every model (KEY=VALUE) or for one "
                    "(dreamrec.w=2); the records' config hash follows")
    ap.add_argument("--render-only", action="store_true", help="run nothing; render what exists")
    ap.add_argument("--since", default=None, metavar="TIME",
                    help="mark (°) every cell with a record made before TIME (ISO 8601 with a "
                    "time zone, e.g. 2026-12-03T00:00:00+00:00): rows still to be rerun on "
                    "newer code")
    ap.add_argument("--readme", type=Path, default=None, metavar="FILE",
                    help="also rewrite the Table 1 block of FILE (between its table1:begin and "
                    "table1:end markers) with the validation-selected table and its reading")
    return ap


def main(argv: list[str] | None = None) -> int:
    """The command line: 0 when the table is rendered and every run finished, 1 when a run
    failed, 2 on bad input, 130/143 when stopped by SIGINT/SIGTERM (see harness.execute)."""
    args = build_parser().parse_args(argv)
    return execute.stoppable(lambda progress: command(args))


def command(args: argparse.Namespace) -> int:
    """:func:`main` without its signal handling (a signal during the runs is handled by
    :func:`execute.run_jobs`; one outside them, loading data or rendering, by the caller)."""
    store.git_state()
    try:
        datasets = _split_names(args.datasets, DATASETS, "dataset")
        every = model_order(list(MODELS))
        order = [m for m in every if not table1.is_beyond(m)] + extra_rows(every)
        chosen = _split_names(args.models, sorted(MODELS) + sorted(table1.CONFIG_ROWS),
                              "model or row")
        rows = order if chosen is None else [r for r in order if r in chosen]
        models = [r for r in rows if r in MODELS and not table1.is_beyond(r)]  # ranked together
        extras = [r for r in rows if r not in models]  # presets, then the block beyond the paper
        if args.seeds < 1:
            raise HarnessError(f"--seeds must be >= 1, got {args.seeds}")
        since = cli.iso_time(args.since, "--since") if args.since else None
        if args.jobs is not None and args.jobs < 1:
            raise HarnessError(f"--jobs must be >= 1, got {args.jobs} (leave it out for one run "
                               f"per core)")
        if args.threads is not None and args.threads < 1:
            raise HarnessError(f"--threads must be >= 1, got {args.threads} (leave it out to "
                               f"share the cores among --jobs)")
        if args.address is None:  # on a cluster, the device is the nodes' business
            pick_device(args.device)
        if args.readme is not None:
            try:
                table1.readme_span(args.readme)  # before anything is run or written
            except HarnessError as e:
                raise HarnessError(f"--readme {e}") from None
        args.results_dir = Path(args.results_dir or ("results/quick" if args.quick else "results"))
        per_model = model_settings(args.set, sorted({table1.row_model(r) for r in rows}),
                                   QUICK_SETTINGS if args.quick else [])
        store.check_writable(args.results_dir, "--results-dir")
        # on a cluster, by default every run is handed to Ray at once (it queues them by
        # the resources they reserve)
        jobs = args.jobs or (None if args.address else execute.default_jobs())
        if args.address is not None:  # the runs may train on other machines
            args.results_dir = args.results_dir.resolve()
            args.data_dir = args.data_dir and str(Path(args.data_dir).resolve())
        threads = args.threads or (1 if args.address else
                                   max(1, len(os.sched_getaffinity(0)) // jobs))
        where = cli.cluster(args, jobs or 1, threads)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    # which datasets can run, and what is missing for each (dataset, model, seed)
    missing_data: dict[str, str] = {}
    loaded = {}
    for d in (datasets or list(TABLE_DATASETS)):
        try:
            loaded[d] = load_dataset(d, args.data_dir)
        except HarnessError as e:
            missing_data[d] = re.sub(r"(?<=\s)/\S*/([^\s/]+)", r"\1", str(e))  # no machine paths
    shown = [d for d in TABLE_DATASETS if d in loaded or d in missing_data]
    protocols = ["validation", "published"] if args.protocol == "both" else [args.protocol]
    tasks: list[Task] = []
    homes: dict[tuple[str, str], Path] = {}
    configs = [r for r in extras if r in table1.CONFIG_ROWS]
    planned: dict[tuple[str, str, str, int], Path] = {}  # (dataset, model, hash, seed) -> home
    for d in shown:
        rows = models + [r for r in extras if r not in configs
                         or table1.preset_file(r, d).is_file()]
        for m in rows:
            spec = MODELS[table1.row_model(m)]
            config = str(table1.preset_file(m, d)) if m in configs else None
            overrides = parse_overrides(per_model[table1.row_model(m)])
            try:
                if d not in loaded:  # rendered from the records: a config row finds its own
                    if m in configs:
                        home = recorded_home(spec, d, *spec.configs(d, overrides, config),
                                             args.results_dir)
                        if home is not None:
                            homes[(d, m)] = home
                    continue
                prep = resolve(spec, d, loaded[d], overrides, config, args.results_dir)
            except HarnessError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            homes[(d, m)] = prep.home
            for seed in range(args.seeds):
                paths = [store.record_path(prep.home, d, spec.name, p, seed) for p in protocols]
                for p in paths:
                    if p.exists() and store.read_record(p) is None:
                        print(f"warning: {p} is corrupt or not a record; it will be rerun",
                              file=sys.stderr)
                if (d, spec.name, prep.chash, seed) in planned:  # a preset row whose config
                    homes[(d, m)] = planned[(d, spec.name, prep.chash, seed)]  # is the model's:
                    continue  # the same runs, read from where they go
                planned[(d, spec.name, prep.chash, seed)] = prep.home
                if not all(store.is_done(p, prep.chash) for p in paths):
                    tasks.append(Task(d, m, seed))
    for d, why in missing_data.items():
        print(f"{d}: data missing ({why}); its cells are rendered from the records there are",
              file=sys.stderr)
    failed: list[str] = []
    if tasks and not args.render_only:
        outcome = run_tasks(tasks, args, jobs or len(tasks), threads, where, per_model)
        if outcome.signum is not None:
            print(outcome.interrupted_line(), file=sys.stderr)
            return 128 + outcome.signum
        for o in outcome.done:
            if o.exit != 0:
                why = o.reason()
                failed.append(f"{o.job.name} (exit {o.exit}{': ' + why if why else ''}; log "
                              f"{o.job.log})")
    elif tasks:
        print(f"{len(tasks)} runs are missing, e.g. {', '.join(t.name for t in tasks[:5])}; "
              f"python -m harness.reproduce_table1 "
              f"{'--datasets ' + ','.join(shown) + ' ' if datasets else ''}runs them",
              file=sys.stderr)
    else:
        print("nothing to run: every run of the table is recorded", file=sys.stderr)
    # a config row shows its own config's records only, as it does rendered without the data:
    # its home is the model's records/ when the preset is the tuned config, and that folder may
    # still hold the records of the tuned config before it
    for d in loaded:
        for m in configs:
            if (d, m) in homes:
                spec = MODELS[table1.row_model(m)]
                found = recorded_home(spec, d, *spec.configs(
                    d, parse_overrides(per_model[spec.name]), str(table1.preset_file(m, d))),
                    args.results_dir)
                if found is None:
                    del homes[(d, m)]
                else:
                    homes[(d, m)] = found
    tables = [table1.build(args.results_dir, p, shown, models, missing_data, args.quick, homes,
                           extras) for p in protocols]
    for t in tables:
        t.since = since
        t.stale = stale_cells(t, per_model, configs)
    references, cold_rows, sequences, groups = {}, {}, {}, {}
    for d in shown:
        if d in loaded:
            s = loaded[d]
            references[d] = most_popular(s.train, s.test, s.n_items).metrics
            counts = target_counts(s.train, s.n_items)[s.test.target]
            cold_rows[d] = counts == 0
            sequences[d] = s.test.sequence
            groups[d] = table1.popularity_groups(counts)
            table1.save_references(args.results_dir, d, s.checksum, references[d], cold_rows[d],
                                   sequences[d], groups[d])
        else:
            checksum = next((c.data_checksum for t in tables for (dd, _), c in t.cells.items()
                             if dd == d and c.data_checksum), None)
            kept = table1.load_references(args.results_dir, d, checksum)
            if kept is not None:
                references[d], cold_rows[d], seq = kept
                if seq is not None:
                    sequences[d] = seq
            kept_groups = table1.load_groups(args.results_dir, d, checksum)
            if kept_groups is not None:
                groups[d] = kept_groups
    for t in tables:
        t.set_data(references, cold_rows, sequences, groups)
    for path, why in tables[0].rejected:
        print(f"warning: {path} left out of the table: {why}", file=sys.stderr)
    if not any(c.n for t in tables for c in t.cells.values()):
        need = ", ".join(t.name for t in tasks[:8]) + (" ..." if len(tasks) > 8 else "")
        print(f"error: no finished runs under {args.results_dir}/records to tabulate; missing: "
              f"{need or 'every run'}; produce them with python -m harness.reproduce_table1"
              f"{' --datasets ' + ','.join(shown) if datasets else ''}", file=sys.stderr)
        return 2
    texts = table1.write(args.results_dir, tables)
    if args.readme is not None:
        table1.update_readme(args.readme, tables)
    print(texts["md"])
    if failed:
        print("failed runs:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


def stale_cells(t: table1.Table, per_model: dict[str, list[str]],
                configs: list[str]) -> set[tuple[str, str]]:
    """The cells of ``t`` with a record of another config than their row's as it is now (its
    config file and --set, hashed with the cell's data checksum, so without the data): rows
    whose config changed since their records were made."""
    out = set()
    for (d, m), cell in t.cells.items():
        if not cell.n:
            continue
        spec = MODELS[table1.row_model(m)]
        config = str(table1.preset_file(m, d)) if m in configs else None
        model_cfg, train_cfg = spec.configs(d, parse_overrides(per_model[table1.row_model(m)]),
                                            config)
        now = store.config_hash(hash_payload(spec, d, model_cfg, train_cfg, cell.data_checksum))
        if cell.config_hashes != {now}:
            out.add((d, m))
    return out


def run_tasks(tasks: list[Task], args: argparse.Namespace, jobs: int, threads: int,
              where: execute.Cluster, per_model: dict[str, list[str]]) -> execute.Progress:
    """Run ``tasks`` longest first, ``jobs`` at a time (``threads`` each), on ``where``, and
    log the invocation."""
    earlier = [args.results_dir, store.REPO_ROOT / "results"]
    costs = expected_costs(tasks, earlier)
    tasks = longest_first(tasks, earlier, costs)
    cores = len(os.sched_getaffinity(0))
    log_dir = args.results_dir / "logs"
    todo = [execute.Job(t.name, run_argv(t, args, threads,
                                         [a for kv in per_model[table1.row_model(t.model)]
                                          for a in ("--set", kv)]),
                        log_dir / f"{t.dataset}-{t.model}-seed{t.seed}.log",
                        None if costs[t.dataset, t.model] is None
                        else 60 * costs[t.dataset, t.model]) for t in tasks]
    known = [j.expected_s for j in todo if j.expected_s is not None]
    print(f"{len(tasks)} runs to do, {jobs} at a time ({threads} CPU thread(s) each"
          + (f", {where.gpus:g} GPU" if where.gpus else "") + "; "
          + ("in this process" if jobs == 1 and where.address is None else
             f"on Ray at {where.address}" if where.address else "on a local Ray") + "); "
          + (f"about {sum(known) / jobs / 60:.0f} min by earlier records"
             + (f" plus {len(todo) - len(known)} runs never timed" if len(known) < len(todo) else "")
             if known else "none timed before")
          + f"; logs in {log_dir}/", file=sys.stderr)
    started, t0 = store.now_iso(), time.perf_counter()
    outcome = execute.run_jobs(todo, jobs, cluster=where)
    log_invocation(args.results_dir, {
        "started": started, "wall_s": round(time.perf_counter() - t0, 1), "jobs": jobs,
        "threads_per_run": threads, "cores": cores, "device": args.device,
        "ray": None if jobs == 1 and where.address is None else (where.address or "local"),
        "gpus_per_run": where.gpus,
        "protocol": args.protocol, "runs": len(outcome.done),
        "failed": sum(1 for o in outcome.done if o.exit != 0),
        "interrupted": None if outcome.signum is None else signal.Signals(outcome.signum).name,
        "git": store.git_state(),
        "per_run": [{"run": o.job.name, "exit": o.exit, "wall_s": round(o.wall_s, 1)}
                    for o in outcome.done + outcome.stopped]})
    return outcome


if __name__ == "__main__":
    sys.exit(main())
