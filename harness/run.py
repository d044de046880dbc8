"""``python -m harness.run``: train one model on one dataset over seeds and record the results.

Example: ``python -m harness.run --model dreamrec --dataset zhihu --seeds 5 --protocol both``.
Records that already exist for the same configuration are skipped, so an interrupted command
rerun finishes the missing seeds only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tabulate import tabulate

from harness import cli, execute, store
from harness.data import DATASETS, SequenceSplits, check_dataset_name, load_dataset
from baselines.compat import require_recbole
from harness.errors import HarnessError
from harness.evaluate import ModelOutputError
from harness.stats import format_mean_std
from harness.models import MODELS, ModelSpec, get_model
from harness.train import EvalVariant, TrainConfig, TrainingDiverged, TrainResult, train

SUMMARY_METRICS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "hr@50", "ndcg@50")
SELECTION = {
    "validation": "best validation NDCG@20 (test evaluated once, on that state)",
    "published": "best TEST NDCG@20 over evaluations -- test-selected, optimistic; "
    "how the official code's printout is usually read",
}


def pick_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise HarnessError("--device cuda requested but no CUDA device is available; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise HarnessError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    return torch.device(name)


def parse_overrides(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HarnessError(f"--set takes KEY=VALUE, got {item!r} (e.g. --set timesteps=200)")
        out[key.strip()] = value.strip()
    return out


def hashed_fields(cfg: Any) -> dict[str, Any]:
    """The fields of a config dataclass that enter the config hash.

    A class may name, in ``HASHED_IF_SET``, options added after records existed: they are left
    out while they hold their default, so those records keep their hash.
    """
    optional = getattr(type(cfg), "HASHED_IF_SET", ())
    return {k: v for k, v in dataclasses.asdict(cfg).items()
            if k not in optional or v != getattr(type(cfg), k)}


def record_base(spec: ModelSpec, dataset: str, splits: SequenceSplits, model_cfg: Any,
                train_cfg: TrainConfig) -> tuple[dict[str, Any], str]:
    """The part of every record that identifies the run, and its config hash."""
    config = {"model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(train_cfg)}
    payload = hash_payload(spec, dataset, model_cfg, train_cfg, splits.checksum)
    chash = store.config_hash(payload)
    source = {"items_from": payload["items_from"]} if "items_from" in payload else {}
    return {"dataset": dataset, "model": spec.name, "config": config, "config_hash": chash,
            "data_checksum": splits.checksum, "n_items": splits.n_items,
            "rows": {s: len(splits.split(s)) for s in ("train", "val", "test")}, **source,
            "versions": store.package_versions(), "git": store.git_state()}, chash


def hash_payload(spec: ModelSpec, dataset: str, model_cfg: Any, train_cfg: TrainConfig,
                 checksum: str | None) -> dict[str, Any]:
    """What the config hash of a run covers: dataset, model, the hashed settings, the data's
    checksum, and for a model that takes another's item table (``items_from``) that model and
    the hash of its configured settings (a new SASRec config is a new DreamRec run)."""
    payload = {"dataset": dataset, "model": spec.name,
               "config": {"model": hashed_fields(model_cfg), "train": hashed_fields(train_cfg)},
               "data_checksum": checksum}
    source = getattr(model_cfg, "items_from", None)
    if source is not None:
        src = get_model(source)
        payload["items_from"] = {"model": source, "config_hash": store.config_hash(
            hash_payload(src, dataset, *src.configs(dataset), checksum))}
    return payload


def pretrained_items(model_cfg: Any, dataset: str, splits: SequenceSplits, seed: int,
                     device: torch.device) -> torch.Tensor | None:
    """The item table [n_items, H] a model takes from another (its config's ``items_from``),
    or None: that model's validation-selected state for the same dataset and seed under its
    configured settings, from the model folder (where ``harness.run --save-model`` keeps it),
    or trained here first, exactly as its own ``harness.run`` seed (same seed, settings and
    selection; no record written) and kept there for the next run."""
    source = getattr(model_cfg, "items_from", None)
    if source is None:
        return None
    spec = get_model(source)
    mc, tc = spec.configs(dataset)
    chash = store.config_hash(hash_payload(spec, dataset, mc, tc, splits.checksum))
    path = store.state_path(store.default_model_dir(), dataset, source, chash, seed)
    saved = store.load_state(path)
    torch.manual_seed(seed)
    model = spec.build(splits.n_items, mc)
    if saved is None:
        print(f"training {source} seed {seed} on {dataset} for its item table (its "
              f"validation-selected state is kept in {path})", file=sys.stderr)
        partial = path.with_name(f"{path.stem}.partial.pt")  # resumed when interrupted
        result = train(model, splits, tc, seed, device, progress=False,
                       desc=f"{source}/{dataset} seed {seed}", log_evals=True,
                       checkpoint=partial, checkpoint_key=chash)
        with execute.deferred():
            store.save_state(path, model.state_dict(), selected_epoch=result.best_epoch,
                             config_hash=chash)
        store.remove_checkpoint(partial)
    else:
        model.load_state_dict(saved["state_dict"])
    return model.item_table().detach().cpu().clone()


def build_model(spec: ModelSpec, splits: SequenceSplits, model_cfg: Any, seed: int,
                device: torch.device, dataset: str):
    """The model of one seed, initialised under ``torch.manual_seed(seed)``, with the item
    table of the model its config names in ``items_from`` (:func:`pretrained_items`)."""
    table = pretrained_items(model_cfg, dataset, splits, seed, device)
    torch.manual_seed(seed)  # model initialisation and dropout
    model = spec.build(splits.n_items, model_cfg)
    if table is not None:
        model.load_item_embeddings(table)
    return model


def w_name(w: float) -> str:
    """The name of DreamRec's evaluation variant with guidance strength ``w``."""
    return f"w={w:g}"


def guided(w: float):
    """DreamRec scored with guidance strength ``w`` (generation only: no retraining)."""
    def score_fn(model):
        return lambda h, ln, g: model.item_scores(model.generate(h, ln, g, w=w))
    return score_fn


def w_variants(ws: list[float], own: float) -> list[EvalVariant]:
    """Evaluation variants for the guidance strengths ``ws`` other than the config's own."""
    return [EvalVariant(w_name(w), guided(w)) for w in ws if w != own]


def run_seed(spec: ModelSpec, splits: SequenceSplits, model_cfg: Any, train_cfg: TrainConfig,
             seed: int, device: torch.device, protocols: list[str], base: dict[str, Any],
             paths: dict[str, Path], progress: bool, state_file: Path | None = None,
             checkpoint: Path | None = None, variants: list[EvalVariant] | None = None) -> str:
    """Train one seed and write one record per protocol; returns "ok" or "failed".

    ``base`` carries the run's identity and provenance, captured once when the command started
    (the git commit then is the code this process runs, whatever is committed meanwhile).
    With ``state_file`` the validation-selected model state is saved there too. With
    ``checkpoint`` the run saves its state there at each evaluation and resumes from it when
    restarted (the file, and the folders it leaves empty, are removed once the records are
    written). ``variants`` are selected beside the run (each on validation, by the run's own
    rule) and recorded under the record's ``variants``; training then goes on until every
    variant has stopped, so the record's ``history`` is longer than a plain run's.
    """
    model = build_model(spec, splits, model_cfg, seed, device, base["dataset"])
    common = dict(base, seed=seed, device=str(device), torch_threads=torch.get_num_threads(),
                  created=store.now_iso(), schema=store.SCHEMA)
    t0 = time.perf_counter()
    try:
        result = train(model, splits, train_cfg, seed, device,
                       published="published" in protocols, progress=progress,
                       desc=f"{spec.name}/{base['dataset']} seed {seed}", log_evals=not progress,
                       checkpoint=checkpoint,
                       checkpoint_key=f"{base['config_hash']}:{'+'.join(protocols)}"
                       + "".join(f":{v.name}" for v in variants or []),
                       variants=variants)
    except (TrainingDiverged, ModelOutputError) as e:  # NaN loss or NaN/inf scores
        with execute.deferred():
            for p in protocols:
                store.write_record(paths[p], dict(common, protocol=p, status="failed",
                                                  error=str(e)), None)
        if checkpoint is not None:
            store.remove_checkpoint(checkpoint)
        return "failed"
    total = time.perf_counter() - t0
    # a signal waits until the seed's records are all written; a record already finished for
    # this config (a run killed between its protocols' records) is kept as it is
    with execute.deferred():
        if state_file is not None:
            # train() restored the selected state
            store.save_state(state_file, model.state_dict(), selected_epoch=result.best_epoch,
                             config_hash=base["config_hash"])
        for p in protocols:
            if not store.is_done(paths[p], base["config_hash"]):
                store.write_record(paths[p], _record(common, p, result, total), _ranks(p, result))
    if checkpoint is not None:
        store.remove_checkpoint(checkpoint)
    return "ok"


def _record(common: dict[str, Any], protocol: str, r: TrainResult, total_s: float) -> dict[str, Any]:
    if protocol == "validation":
        epoch, val, test = r.best_epoch, r.val.metrics, r.test.metrics
    else:
        assert r.published is not None
        epoch, test = r.published[0], r.published[1].metrics
        val = next(e["val"] for e in r.history if e["epoch"] == epoch)
    out = dict(common, protocol=protocol, status="ok", error=None,
               selection=SELECTION[protocol], selected_epoch=epoch, best_val_epoch=r.best_epoch,
               epochs_run=r.epochs_run, val=val, test=test, history=r.history,
               wall=dict(r.wall, total_s=total_s))
    if r.variants:  # each validation-selected by the run's own rule, test once on its state
        out["variants"] = {name: {"selected_epoch": v.best_epoch, "stop_epoch": v.stop_epoch,
                                  "val": v.val.metrics, "test": v.test.metrics}
                           for name, v in r.variants.items()}
    return out


def _ranks(protocol: str, r: TrainResult) -> np.ndarray:
    return r.test.ranks if protocol == "validation" else r.published[1].ranks


def summarize(results_dir: Path, dataset: str, model: str, protocols: list[str],
              seeds: list[int]) -> str:
    """mean ± std (sample std over seeds, in %) of each protocol's test metrics."""
    rows = []
    for p in protocols:
        recs = [store.read_record(store.record_path(results_dir, dataset, model, p, s)) for s in seeds]
        ok = [r for r in recs if r and r.get("status") == "ok"]
        failed = sum(1 for r in recs if r and r.get("status") == "failed")
        row = [p, f"{len(ok)}/{len(seeds)}" + (f" ({failed} failed)" if failed else "")]
        for m in SUMMARY_METRICS:
            row.append(format_mean_std([r["test"][m] for r in ok]) if ok else "—")
        rows.append(row)
    head = ["protocol", "seeds"] + [m.upper() for m in SUMMARY_METRICS]
    title = f"{model} on {dataset}: test metrics in %, mean ± std over seeds"
    return title + "\n" + tabulate(rows, headers=head, tablefmt="github")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m harness.run", description=DESCRIPTION)
    ap.add_argument("--model", default="dreamrec", help=f"one of: {', '.join(sorted(MODELS))} "
                    "(default: dreamrec)")
    ap.add_argument("--dataset", default="ml-100k",
                    help=f"one of: {', '.join(DATASETS)} (default: ml-100k)")
    ap.add_argument("--seeds", type=int, default=5, help="number of seeds (default: 5)")
    ap.add_argument("--first-seed", type=int, default=0,
                    help="seeds run first..first+N-1 (default: 0)")
    ap.add_argument("--seed-stopping-first", default=None, metavar="RESULTS_DIR",
                    help="run the one seed (with --seeds 1), of those recorded in RESULTS_DIR "
                    "for the config file's own settings (no --set), whose validation run "
                    "stopped first (fewest epochs; the lowest seed on a tie): the seed a check "
                    "with a longer patience should rerun, e.g. --seeds 1 --seed-stopping-first "
                    "results --set patience=30 --results-dir results/checks/patience30")
    ap.add_argument("--protocol", default="validation", choices=["validation", "published", "both"],
                    help="validation: select on val only (default); published: also evaluate test "
                    "at every evaluation and report the best (test-selected); both: one training, "
                    "both records")
    ap.add_argument("--device", default="auto", help=cli.device("auto"))
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: all cores; use 1 per job when jobs share "
                    "cores)")
    ap.add_argument("--data-dir", default=None, help=cli.DATA_DIR)
    ap.add_argument("--results-dir", default="results",
                    help="where records go (default: results/; a config other than the config "
                    "file's goes to <results-dir>/variants/<config hash>/ when the main records "
                    "are another config's)")
    ap.add_argument("--config", default=None, metavar="FILE",
                    help="settings file to read instead of harness/configs/<dataset>/<model>.toml "
                    "(unless its settings are that file's, its records go to "
                    "<results-dir>/variants/<config hash>/, e.g. dreamrec.authors.toml's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of the config file, e.g. --set lr=0.005 "
                    "(repeatable)")
    ap.add_argument("--mask-history", action="store_true",
                    help="evaluation removes each row's history items from its ranking, for "
                    "every model alike (default: not removed, as in the paper); "
                    "same as --set mask_history=true")
    ap.add_argument("--save-model", action="store_true",
                    help="also keep each seed's validation-selected model state under "
                    "$HARNESS_MODEL_DIR (default: .cache/models/), keyed by the config hash; "
                    "python -m harness.sampling evaluates such states without retraining")
    ap.add_argument("--w-variants", default=None, metavar="W1,W2,...",
                    help="DreamRec: also select each of these guidance strengths on validation "
                    "as a run of its own would (w enters generation only: one training serves "
                    "them all) and record them under the record's variants (harness.tune uses "
                    "this); training goes on until every w has stopped")
    ap.add_argument("--no-progress", action="store_true",
                    help="no progress bars: one line per evaluation on stderr instead")
    ap.add_argument("--no-summary", action="store_true",
                    help="do not print the test summary (harness.tune uses this: tuning sees "
                    "validation only)")
    return ap


