"""``python -m harness.tune``: validation-only tuning, one ``harness.run`` per trial.

By default (``--auto``) it applies the harness's one tuning rule, the same for every model and
dataset (``python -m harness.tune --model sasrec --dataset zhihu``):

1. **Learning rate** over the paper's values {1e-2, 5e-3, 1e-3, 5e-4, 1e-4, 5e-5}, searched from
   {1e-2, 1e-3, 1e-4} outward: whenever the best learning rate tried is on an edge of what was
   tried, the next paper value beyond it is tried, until the best is interior or the paper's
   grid ends. The baselines run it at weight decay 1e-6, DreamRec at T = 500 (fixed, so that
   a rerun finds the same trials after the config file was rewritten); the other settings are
   the config file's.
2. **Weight decay** (the baselines; DreamRec takes none, as in the paper) at the chosen learning
   rate: {1e-6, 1e-4}, then the one paper value beyond the better of the two (1e-7 beyond 1e-6,
   1e-3 beyond 1e-4). A value whose decay AdamW cannot apply at that learning rate (``1 - lr *
   wd`` rounds to exactly 1 in float32: :func:`inert_decay`) is not trained: it would repeat the
   learning-rate stage's trial (weight decay 1e-6, itself inert) bit for bit; the report names
   it.
3. **DreamRec**: the number of diffusion steps T in {50, 200, 500, 1000} at the chosen learning
   rate. Every trial of a model with guidance (DreamRec, and its configs; PreferDiff, which
   keeps its code's T and takes no weight decay either) also scores the guidance strengths w
   in {0, 2, 4, 6, 8, 10} without retraining (evaluation variants, each selected on validation
   as a run of its own would be; the trial itself runs with w = 2); a trial's value is that of
   its best w, and the chosen config takes that w.

A trial is one seed (seed 0) trained to its own early stop with the config's epochs, patience
and evaluation cadence; none is pruned. Trials are ranked by validation NDCG@20 (ties by HR@20):
test metrics are never read (the records also hold them, under both protocols, so that the
winning trial can serve as the config's seed-0 run). Trials within one seed's standard
deviation of the best (measured over the model's recorded seeds on the same dataset) are
reported as ties. The chosen values are written into the config file; when the winning trial
ran with exactly the config's settings and no evaluation variants, its records become the
config's seed-0 records (the same config hash), not trained again.

``--grid KEY=V1,V2`` instead searches a plain grid (every combination; ``--grid`` replaces or
adds an axis of the paper's grid, learning rate x L2 {1e-3 ... 1e-7}); a model with guidance
scores every w of the rule in each trial as the rule does, so the paper's whole DreamRec grid
(lr x T x w) is ``--grid timesteps=50,100,200,500,1000,2000``: 36 trainings. Its report is
``<dataset>-<model>-grid.md``, beside the rule's.

Every trial goes to ``<results>/tuning/<dataset>/<model>/<point>/`` (finished trials are skipped
on a rerun), ``<results>/tuning/<dataset>-<model>.md`` lists every trial with its stage, its
validation metrics and its run time, and the chosen settings are written into the model's config
file, or the file given with ``--config`` (``--no-write-config`` leaves it).

``--jobs N`` trains N trials of a stage at once (default: one per core), each in its own process
on a local Ray (:mod:`harness.execute`; ``--address`` sends them to a Ray cluster), its output in
``<results>/logs/tuning/<dataset>/<model>/<point>.log`` (git-ignored); ``--jobs 1`` trains them
in this process, one after another. Every trial's settings, the data and the output folders are checked
before it trains. One SIGINT/SIGTERM stops the search and every trial in progress (each keeps
its checkpoint); the same command resumes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from harness import cli, execute, run, store, table1
from harness.run import is_guided
from harness.errors import HarnessError
from harness.models import get_model, render_config

PAPER_GRID = {"lr": ["1e-2", "5e-3", "1e-3", "5e-4", "1e-4", "5e-5"],
              "weight_decay": ["1e-3", "1e-4", "1e-5", "1e-6", "1e-7"]}
RULE_LR_START = ["1e-2", "1e-3", "1e-4"]
RULE_WD_START = ["1e-6", "1e-4"]
RULE_TIMESTEPS = ["50", "200", "500", "1000"]
RULE_W = [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
# where the learning-rate stage starts, fixed so that a rerun after the config file was
# rewritten finds the same trials: the baselines' weight decay, DreamRec's T (the official
# presets' for yc and zhihu) and the w a DreamRec trial runs with (every w is scored anyway)
RULE_WD_FIXED = "1e-6"
RULE_T_FIXED = "500"
RULE_OWN_W = "2"
TUNING_SEED = 0
PRUNED = "pruned.json"  # in a trial's folder: what successive halving kept of it


def inert_decay(lr: str, weight_decay: str) -> bool:
    """AdamW's decoupled weight decay multiplies each float32 weight by ``1 - lr * wd`` per step;
    below about 3e-8 for ``lr * wd`` that factor rounds to exactly 1 and the decay does nothing
    (at lr 1e-3: 1e-7, 1e-6 and 1e-5; at lr 1e-4: every value up to 1e-4)."""
    return bool(np.float32(1.0 - float(lr) * float(weight_decay)) == np.float32(1.0))


def live_decays(lr: str) -> list[str]:
    """The rule's starting weight decays it trains at ``lr``: the lr stage's own, and each other
    that is not a float32 no-op there (:func:`inert_decay`; such a trial would repeat the lr
    stage's bit for bit)."""
    return [wd for wd in RULE_WD_START if wd == RULE_WD_FIXED or not inert_decay(lr, wd)]


def paper_value(x: float) -> str:
    """A learning rate or weight decay as the paper writes it: 1e-3, 5e-4."""
    mantissa, exp = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exp)}"


