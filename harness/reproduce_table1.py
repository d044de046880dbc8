"""``python -m harness.reproduce_table1``: run what Table 1 still needs, then render it.

Runs DreamRec and every baseline over every dataset and seed (one ``harness.run`` process per
missing seed, ``--jobs`` of them at a time), skips what is recorded, and renders
``results/table1.md``, ``.csv`` and ``.tex`` (validation-selected, and the published protocol
beside it). Example::

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
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from harness import store, table1
from harness.data import DATASETS, load_dataset, target_counts
from harness.errors import HarnessError
from harness.models import MODELS
from harness.evaluate import most_popular
from harness.report import PAPER_NAMES
from harness.run import parse_overrides, pick_device, record_base, spawn

TABLE_DATASETS = ("yc", "ks", "zhihu", "ml-100k")  # the paper's column order, then ours
QUICK_SETTINGS = ["max_epochs=3", "eval_every=1"]


@dataclass
class Task:
    dataset: str
    model: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.model}/{self.dataset}/seed{self.seed}"


def model_order(names: list[str]) -> list[str]:
    """The paper's row order (GRU4Rec ... DreamRec), then any other registered model."""
    paper = [m for m in PAPER_NAMES if m in names]
    return paper + sorted(m for m in names if m not in paper)


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


def run_task(task: Task, args: argparse.Namespace, threads: int, log_dir: Path,
             extra: list[str]) -> tuple[Task, int, float]:
    argv = ["--model", task.model, "--dataset", task.dataset, "--seeds", "1", "--first-seed",
            str(task.seed), "--protocol", args.protocol, "--device", args.device, "--threads",
            str(threads), "--results-dir", str(args.results_dir), "--no-progress", "--no-summary",
            *extra]
    if task.model == "dreamrec":  # small states, reused by harness.sampling and harness.diagnose
        argv.append("--save-model")
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    t0 = time.perf_counter()
    rc = spawn(argv, log_dir / f"{task.dataset}-{task.model}-seed{task.seed}.log")
    return task, rc, time.perf_counter() - t0


def expected_minutes(results_dirs: list[Path], dataset: str, model: str) -> float | None:
    """What one seed of ``model`` on ``dataset`` took before: the mean run time of its
    validation records in the first of ``results_dirs`` that has any (any config), else None."""
    for res in results_dirs:
        walls = [table1.record_minutes(r) for r in table1.timed_records(res, dataset, model)]
        if walls:
            return sum(walls) / len(walls)
    return None


def longest_first(tasks: list[Task], results_dirs: list[Path]) -> list[Task]:
    """Tasks in the order to start them: longest expected first (from earlier records), so the
    short runs fill the cores at the end instead of one long run finishing alone; runs never
    timed go first (they may be long), and ties keep the given order."""
    cost = {}
    for key in {(t.dataset, t.model) for t in tasks}:
        minutes = expected_minutes(results_dirs, *key)
        cost[key] = float("inf") if minutes is None else minutes
    return sorted(tasks, key=lambda t: -cost[t.dataset, t.model])