DESCRIPTION = ("Train one model on one dataset over seeds and record the results. Example: "
               "python -m harness.run --model dreamrec --dataset zhihu --seeds 5 --protocol both")


@dataclass
class Prepared:
    """A checked ``harness.run`` invocation, ready to train: everything read and validated."""

    spec: ModelSpec
    model_cfg: Any
    train_cfg: TrainConfig
    splits: SequenceSplits
    base: dict[str, Any]
    chash: str
    configured: bool  # the config file's own settings (no --set, no --config that differs)
    home: Path  # the results folder its records go to
    seeds: list[int] = dataclasses.field(default_factory=list)  # the seeds it runs


def resolve(spec: ModelSpec, dataset: str, splits: SequenceSplits, overrides: dict[str, str],
            config_file: str | None, results_dir: Path) -> Prepared:
    """The configs, record base and config hash of a run, and where its records go."""
    model_cfg, train_cfg = spec.configs(dataset, overrides, config_file)
    base, chash = record_base(spec, dataset, splits, model_cfg, train_cfg)
    configured = not overrides and config_file is None
    if not configured:
        try:
            default = record_base(spec, dataset, splits, *spec.configs(dataset))[1]
        except HarnessError:  # no config file of its own for this dataset
            default = None
        configured = chash == default
    return Prepared(spec, model_cfg, train_cfg, splits, base, chash, configured,
                    store.home(results_dir, dataset, spec.name, chash, configured,
                               apart=config_file is not None))