def beyond(grid: list[str], tried: list[str], best: str) -> str | None:
    """The value of ``grid`` (ordered) just beyond ``best`` when ``best`` is on an edge of
    ``tried`` and that value is untried; None when ``best`` is interior or the grid ends."""
    pos = sorted(grid.index(v) for v in tried)
    at = grid.index(best)
    if at == pos[0] and at > 0 and grid[at - 1] not in tried:
        return grid[at - 1]
    if at == pos[-1] and at + 1 < len(grid) and grid[at + 1] not in tried:
        return grid[at + 1]
    return None


def parse_grid(items: list[str], model: str = "") -> dict[str, list[str]]:
    """The paper's grid for ``model`` with each ``KEY=V1,V2`` item replacing or adding an axis."""
    grid = {"lr": PAPER_GRID["lr"]} if is_guided(model) else dict(PAPER_GRID)
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise HarnessError(f"--grid takes KEY=V1,V2,..., got {item!r} (e.g. --grid lr=1e-2,1e-3)")
        grid[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


def _model_part_of_header(text: str) -> str:
    """The comment lines of a config file before its ``[train]:`` line (what they say of the
    model settings, which tuning keeps); all of them when there is no such line (its sources
    are not dropped), or a plain statement when it has none."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line[1:].strip()
        if body.startswith("[train]:"):
            break
        lines.append(body)
    return ("".join(x + "\n" for x in lines) if lines
            else "[model]: the settings the file held when tuning ran.\n")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m harness.tune",
        description="Validation-only tuning by the harness's rule (learning rate from {1e-2, "
        "1e-3, 1e-4} outward on the paper's grid, then weight decay; DreamRec: T and w), one "
        "harness.run per trial; --grid searches a plain grid instead. Any other harness.run "
        "option (--set, --config, --data-dir, ...) is passed to every trial. Example: "
        "python -m harness.tune --model sasrec --dataset zhihu")
    ap.add_argument("--model", default="dreamrec", help="the model to tune (default: dreamrec)")
    ap.add_argument("--dataset", default="ml-100k", help="the dataset (default: ml-100k)")
    ap.add_argument("--auto", action="store_true",
                    help="the tuning rule (the default when no --grid is given)")
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                    help="search a plain grid instead of the rule: replace or add one axis of "
                    "the paper's grid (lr {" + ", ".join(PAPER_GRID["lr"]) + "} x weight_decay {"
                    + ", ".join(PAPER_GRID["weight_decay"]) + "}; DreamRec: lr only)")
    ap.add_argument("--no-write-config", action="store_true",
                    help="do not write the chosen settings into the model's config file")
    ap.add_argument("--seeds", type=int, default=1,
                    help="seeds per trial with --grid (default: 1; the rule uses one seed)")
    ap.add_argument("--results-dir", default="results",
                    help="trials go to <results-dir>/tuning/<dataset>/<model>/<point>/ "
                    "(default: results/)")
    ap.add_argument("--data-dir", default=None, help=cli.DATA_DIR)
    ap.add_argument("--device", default="auto", help=cli.device("auto"))
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads per trial (default: the cores shared out among "
                    "--jobs)")
    ap.add_argument("--jobs", type=int, default=None,
                    help="trials trained at once, each in its own process on Ray (default: one "
                    f"per core, here {execute.default_jobs()}; 1 trains in this process)")
    cli.add_cluster_options(ap)
    ap.add_argument("--prune", action="store_true",
                    help="stop trials that fall behind on validation NDCG@20 by successive "
                    f"halving (Ray Tune's ASHA: rungs at {execute.PRUNE_GRACE}, "
                    f"{execute.PRUNE_GRACE * execute.PRUNE_FACTOR}, ... evaluations, a "
                    f"1/{execute.PRUNE_FACTOR} kept at each; default: every trial runs to its "
                    "own early stop)")
    return ap


def main(argv: list[str] | None = None) -> int:
    return execute.stoppable(lambda progress: command(argv, progress))


@dataclass
class Trial:
    """One trial: its point (``{key: value text}``), stage, argv and checked invocation."""

    point: dict[str, str]
    stage: str
    argv: list[str]
    prep: Any

    @property
    def name(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.point.items())


def tuning_label(model: str, passthrough: list[str]) -> str:
    """The name of a search's folder and report: the model's, or with ``--config FILE`` the
    file's stem when it names another config of the model (``ips.popularity``)."""
    config = run.build_parser().parse_known_args(passthrough)[0].config
    stem = Path(config).stem if config else model
    return stem if stem.startswith(f"{model}.") else model


class Search:
    """Trials of one model x dataset: prepared (checked) before they train, run stage by stage,
    and read back from their validation records."""

    def __init__(self, args: argparse.Namespace, passthrough: list[str], progress: dict) -> None:
        self.args, self.passthrough, self.progress = args, passthrough, progress
        # on a cluster, by default each stage's trials go to Ray at once (queued by resources)
        self.jobs = args.jobs or (None if args.address else execute.default_jobs())
        self.label = tuning_label(args.model, passthrough)
        self.root = Path(args.results_dir) / "tuning" / args.dataset / self.label
        self.logs = Path(args.results_dir) / "logs" / "tuning" / args.dataset / self.label
        self.threads = args.threads or (1 if args.address else
                                        max(1, len(os.sched_getaffinity(0)) // self.jobs))
        self.where = cli.cluster(args, self.jobs or 1, self.threads)
        self.trials: dict[str, Trial] = {}
        self.seeds = args.seeds
        self.prune = args.prune
        self.extra: list[str] = []

    def trial(self, point: dict[str, str], stage: str) -> Trial:
        """The trial of ``point`` (made and checked once; HarnessError on bad input)."""
        name = ",".join(f"{k}={v}" for k, v in point.items())
        if name in self.trials:
            return self.trials[name]
        args = self.args
        sets = [x for k, v in point.items() for x in ("--set", f"{k}={v}")]
        argv = ["--model", args.model, "--dataset", args.dataset, "--seeds", str(self.seeds),
                "--results-dir", str(self.root / name), "--device", args.device, "--threads",
                str(self.threads), "--no-progress", "--no-summary", *self.extra, *sets,
                *self.passthrough, *(["--data-dir", args.data_dir] if args.data_dir else [])]
        t = Trial(point, stage, argv, run.prepare(run.build_parser().parse_args(argv)))
        self.trials[name] = t
        return t

    def folder_trials(self) -> list[Trial]:
        """Every trial this search's folder holds a folder for (``KEY=V,KEY=V``: the rule's,
        a plain grid's), made as this search makes its own; one whose settings no longer
        check (a key this model lost) is left out."""
        out = []
        for d in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            pairs = [kv.split("=", 1) for kv in d.name.split(",")]
            if not d.is_dir() or any(len(kv) != 2 or not kv[0] for kv in pairs):
                continue
            try:
                out.append(self.trial(dict(pairs), "other"))
            except HarnessError:
                continue
        return out

    def seed0(self, t: Trial) -> tuple[Path, dict[str, Any]] | None:
        """The trial's seed-0 validation record of its config (finished or failed) and the
        folder holding it: its prepared home, else its folder or the folder's
        ``variants/<hash>/`` (a config file renamed, such as ``ips.popularity.toml`` made
        ``ips.toml``, turns trials recorded apart into the configured config's and back); None
        when there is none."""
        root = self.root / t.name
        for where in (t.prep.home, root, store.variant_dir(root, t.prep.chash)):
            rec = store.read_record(store.record_path(where, self.args.dataset, self.args.model,
                                                      "validation", TUNING_SEED))
            if rec and rec.get("config_hash") == t.prep.chash:
                return where, rec
        return None

    def found(self, t: Trial) -> Path | None:
        """The folder holding the trial's seed-0 record of its config (:meth:`seed0`)."""
        hit = self.seed0(t)
        return hit[0] if hit else None

    def home(self, t: Trial) -> Path:
        """Where the trial's records of its config are (:meth:`found`), else where they go."""
        return self.found(t) or t.prep.home

    def ran(self, t: Trial) -> bool:
        """The trial ran to its end for the config it runs now: finished, failed (its seed-0
        record says so) or pruned."""
        return self.found(t) is not None or bool(self.pruned(t))

    def failure(self, t: Trial) -> str | None:
        """Why the trial failed, as its seed-0 record says (\"training loss became nan in epoch
        0\"); None when it did not fail or left no record."""
        hit = self.seed0(t)
        rec = hit[1] if hit else None
        return (rec.get("error") or "no reason recorded") if rec and rec["status"] != "ok" else None

    def pruned(self, t: Trial) -> dict | None:
        """What successive halving kept of a trial it stopped (``pruned.json`` in its folder:
        its best validation NDCG@20, that epoch, its evaluations), or None."""
        path = self.root / t.name / PRUNED
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return data if data.get("config_hash") == t.prep.chash else None

    def run(self, trials: list[Trial]) -> int | None:
        """Train the trials that have not run (:meth:`ran`: a trial that failed, its loss
        nan, would fail again the same way, as Ray Tune's resume leaves errored trials); an exit
        code when the search must stop."""
        trials = [t for t in trials if not self.ran(t)]
        if not trials:
            return None
        self.progress["left"] += len(trials)
        store.check_writable(self.logs, "--results-dir")
        per = self.trial_seconds()
        todo = [execute.Job(t.name, t.argv, self.logs / f"{t.name}.log", per) for t in trials]
        jobs = self.jobs or max(1, len(todo))
        here = jobs == 1 and self.where.address is None and not self.prune
        print(f"{len(todo)} trial(s), {jobs} at a time ({self.threads} CPU thread(s) each"
              + (f", {self.where.gpus:g} GPU" if self.where.gpus else "") + "; "
              + ("in this process" if here else "Ray Tune trials on "
                 + (f"the Ray at {self.where.address}" if self.where.address else "a local Ray")
                 + (f", pruned by ASHA on validation NDCG@20 (grace {execute.PRUNE_GRACE} "
                    f"evaluations, a 1/{execute.PRUNE_FACTOR} kept per rung)" if self.prune
                    else ""))
              + f"); logs in {self.logs}/", file=sys.stderr)
        if here:
            outcome = execute.run_jobs(todo, 1, desc="trials")
        else:
            outcome = execute.run_trials(todo, jobs, desc="trials", cluster=self.where,
                                         prune=self.prune, storage=self.logs / "ray")
        by_name = {t.name: t for t in trials}
        for o in outcome.done:
            if o.pruned:
                t = by_name[o.job.name]
                store.write_text(self.root / t.name / PRUNED, json.dumps(
                    {**o.pruned, "wall_s": round(o.wall_s, 1), "config_hash": t.prep.chash,
                     "grace": execute.PRUNE_GRACE,
                     "reduction_factor": execute.PRUNE_FACTOR}, indent=1) + "\n")
        self.progress["finished"] += len(outcome.done)
        self.progress["left"] -= len(outcome.done)
        if outcome.signum is not None:
            print(outcome.interrupted_line(), file=sys.stderr)
            return 128 + outcome.signum
        refused = [o for o in outcome.done if o.exit not in (0, 1)]
        for o in refused:
            print(f"error: trial {o.job.name} failed (exit {o.exit}): "
                  f"{o.reason() or 'no error line'}; its log: {o.job.log}", file=sys.stderr)
        return 2 if refused else None

    def trial_seconds(self) -> float | None:
        """What one trial is expected to take, for the time-left estimate: its seeds at the
        median run time of a seed of this search's finished trials (any config), else of the
        model's records in the results folder; None when neither has one."""
        d, m = self.args.dataset, self.args.model
        mins = [store.record_minutes(r) for trial in sorted(self.root.glob("*"))
                for r in table1.timed_records(trial, d, m)]
        if not mins:
            mins = [store.record_minutes(r)
                    for r in table1.timed_records(Path(self.args.results_dir), d, m)]
        return 60 * self.seeds * float(np.median(mins)) if mins else None

    def records(self, t: Trial, protocol: str = "validation") -> list[dict[str, Any]]:
        """The trial's finished records of its own config."""
        home = self.home(t)
        recs = [store.read_record(store.record_path(home, self.args.dataset,
                                                    self.args.model, protocol, s))
                for s in range(self.seeds)]
        return [r for r in recs if r and r["status"] == "ok" and r["config_hash"] == t.prep.chash]

    def score(self, t: Trial) -> tuple[tuple[float, float], str | None] | None:
        """(val NDCG@20, val HR@20) of the trial, mean over its seeds, and the guidance
        strength that gives it (DreamRec trials with w variants; else None); None if failed."""
        ok = self.records(t)
        if not ok:
            cut = self.pruned(t)  # ranked by what it reached (no HR@20 was reported)
            return ((cut[execute.METRIC], 0.0), None) if cut else None
        options = {None: [r["val"] for r in ok]}
        if all("variants" in r for r in ok):
            options = {run.w_name(ok[0]["config"]["model"]["w"]): [r["val"] for r in ok]}
            for name in ok[0]["variants"]:
                options[name] = [r["variants"][name]["val"] for r in ok]
        best = max(options, key=lambda n: _key(options[n]))
        return _key(options[best]), best


def _key(vals: list[dict[str, float]]) -> tuple[float, float]:
    return (float(np.mean([v["ndcg@20"] for v in vals])), float(np.mean([v["hr@20"] for v in vals])))


def command(argv: list[str] | None, progress: dict[str, int]) -> int:
    """:func:`main` without the signal handling; ``progress`` counts the trials finished and
    left, as they change."""
    args, passthrough = build_parser().parse_known_args(argv)
    store.git_state()
    try:
        spec = get_model(args.model)
        if args.jobs is not None and args.jobs < 1 or args.seeds < 1:
            raise HarnessError("--jobs and --seeds must be >= 1")
        if args.threads is not None and args.threads < 1:
            raise HarnessError(f"--threads must be >= 1, got {args.threads} (leave it out to "
                               f"share the cores among --jobs)")
        if args.auto and args.grid:
            raise HarnessError("--auto (the tuning rule) and --grid (a plain grid) exclude each "
                               "other; give one")
        given = run.build_parser().parse_known_args(passthrough)[0]  # the trials' --set/--config
        for key in ("lr", "weight_decay", "timesteps", "w"):
            if not args.grid and any(x.split("=", 1)[0].strip() == key for x in given.set):
                raise HarnessError(f"--set {key}=... would fix a setting the tuning rule "
                                   f"searches; leave it out or use --grid")
        if args.address is not None:  # the trials may train on other machines
            args.results_dir = str(Path(args.results_dir).resolve())
            args.data_dir = args.data_dir and str(Path(args.data_dir).resolve())
        search = Search(args, passthrough, progress)
        if args.grid:
            return grid_search(search, spec, args, given)
        return rule_search(search, spec, args, given)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def grid_search(search: Search, spec, args, given) -> int:
    """Every combination of the grid's values (``--grid``)."""
    grid = parse_grid(args.grid, args.model)
    keys = list(grid)
    if "w" not in grid:  # w scored without retraining, as the rule does
        search.extra = trial_extra(args.model, grid=True)
    trials = [search.trial(dict(zip(keys, values)), "grid")
              for values in itertools.product(*(grid[k] for k in keys))]
    rc = search.run(trials)
    if rc is not None:
        return rc
    grid_text = " x ".join(f"{k} {{{', '.join(v)}}}" for k, v in grid.items())
    cmd_text = (f"python -m harness.tune --model {args.model} --dataset {args.dataset} "
                + " ".join(f"--grid {g}" for g in args.grid) + f" --seeds {args.seeds}")
    prune_text = (f" Pruned by successive halving on validation NDCG@20 (Ray Tune's ASHA, rungs at "
                  f"{execute.PRUNE_GRACE}, {execute.PRUNE_GRACE * execute.PRUNE_FACTOR}, ... "
                  f"evaluations, a 1/{execute.PRUNE_FACTOR} kept at each; a pruned trial is "
                  f"ranked by the best value it reached)." if args.prune else "")
    w_text = (" Every trial scores w in {" + ", ".join(f"{w:g}" for w in RULE_W) + "} without "
              "retraining (each w selected on validation as a run of its own)."
              if search.extra else "")
    return report(search, spec, args, given, trials, cmd_text + (" --prune" if args.prune else ""),
                  f"Grid: {grid_text}.{w_text}{prune_text}")


def trial_extra(model: str, grid: bool = False) -> list[str]:
    """The options every trial of a search passes to ``harness.run`` beside its point's: a
    model with guidance runs at w = RULE_OWN_W and scores every w of the rule as evaluation
    variants; the rule's trials record both protocols."""
    if is_guided(model):
        return ["--protocol", "both", "--set", f"w={RULE_OWN_W}", "--w-variants",
                ",".join(f"{w:g}" for w in RULE_W)]
    return [] if grid else ["--protocol", "both"]


def rule_search(search: Search, spec, args, given) -> int:
    """The tuning rule (module docstring), stage by stage; a rerun skips finished trials."""
    search.seeds = 1
    guided = is_guided(args.model)  # DreamRec, PreferDiff: w scored, no weight decay stage
    dreamrec = args.model == "dreamrec"  # and a T stage (PreferDiff keeps its code's T)
    search.extra = trial_extra(args.model)
    if guided:
        fixed = {"timesteps": RULE_T_FIXED} if dreamrec else {}
    else:
        fixed = {"weight_decay": RULE_WD_FIXED}
    done: list[Trial] = []

    def stage(points: list[dict[str, str]], name: str) -> int | None:
        trials = [search.trial(p, name) for p in points]
        rc = search.run([t for t in trials if t not in done])
        done.extend(t for t in trials if t not in done)
        return rc

    def best_of(trials: list[Trial]) -> Trial:
        scored = [t for t in trials if search.score(t) is not None]
        if not scored:
            raise HarnessError(f"every trial of {args.model} on {args.dataset} failed; see "
                               f"{search.root}/")
        return max(scored, key=lambda t: search.score(t)[0])

    skipped: list[str] = []  # weight decays not trained: exactly no-ops at the chosen lr
    lrs = list(RULE_LR_START)
    rc = stage([{"lr": lr, **fixed} for lr in lrs], "lr")
    while rc is None:
        lr_trials = [search.trial({"lr": lr, **fixed}, "lr") for lr in lrs]
        nxt = beyond(PAPER_GRID["lr"], lrs, best_of(lr_trials).point["lr"])
        if nxt is None:
            break
        lrs.append(nxt)
        rc = stage([{"lr": nxt, **fixed}], "lr (outward)")
    if rc is not None:
        return rc
    lr = best_of([search.trial({"lr": v, **fixed}, "lr") for v in lrs]).point["lr"]
    if dreamrec:
        rc = stage([{"lr": lr, "timesteps": t} for t in RULE_TIMESTEPS], "T")
        if rc is not None:
            return rc
    elif not guided:
        wds = list(RULE_WD_START)
        live = live_decays(lr)
        skipped += [wd for wd in wds if wd not in live]
        rc = stage([{"lr": lr, "weight_decay": wd} for wd in live], "weight decay")
        if rc is not None:
            return rc
        better = best_of([search.trial({"lr": lr, "weight_decay": wd}, "") for wd in live])
        nxt = beyond(PAPER_GRID["weight_decay"], wds, better.point["weight_decay"])
        if nxt is not None and inert_decay(lr, nxt):
            skipped.append(nxt)
        elif nxt is not None:
            rc = stage([{"lr": lr, "weight_decay": nxt}], "weight decay (beyond)")
            if rc is not None:
                return rc
    rule = ("Rule: learning rate over the paper's values {" + ", ".join(PAPER_GRID["lr"])
            + "} from {" + ", ".join(RULE_LR_START) + "} outward (the next paper value beyond "
            "an edge best, until the best is interior or the grid ends), at "
            + (f"T = {RULE_T_FIXED}" if dreamrec else "the config's T and no weight decay"
               if guided else f"weight decay {RULE_WD_FIXED}") + "; then "
            + ("T in {" + ", ".join(RULE_TIMESTEPS) + "} at the chosen learning rate; "
               if dreamrec else "" if guided else "weight decay {" + ", ".join(RULE_WD_START)
               + "} at the chosen learning rate and the paper value beyond the better")
            + ("every trial scores w in {" + ", ".join(f"{w:g}" for w in RULE_W) + "} without "
               "retraining (each w selected on validation as a run of its own)" if guided else "")
            + ". One seed per trial (seed 0), each trained to its own early stop"
            + (f"; pruned by successive halving on validation NDCG@20 (Ray Tune's ASHA, rungs "
               f"at {execute.PRUNE_GRACE}, {execute.PRUNE_GRACE * execute.PRUNE_FACTOR}, ... "
               f"evaluations, a 1/{execute.PRUNE_FACTOR} of the trials kept at each; a pruned "
               f"trial is ranked by the best value it reached)." if args.prune else
               "; no pruning.")
            + (f" Not trained: weight decay {', '.join(skipped)} at lr {lr}: AdamW multiplies "
               f"each weight by 1 - lr x weight decay per step, which rounds to exactly 1 in "
               f"float32 there (a no-op: the trial would repeat lr {lr}, weight decay "
               f"{RULE_WD_FIXED}, whose decay is inert too, bit for bit)." if skipped else ""))
    cmd_text = (f"python -m harness.tune --model {args.model} --dataset {args.dataset}"
                + (" --prune" if args.prune else ""))
    others = [t for t in search.folder_trials() if t not in done]
    return report(search, spec, args, given, done, cmd_text, rule, others)


def tuned_config(args, given=None) -> run.Prepared:
    """The run of the config a search tunes, prepared (its hash and records' home): the
    model's config file, or with ``given`` (the trials' harness.run options) ``--config``'s
    file with the trials' own ``--set``."""
    return run.prepare(run.build_parser().parse_args(
        ["--model", args.model, "--dataset", args.dataset, "--results-dir", args.results_dir,
         *(["--config", given.config] if given and given.config else []),
         *[x for kv in (given.set if given else []) for x in ("--set", kv)],
         *(["--data-dir", args.data_dir] if args.data_dir else [])]))


def seed_spread(args, given) -> tuple[float, int] | None:
    """Sample std over seeds of validation NDCG@20 in the recorded runs of the config the
    search tunes (the model's config file, or ``--config``'s, with the trials' own ``--set``;
    its records by its hash, wherever they live), and their count; None with fewer than two.
    Once the chosen settings are written and run, these are the chosen config's seeds."""
    prep = tuned_config(args, given)
    vals = [r["val"]["ndcg@20"] for r in (store.read_record(p) for p in sorted(
        store.records_dir(prep.home, args.dataset, args.model).glob("validation/seed*.json")))
        if r and r.get("status") == "ok" and r.get("config_hash") == prep.chash]
    return (float(np.std(vals, ddof=1)), len(vals)) if len(vals) >= 2 else None


def trial_minutes(recs: list[dict[str, Any]]) -> float:
    """A trial's run time from its records: every stretch of a resumed run, not only the last
    process's (:func:`harness.store.record_minutes`); a record without times counts 0."""
    return sum(store.record_minutes(r) for r in recs if "total_s" in r.get("wall", {}))


def elsewhere(search: Search, args, others: list[Trial], best: Trial | None,
              spread: tuple[float, int] | None) -> str:
    """What the finished trials of the search's folder beyond the rule's (a plain grid's)
    say of the rule's choice: the best of them all, and whether the rule chose it; "" when
    there are none."""
    scored = {t.name: search.score(t) for t in others}
    ok = [t for t in others if scored[t.name] is not None]
    if not ok or best is None:
        return ""
    top = max(ok, key=lambda t: scored[t.name][0])
    grid = Path(args.results_dir) / "tuning" / f"{args.dataset}-{search.label}-grid.md"
    where = (f" (a plain grid's: {_shown(grid)})" if grid.is_file() else "")
    own, other = search.score(best)[0][0], scored[top.name][0][0]

    def named(t: Trial, w: str | None) -> str:
        return ", ".join(f"{k}={v}" for k, v in t.point.items()) + (
            f", {w}" if w else "")
    if other <= own:
        return (f"This search's folder holds {len(ok)} finished trial(s) beyond the rule's"
                f"{where}, trained and ranked the same way; none is above the rule's choice "
                f"(the best of them, {named(top, scored[top.name][1])}, reaches "
                f"{other * 100:.3f} %): the wider search chooses what the rule chose.\n")
    tie = (spread is not None and other - own <= spread[0])
    return (f"This search's folder holds {len(ok)} finished trial(s) beyond the rule's{where}, "
            f"trained and ranked the same way. The best of them all is "
            f"**{named(top, scored[top.name][1])}** at validation NDCG@20 {other * 100:.3f} %, "
            f"{(other - own) * 100:.3f} points above the rule's choice: "
            + ("within one seed's std, a tie" if tie else "more than one seed's std"
               if spread else "no seed spread to call a tie by")
            + ". The config takes the rule's choice (the rule is the harness's one for every "
            "row).\n")


def report(search: Search, spec, args, given, trials: list[Trial], cmd_text: str,
           rule: str, others: list[Trial] = ()) -> int:
    """The tuning report, the chosen settings written into the config file, and the winning
    trial's records taken as the config's seed-0 run when they are its own; ``others``: the
    folder's trials beyond the rule's, set against its choice."""
    # the command that reproduces the search names the config it tuned and the trials' --set
    cmd_text += ((f" --config {_shown(Path(given.config))}" if given.config else "")
                 + "".join(f" --set {kv}" for kv in given.set))
    scored = {t.name: search.score(t) for t in trials}
    ok = [t for t in trials if scored[t.name] is not None]
    best = max(ok, key=lambda t: scored[t.name][0]) if ok else None
    spread = seed_spread(args, given)
    keys = list(dict.fromkeys(k for t in trials for k in t.point))
    dreamrec = any(scored[t.name] and scored[t.name][1] for t in ok)
    rows, minutes = [], 0.0
    for t in trials:
        recs = search.records(t)
        cut = None if recs else search.pruned(t)
        spent = cut["wall_s"] / 60 if cut else trial_minutes(recs)
        minutes += spent
        sc = scored[t.name]
        if sc is None:
            why = search.failure(t)
            rows.append([t.stage, *(t.point.get(k, "") for k in keys), "failed", "failed", "—",
                         *([""] if dreamrec else []), "—", f"failed: {why}" if why else ""])
            continue
        tie = ""
        if t is best:
            tie = "chosen"
        elif spread and scored[best.name][0][0] - sc[0][0] <= spread[0]:
            tie = "tie (within one seed std)"
        if cut:
            tie = (f"pruned after {cut['evaluations']} evaluations" + (f"; {tie}" if tie else ""))
        rows.append([t.stage, *(t.point.get(k, "") for k in keys), f"{sc[0][0] * 100:.3f}",
                     "—" if cut else f"{sc[0][1] * 100:.3f}",
                     str(cut["epoch"]) if cut else
                     f"{np.mean([r['selected_epoch'] for r in recs]):.0f}",
                     *([sc[1] or ""] if dreamrec else []),
                     f"{spent:.1f}", tie])
    table = tabulate(rows, headers=["stage", *keys, "val NDCG@20 %", "val HR@20 %",
                                    "selected epoch", *(["best w"] if dreamrec else []),
                                    "minutes", ""], tablefmt="github", disable_numparse=True)
    chosen = dict(best.point) if best else None
    if chosen is not None and scored[best.name][1]:
        chosen["w"] = scored[best.name][1].split("=", 1)[1]
    config_text = _shown(Path(given.config) if given.config
                         else spec.config_path(args.dataset))
    spread_text = (f"One seed's noise: the sample std over seeds of validation NDCG@20 in the "
                   f"{spread[1]} recorded runs of {search.label} on {args.dataset} with the "
                   f"settings of {config_text} is {spread[0] * 100:.3f} points; trials within "
                   f"it of the chosen one are ties."
                   if spread else f"No recorded seeds of {search.label} on {args.dataset} with "
                   f"the settings of {config_text}: no seed spread to call ties by.")
    chosen_text = (", ".join(f"{k}={v}" for k, v in chosen.items()) if chosen
                   else "none (every trial failed)")
    text = (f"# Tuning {search.label} on {args.dataset} (validation only)\n\n"
            f"Generated by `{cmd_text}`.\n{rule}\n"
            f"Validation metrics of the selected state, mean over {search.seeds} seed(s); "
            f"test metrics play no part. {spread_text}\n\n{table}\n\n"
            f"Chosen by validation NDCG@20: **{chosen_text}**\n\n"
            + (f"{note}\n" if (note := elsewhere(search, args, list(others), best, spread))
               else "") +
            f"Cost: {len(trials)} trials, {minutes:.0f} CPU-minutes by the records' own run "
            f"times.\n")
    # a plain grid's report beside the rule's, not over it
    out = (Path(args.results_dir) / "tuning"
           / f"{args.dataset}-{search.label}{'-grid' if args.grid else ''}.md")
    if chosen and not args.no_write_config:
        path = Path(given.config) if given.config else spec.config_path(args.dataset)
        model_cfg, train_cfg = spec.configs(args.dataset, chosen, path)  # not the trials' --set
        header = _model_part_of_header(path.read_text()) + (
            f"[train]: {', '.join(f'{k} {v}' for k, v in chosen.items())} chosen on validation "
            f"NDCG@20 by\n`{cmd_text}`\n(every trial in {_shown(out)}).")
        store.write_text(path, render_config(model_cfg, train_cfg, header))
        print(f"wrote the chosen settings into {path}", file=sys.stderr)
        if not given.config and not given.set:
            reused = adopt_seed0(search, best, args)
            if reused:
                text += f"\nThe chosen trial's records are the config's seed-0 run: {reused}.\n"
    store.write_text(out, text)
    print(text)
    return 0


def _shown(path: Path) -> str:
    """``path`` as a config header cites it: relative to the working folder when inside it
    (``--address`` makes the results folder absolute), so no machine's path is committed."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def adopt_seed0(search: Search, best: Trial, args) -> str | None:
    """Copy the winning trial's seed-0 records (both protocols) into the main records when
    they are the config file's own run (same config hash, no evaluation variants); the
    records of the config before move aside as every configured run moves them."""
    prep = tuned_config(args)
    recs = {p: search.records(best, p) for p in store.PROTOCOLS}
    if best.prep.chash != prep.chash or not all(recs.values()) or any(
            "variants" in r for rs in recs.values() for r in rs):
        return None
    results_dir = Path(args.results_dir)
    with execute.deferred():
        store.set_aside(results_dir, args.dataset, args.model, prep.chash)
        adopted = []  # the ones a rerun finds there already are named too (the report is
        for p in store.PROTOCOLS:  # written again on every rerun and keeps its line)
            src = store.record_path(search.home(best), args.dataset, args.model, p, TUNING_SEED)
            dest = store.record_path(results_dir, args.dataset, args.model, p, TUNING_SEED)
            if not store.is_done(dest, prep.chash):
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src.with_suffix(".npz"), dest.with_suffix(".npz"))
                shutil.copyfile(src, dest)
            adopted.append(dest.as_posix())
    return ", ".join(adopted)


if __name__ == "__main__":
    sys.exit(main())
