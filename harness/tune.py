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

``--jobs N`` trains N grid points at once, each in its own process (its output in
``<point>/run.log``): on a CPU the cores are shared out (one torch thread each unless
``--threads`` says otherwise), on one GPU several small trials share it. Every point's settings
are checked before any training starts.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tabulate import tabulate

from harness import run, store
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.tune", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="dreamrec")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                    help="replace or add one axis of the paper's grid")
    ap.add_argument("--no-write-config", action="store_true",
                    help="do not write the chosen settings into the model's config file")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads per trial (default: all cores, or the cores shared "
                    "out among --jobs)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="grid points trained at once, each in its own process (default 1)")
    args, passthrough = ap.parse_known_args(argv)
    try:
        spec = get_model(args.model)
        grid = parse_grid(args.grid, args.model)
        if args.jobs < 1 or args.seeds < 1:
            raise HarnessError("--jobs and --seeds must be >= 1")
        given = run.build_parser().parse_known_args(passthrough)[0]  # the trials' --set/--config
        fixed = run.parse_overrides(given.set)
        keys = list(grid)
        points = [(",".join(f"{k}={v}" for k, v in zip(keys, values)), values)
                  for values in itertools.product(*(grid[k] for k in keys))]
        for _, values in points:  # a broken config file or grid value fails before any training
            spec.configs(args.dataset, {**fixed, **dict(zip(keys, values))}, given.config)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    root = Path(args.results_dir) / "tuning" / args.dataset / args.model
    threads = args.threads or (max(1, len(os.sched_getaffinity(0)) // args.jobs)
                               if args.jobs > 1 else 0)

    def trial(point_values: tuple[str, tuple[str, ...]]) -> int:
        point, values = point_values
        sets = [x for k, v in zip(keys, values) for x in ("--set", f"{k}={v}")]
        argv = ["--model", args.model, "--dataset", args.dataset, "--seeds", str(args.seeds),
                "--results-dir", str(root / point), "--device", args.device,
                "--threads", str(threads), "--no-progress", "--no-summary", *sets, *passthrough,
                *(["--data-dir", args.data_dir] if args.data_dir else [])]
        if args.jobs == 1:
            return run.main(argv)
        rc = run.spawn(argv, root / point / "run.log")
        if rc == 2:
            print(f"error: trial {point} was refused; its log: {root / point / 'run.log'}",
                  file=sys.stderr)
        return rc

    if args.jobs == 1:
        for p in points:
            if trial(p) == 2:
                return 2  # bad input: run.main said why
    else:
        print(f"{len(points)} grid points, {args.jobs} at a time ({threads or 'all'} CPU "
              f"thread(s) each); logs in {root}/<point>/run.log", file=sys.stderr)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            codes = list(pool.map(trial, points))
        if 2 in codes:
            return 2
    rows, best = [], None
    for point, values in points:
        recs = [store.read_record(store.record_path(root / point, args.dataset, args.model,
                                                    "validation", s)) for s in range(args.seeds)]
        ok = [r for r in recs if r and r["status"] == "ok"]
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
    command = (f"python -m harness.tune --model {args.model} --dataset {args.dataset} "
               + " ".join(f"--grid {g}" for g in args.grid) + f" --seeds {args.seeds}")
    grid_text = " x ".join(f"{k} {{{', '.join(v)}}}" for k, v in grid.items())
    text = (f"# Tuning {args.model} on {args.dataset} (validation only)\n\n"
            f"Generated by `{command}`.\nGrid: {grid_text}.\n"
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
            f"NDCG@20 by\n`{command}`\n(grid: {grid_text}; every trial in {out.as_posix()})"
            + (f";\nthe trials also ran with --set {' --set '.join(given.set)}" if given.set else "")
            + ".")
        text = render_config(model_cfg, train_cfg, header)
        store.write_text(path, text)
        print(f"wrote the chosen settings into {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