def recorded_home(spec: ModelSpec, dataset: str, model_cfg: Any, train_cfg: TrainConfig,
                  results_dir: Path) -> Path | None:
    """Without the data: the results folder (``results_dir`` or one of its variants) whose
    records of ``spec`` on ``dataset`` have these configs (their hash, with each record's own
    data checksum), or None."""
    wanted: dict[str | None, str] = {}  # data checksum -> the hash these configs have with it
    for root in store.config_roots(results_dir):
        for path in sorted(store.records_dir(root, dataset, spec.name).glob("*/seed*.json")):
            rec = store.read_record(path)
            if rec is None or not rec.get("config_hash"):
                continue
            checksum = rec.get("data_checksum")
            if checksum not in wanted:
                wanted[checksum] = store.config_hash(
                    hash_payload(spec, dataset, model_cfg, train_cfg, checksum))
            if wanted[checksum] == rec["config_hash"]:
                return root
    return None


def seed_stopping_first(spec: ModelSpec, dataset: str, splits: SequenceSplits,
                        config_file: str | None, results_dir: Path) -> int:
    """The seed, among the finished validation runs recorded in ``results_dir`` with the
    settings of ``config_file`` (or the model's config file) as they are, that stopped after
    the fewest epochs, the lowest on a tie: with early stopping, the run most likely cut short
    on a noisy plateau, so the one a check with a longer patience reruns."""
    ref = resolve(spec, dataset, splits, {}, config_file, results_dir)
    runs = []
    for path in sorted((store.records_dir(ref.home, dataset, spec.name) / "validation")
                       .glob("seed*.json")):
        rec = store.read_record(path)
        if rec and rec.get("status") == "ok" and rec.get("config_hash") == ref.chash:
            runs.append((rec["epochs_run"], rec["seed"]))
    if not runs:
        raise HarnessError(f"--seed-stopping-first: {results_dir} holds no finished run of "
                           f"{spec.name} on {dataset} with the settings of "
                           f"{config_file or spec.config_path(dataset)}: run its seeds first")
    return min(runs)[1]


