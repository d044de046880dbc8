"""``python -m harness.tune``: grid search on validation, one ``harness.run`` per grid point.

Example: ``python -m harness.tune --model sasrec --dataset zhihu`` searches the paper's grid,
learning rate {1e-2, 5e-3, 1e-3, 5e-4, 1e-4, 5e-5} x L2 (AdamW weight decay) {1e-3 ... 1e-7}
(DreamRec: learning rate only, as in the paper); ``--grid KEY=V1,V2`` replaces one axis or adds
another (``--grid lr=1e-2,1e-3 --grid schedule=exp,linear``). Every grid point is trained with the
validation protocol into ``<results>/tuning/<dataset>/<model>/<point>/`` (finished points are
skipped on a rerun), ``<results>/tuning/<dataset>-<model>.md`` lists the validation metrics of
every point and the point chosen by validation NDCG@20 (ties by HR@20), and the chosen settings
are written into the model's config file, or the file given with ``--config``
(``--no-write-config`` leaves it); other ``--set`` values the trials ran with are named in the
file's header but not written. Test metrics play no part in the choice.

``--jobs N`` trains N grid points at once (default: one per core), each in its own process
(its output in ``<results>/logs/tuning/<dataset>/<model>/<point>.log``, git-ignored): on a CPU
the cores are shared out (one torch thread each unless ``--threads`` says otherwise), on one GPU
several small trials share it; ``--jobs 1`` trains in this process. Every point's settings, the
data and the output folders are checked before any training starts. One SIGINT/SIGTERM stops
the search and every trial in progress (each keeps its checkpoint); the same command resumes.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

import numpy as np
from tabulate import tabulate

from harness import cli, execute, run, store
from harness.errors import HarnessError
from harness.models import get_model, render_config

PAPER_GRID = {"lr": ["1e-2", "5e-3", "1e-3", "5e-4", "1e-4", "5e-5"],
              "weight_decay": ["1e-3", "1e-4", "1e-5", "1e-6", "1e-7"]}


def parse_grid(items: list[str], model: str = "") -> dict[str, list[str]]:
    """The paper's grid for ``model`` with each ``KEY=V1,V2`` item replacing or adding an axis."""
    grid = {"lr": PAPER_GRID["lr"]} if model == "dreamrec" else dict(PAPER_GRID)
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise HarnessError(f"--grid takes KEY=V1,V2,..., got {item!r} (e.g. --grid lr=1e-2,1e-3)")
        grid[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


def _model_part_of_header(text: str) -> str:
    """The comment lines of a config file before its ``[train]:`` line (what they say of the
    model settings, which tuning keeps), or a plain statement when there is no such line."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line[1:].strip()
        if body.startswith("[train]:"):
            return "".join(x + "\n" for x in lines)
        lines.append(body)
    return "[model]: the settings the file held when tuning ran.\n"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m harness.tune",
        description="Grid search on validation, one harness.run per grid point; any other "
        "harness.run option (--set, --config, --data-dir, ...) is passed to every trial. "
        "Example: python -m harness.tune --model sasrec --dataset zhihu --grid lr=1e-2,1e-3")
    ap.add_argument("--model", default="dreamrec", help="the model to tune (default: dreamrec)")
    ap.add_argument("--dataset", default="ml-100k", help="the dataset (default: ml-100k)")
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                    help="replace or add one axis of the paper's grid (default grid: lr "
                    + "{" + ", ".join(PAPER_GRID["lr"]) + "} x weight_decay {"
                    + ", ".join(PAPER_GRID["weight_decay"]) + "}; DreamRec: lr only)")
    ap.add_argument("--no-write-config", action="store_true",
                    help="do not write the chosen settings into the model's config file")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per grid point (default: 1)")
    ap.add_argument("--results-dir", default="results",
                    help="trials go to <results-dir>/tuning/<dataset>/<model>/<point>/ "
                    "(default: results/)")
    ap.add_argument("--data-dir", default=None, help=cli.DATA_DIR)
    ap.add_argument("--device", default="auto", help=cli.device("auto"))
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads per trial (default: the cores shared out among "
                    "--jobs)")
    ap.add_argument("--jobs", type=int, default=None,
                    help="grid points trained at once, each in its own process (default: one "
                    f"per core, here {execute.default_jobs()}; 1 trains in this process)")
    return ap


def main(argv: list[str] | None = None) -> int:
    return execute.stoppable(lambda progress: command(argv, progress))


def command(argv: list[str] | None, progress: dict[str, int]) -> int:
    """:func:`main` without the signal handling; ``progress`` counts the grid points finished
    and left, as they change."""
    args, passthrough = build_parser().parse_known_args(argv)
    store.git_state()
    try:
        spec = get_model(args.model)
        grid = parse_grid(args.grid, args.model)
        if args.jobs is not None and args.jobs < 1 or args.seeds < 1:
            raise HarnessError("--jobs and --seeds must be >= 1")
        if args.threads is not None and args.threads < 1:
            raise HarnessError(f"--threads must be >= 1, got {args.threads} (leave it out to "
                               f"share the cores among --jobs)")
        given = run.build_parser().parse_known_args(passthrough)[0]  # the trials' --set/--config
        keys = list(grid)
        points = [(",".join(f"{k}={v}" for k, v in zip(keys, values)), values)
                  for values in itertools.product(*(grid[k] for k in keys))]
        jobs = args.jobs or execute.default_jobs()
        root = Path(args.results_dir) / "tuning" / args.dataset / args.model
        logs = Path(args.results_dir) / "logs" / "tuning" / args.dataset / args.model
        threads = args.threads or max(1, len(os.sched_getaffinity(0)) // jobs)
        trials = {}
        for point, values in points:  # a broken config, grid value or folder fails before training
            sets = [x for k, v in zip(keys, values) for x in ("--set", f"{k}={v}")]
            argv_ = ["--model", args.model, "--dataset", args.dataset, "--seeds",
                     str(args.seeds), "--results-dir", str(root / point), "--device",
                     args.device, "--threads", str(threads), "--no-progress", "--no-summary",
                     *sets, *passthrough, *(["--data-dir", args.data_dir] if args.data_dir else [])]
            trials[point] = (argv_, run.prepare(run.build_parser().parse_args(argv_)))
        if jobs > 1:
            store.check_writable(logs, "--results-dir")
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    progress["left"] = len(points)
    if jobs == 1:
        for point, _ in points:
            rc = run.command(run.build_parser().parse_args(trials[point][0]))
            if rc == 2:
                return 2  # bad input: run.command said why
            progress["finished"] += 1
            progress["left"] -= 1
    else:
        todo = [execute.Job(point, trials[point][0], logs / f"{point}.log") for point, _ in points]
        print(f"{len(points)} grid points, {jobs} at a time ({threads} CPU thread(s) each); "
              f"logs in {logs}/", file=sys.stderr)
        outcome = execute.run_jobs(todo, jobs, desc="grid points")
        if outcome.signum is not None:
            print(outcome.interrupted_line(), file=sys.stderr)
            return 128 + outcome.signum
        refused = [o for o in outcome.done if o.exit not in (0, 1)]
        for o in refused:
            why = execute.last_error(o.job.log)
            print(f"error: trial {o.job.name} failed (exit {o.exit}): "
                  f"{why or 'no error line'}; its log: {o.job.log}", file=sys.stderr)
        if refused:
            return 2
    rows, best = [], None
    for point, values in points:
        prep = trials[point][1]
        recs = [store.read_record(store.record_path(prep.home, args.dataset, args.model,
                                                    "validation", s)) for s in range(args.seeds)]
        ok = [r for r in recs if r and r["status"] == "ok" and r["config_hash"] == prep.chash]
        if not ok:
            rows.append([*values, "failed", "failed", "—"])
            continue
        key = (np.mean([r["val"]["ndcg@20"] for r in ok]), np.mean([r["val"]["hr@20"] for r in ok]))
        rows.append([*values, f"{key[0] * 100:.3f}", f"{key[1] * 100:.3f}",
                     f"{np.mean([r['selected_epoch'] for r in ok]):.0f}"])
        if best is None or key > best[0]:
            best = (key, point)
    table = tabulate(rows, headers=[*keys, "val NDCG@20 %", "val HR@20 %", "selected epoch"],
                     tablefmt="github")
    chosen = best[1] if best else "none (every point failed)"
    cmd_text = (f"python -m harness.tune --model {args.model} --dataset {args.dataset} "
               + " ".join(f"--grid {g}" for g in args.grid) + f" --seeds {args.seeds}")
    grid_text = " x ".join(f"{k} {{{', '.join(v)}}}" for k, v in grid.items())
    text = (f"# Tuning {args.model} on {args.dataset} (validation only)\n\n"
            f"Generated by `{cmd_text}`.\nGrid: {grid_text}.\n"
            f"Validation metrics of the selected state, mean over {args.seeds} seed(s).\n\n"
            f"{table}\n\nChosen by validation NDCG@20: **{chosen}**\n")
    out = Path(args.results_dir) / "tuning" / f"{args.dataset}-{args.model}.md"
    store.write_text(out, text)
    print(text)
    if best and not args.no_write_config:
        point = dict(kv.split("=", 1) for kv in best[1].split(","))
        path = Path(given.config) if given.config else spec.config_path(args.dataset)
        model_cfg, train_cfg = spec.configs(args.dataset, point, path)
        header = _model_part_of_header(path.read_text()) + (
            f"[train]: {', '.join(f'{k} {v}' for k, v in point.items())} chosen on validation "
            f"NDCG@20 by\n`{cmd_text}`\n(grid: {grid_text}; every trial in {out.as_posix()})"
            + (f";\nthe trials also ran with --set {' --set '.join(given.set)}" if given.set else "")
            + ".")
        text = render_config(model_cfg, train_cfg, header)
        store.write_text(path, text)
        print(f"wrote the chosen settings into {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