def log_invocation(results_dir: Path, entry: dict) -> None:
    """Append one line per invocation that ran something: its wall time from the first run
    started to the last one ended, and each run's (read by the Run time section of table1.md)."""
    path = Path(results_dir) / table1.INVOCATIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(entry) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.reproduce_table1",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=None,
                    help="comma-separated (default: every dataset whose files are present, and "
                    "ml-100k; one named but missing appears as 'data missing')")
    ap.add_argument("--models", default=None, help="comma-separated (default: all registered)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--results-dir", default=None,
                    help="default results/ (results/quick/ with --quick)")
    ap.add_argument("--protocol", default="both", choices=["validation", "published", "both"])
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs in parallel processes (CPU: the cores are shared out; one GPU: "
                    "several small runs at once)")
    ap.add_argument("--quick", action="store_true",
                    help="a first look: 3 epochs, evaluation every epoch; labelled QUICK, kept in "
                    "results/quick/")
    ap.add_argument("--set", action="append", default=[], metavar="[MODEL.]KEY=VALUE",
                    help="override a setting for every model (KEY=VALUE) or for one "
                    "(dreamrec.w=2); the records' config hash follows")
    ap.add_argument("--render-only", action="store_true", help="run nothing; render what exists")
    ap.add_argument("--readme", type=Path, default=None, metavar="FILE",
                    help="also rewrite the Table 1 block of FILE (between its table1:begin and "
                    "table1:end markers) with the validation-selected table and its reading")
    args = ap.parse_args(argv)
    store.git_state()
    try:
        datasets = _split_names(args.datasets, DATASETS, "dataset")
        models = model_order(_split_names(args.models, sorted(MODELS), "model") or list(MODELS))
        if args.seeds < 1 or args.jobs < 1:
            raise HarnessError("--seeds and --jobs must be >= 1")
        pick_device(args.device)
        if args.readme is not None:
            try:
                table1.readme_span(args.readme)  # before anything is run or written
            except HarnessError as e:
                raise HarnessError(f"--readme {e}") from None
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.results_dir = Path(args.results_dir or ("results/quick" if args.quick else "results"))
    try:
        per_model = model_settings(args.set, models, QUICK_SETTINGS if args.quick else [])
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
    for d in shown:
        if d not in loaded:
            continue
        for m in models:
            spec = MODELS[m]
            try:
                model_cfg, train_cfg = spec.configs(d, parse_overrides(per_model[m]))
            except HarnessError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            _, chash = record_base(spec, d, loaded[d], model_cfg, train_cfg)
            for seed in range(args.seeds):
                paths = [store.record_path(args.results_dir, d, m, p, seed) for p in protocols]
                for p in paths:
                    if p.exists() and store.read_record(p) is None:
                        print(f"warning: {p} is corrupt or not a record; it will be rerun",
                              file=sys.stderr)
                if not all(store.is_done(p, chash) for p in paths):
                    tasks.append(Task(d, m, seed))
    failed: list[str] = []
    if tasks and not args.render_only:
        tasks = longest_first(tasks, [args.results_dir, store.REPO_ROOT / "results"])
        cores = len(os.sched_getaffinity(0))
        threads = max(1, cores // args.jobs)
        log_dir = args.results_dir / "logs"
        print(f"{len(tasks)} runs to do, {args.jobs} at a time ({threads} CPU thread(s) each); "
              f"logs in {log_dir}/", file=sys.stderr)
        lock = threading.Lock()
        started, t0, walls = store.now_iso(), time.perf_counter(), []
        bar = tqdm(total=len(tasks), desc="runs", leave=True)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(run_task, t, args, threads, log_dir,
                                   [a for kv in per_model[t.model] for a in ("--set", kv)])
                       for t in tasks]
            for fut in futures:
                task, rc, wall = fut.result()
                with lock:
                    bar.update(1)
                    walls.append({"run": task.name, "exit": rc, "wall_s": round(wall, 1)})
                    if rc != 0:
                        failed.append(f"{task.name} (exit {rc}; log "
                                      f"{log_dir / f'{task.dataset}-{task.model}-seed{task.seed}.log'})")
        bar.close()
        log_invocation(args.results_dir, {
            "started": started, "wall_s": round(time.perf_counter() - t0, 1), "jobs": args.jobs,
            "threads_per_run": threads, "cores": cores, "device": args.device,
            "protocol": args.protocol, "runs": len(tasks), "failed": len(failed),
            "git": store.git_state(), "per_run": walls})
    elif tasks:
        print(f"{len(tasks)} runs are missing, e.g. {', '.join(t.name for t in tasks[:5])}; "
              f"python -m harness.reproduce_table1 "
              f"{'--datasets ' + ','.join(shown) + ' ' if datasets else ''}runs them",
              file=sys.stderr)
    tables = [table1.build(args.results_dir, p, shown, models, missing_data, args.quick)
              for p in protocols]
    references = {d: most_popular(loaded[d].train, loaded[d].test, loaded[d].n_items).metrics
                  for d in shown if d in loaded}
    cold_rows = {d: target_counts(loaded[d].train, loaded[d].n_items)[loaded[d].test.target] == 0
                 for d in shown if d in loaded}
    for t in tables:
        t.references, t.cold_rows = references, cold_rows
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


if __name__ == "__main__":
    sys.exit(main())