def prepare(args: argparse.Namespace) -> Prepared:
    """Every check of an invocation, before anything is written: HarnessError says what is
    wrong."""
    spec = get_model(args.model)
    check_dataset_name(args.dataset)
    if args.seeds < 1:
        raise HarnessError(f"--seeds must be >= 1, got {args.seeds}")
    if args.first_seed < 0:
        raise HarnessError(f"--first-seed must be >= 0, got {args.first_seed}")
    if args.threads is not None and args.threads < 1:
        raise HarnessError(f"--threads must be >= 1, got {args.threads} (leave it out to use "
                           f"every core)")
    if args.seed_stopping_first is not None and (args.seeds != 1 or args.first_seed != 0):
        raise HarnessError("--seed-stopping-first picks the one seed to run: pass --seeds 1 "
                           "and leave out --first-seed")
    overrides = parse_overrides(args.set)
    if args.mask_history:
        overrides["mask_history"] = "true"
    spec.configs(args.dataset, overrides, args.config)  # settings fail before the data loads
    if spec.config_cls.__module__.startswith("baselines."):  # RecBole's models, or its layers
        require_recbole()
    parse_w_variants(args.w_variants, args.model)
    pick_device(args.device)
    splits = load_dataset(args.dataset, args.data_dir)
    prep = resolve(spec, args.dataset, splits, overrides, args.config, Path(args.results_dir))
    check_last_batch(prep)
    prep.seeds = (list(range(args.first_seed, args.first_seed + args.seeds))
                  if args.seed_stopping_first is None else
                  [seed_stopping_first(spec, args.dataset, splits, args.config,
                                       Path(args.seed_stopping_first))])
    store.check_writable(prep.home, "--results-dir")
    if args.save_model:
        store.check_writable(store.default_model_dir(), "the model folder",
                             "point $HARNESS_MODEL_DIR at a writable folder")
    return prep


def check_last_batch(prep: Prepared) -> None:
    """A model whose loss needs several rows per batch (``MIN_BATCH_ROWS`` on its config class:
    PreferDiff's in-batch negatives) refuses a batch size that leaves a shorter last batch."""
    need = getattr(prep.model_cfg, "MIN_BATCH_ROWS", 1)
    n, bs = len(prep.splits.train), prep.train_cfg.batch_size
    if 0 < n % bs < need:
        raise HarnessError(
            f"{prep.spec.name} needs batches of {need} or more rows, and batch_size {bs} leaves a "
            f"last batch of {n % bs} of the {n} training rows; choose another batch_size "
            f"(--set batch_size=N)")


def is_guided(model: str) -> bool:
    """A registered model with classifier-free guidance: a ``w`` setting its sampling reads
    (DreamRec, PreferDiff), so that each w can be scored without retraining."""
    spec = MODELS.get(model)
    return spec is not None and "w" in {f.name for f in dataclasses.fields(spec.config_cls)}


def parse_w_variants(text: str | None, model: str) -> list[float]:
    """The guidance strengths of ``--w-variants`` (empty when not given)."""
    if text is None:
        return []
    if not is_guided(model):
        guided_models = ", ".join(m for m in sorted(MODELS) if is_guided(m))
        raise HarnessError(f"--w-variants scores guidance strengths, and {model} has none; "
                           f"models with guidance: {guided_models}")
    try:
        ws = sorted({float(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise HarnessError(f"--w-variants takes comma-separated numbers, got {text!r}") from None
    if not ws or min(ws) < 0:
        raise HarnessError(f"--w-variants takes guidance strengths >= 0, got {text!r}")
    return ws


def main(argv: list[str] | None = None) -> int:
    """The command line: 0 when every seed is recorded, 1 when one failed (NaN), 2 on bad
    input or an unwritable results folder, 130/143 when stopped by SIGINT/SIGTERM."""
    args = build_parser().parse_args(argv)
    return execute.stoppable(lambda progress: command(args, progress))


def command(args: argparse.Namespace, progress: dict[str, int] | None = None) -> int:
    """:func:`main` without the signal handling: :class:`execute.Interrupted` propagates.
    ``progress`` counts the seeds finished and those left (resumable), as they change."""
    progress = {"finished": 0, "left": 0} if progress is None else progress
    store.git_state()  # provenance of the code this process runs, read before anything else
    try:
        prep = prepare(args)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    device = pick_device(args.device)
    spec, chash = prep.spec, prep.chash
    results_dir = Path(args.results_dir)
    protocols = ["validation", "published"] if args.protocol == "both" else [args.protocol]
    seeds = prep.seeds
    progress["left"] = len(seeds)
    try:
        if prep.configured:
            with execute.deferred():
                moved = store.set_aside(results_dir, args.dataset, spec.name, chash)
            for src, dest in moved:
                print(f"moved {src} to {dest} (the records of another config than "
                      f"{spec.config_path(args.dataset)})", file=sys.stderr)
        elif prep.home != results_dir:
            print(f"records of this config go to {prep.home}/ ({results_dir}/records holds "
                  f"another config's)", file=sys.stderr)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    home = prep.home
    failed = 0
    for seed in seeds:
        paths = {p: store.record_path(home, args.dataset, spec.name, p, seed) for p in protocols}
        state_file = (store.state_path(store.default_model_dir(), args.dataset, spec.name, chash,
                                       seed) if args.save_model else None)
        if all(store.is_done(paths[p], chash) for p in protocols) and (
                state_file is None or state_file.exists()):
            print(f"seed {seed}: record exists for this config, skipped", file=sys.stderr)
            progress["finished"] += 1
            progress["left"] -= 1
            continue
        try:
            status = run_seed(spec, prep.splits, prep.model_cfg, prep.train_cfg, seed, device,
                              protocols, prep.base, paths, progress=not args.no_progress,
                              state_file=state_file,
                              checkpoint=store.checkpoint_path(home, args.dataset, spec.name, seed),
                              variants=w_variants(parse_w_variants(args.w_variants, args.model),
                                                  prep.model_cfg.w) if args.w_variants else None)
        except OSError as e:  # a full disk, a folder gone read-only: the files before stay whole
            where = f" {e.filename}" if e.filename else ""
            print(f"error: cannot write{where} ({e.strerror or e}); free space or pass another "
                  f"--results-dir, then rerun the same command", file=sys.stderr)
            return 2
        progress["finished"] += 1
        progress["left"] -= 1
        rec = store.read_record(paths[protocols[0]])
        if status == "ok":
            shown = "val" if args.no_summary else "test"
            print(f"seed {seed}: epochs {rec['epochs_run']}, selected epoch {rec['selected_epoch']}, "
                  f"{shown} HR@20 {100 * rec[shown]['hr@20']:.2f} % NDCG@20 "
                  f"{100 * rec[shown]['ndcg@20']:.2f} %, {60 * store.record_minutes(rec):.0f} s"
                  + (" over its stretches" if rec["wall"].get("resumed") else ""),
                  file=sys.stderr)
        else:
            failed += 1
            print(f"seed {seed}: FAILED ({rec['error']}); not averaged in", file=sys.stderr)
    if not args.no_summary:
        print(summarize(home, args.dataset, spec.name, protocols, seeds))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
