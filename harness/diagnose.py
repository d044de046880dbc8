"""``python -m harness.diagnose``: what a trained model recommends, beyond its hit rate.

Reads a validation-selected state kept by ``harness.run --save-model`` (or by
``harness.guidance``), scores val and test as the run did, and reports:

- coverage@20 and the share of all top-20 slots taken by the 20 most recommended items (1.0:
  every row gets the same list);
- HR@20 on the rows whose target never occurs as a training target, and on the others;
- for a model with item embeddings (DreamRec), their norms for items that are and are not
  training targets: an embedding that no loss ever reaches keeps its initial norm;
- with ``--against KEY=VALUE``, the same state scored with those settings changed (ones that
  leave its parameters as they are: ``modulate=false`` for AdaRanker, ``w=0`` for DreamRec):
  HR@20 both ways and how far the two top-20 lists agree. A module that changes nothing it
  ranks shows an overlap near 1.

Example::

    python -m harness.run --model dreamrec --dataset zhihu --seeds 1 --save-model
    python -m harness.diagnose --model dreamrec --dataset zhihu --seed 0 \\
        --out results/diagnostics/zhihu-dreamrec-seed0.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

from harness import cli, store
from harness.data import DATASETS, check_dataset_name, load_dataset, target_counts
from harness.errors import HarnessError
from harness.evaluate import target_ranks
from harness.models import MODELS, get_model
from harness.run import parse_overrides, pick_device, record_base
from harness.train import eval_generator

K = 20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.diagnose", description=cli.description(__doc__))
    ap.add_argument("--model", default="dreamrec",
                    help=f"one of: {', '.join(sorted(MODELS))} (default: dreamrec)")
    ap.add_argument("--dataset", default="zhihu",
                    help=f"one of: {', '.join(DATASETS)} (default: zhihu)")
    ap.add_argument("--seed", type=int, default=0, help="the seed whose saved state to read (default: 0)")
    ap.add_argument("--device", default="cpu", help=cli.device("cpu"))
    ap.add_argument("--threads", type=int, default=0, help=cli.THREADS)
    ap.add_argument("--data-dir", default=None, help=cli.DATA_DIR)
    ap.add_argument("--config", default=None, metavar="FILE",
                    help="the settings file the run used, if not the model's own (e.g. "
                    "harness/configs/zhihu/dreamrec.sphere.toml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=cli.SET)
    ap.add_argument("--against", action="append", default=[], metavar="KEY=VALUE",
                    help="also score the same state with this model setting changed (one that "
                    "leaves its parameters as they are, e.g. modulate=false for adaranker), and "
                    "compare the two top-20 lists")
    ap.add_argument("--out", default=None, help="also write the report to this file")
    args = ap.parse_args(argv)
    store.git_state()
    try:
        spec = get_model(args.model)
        check_dataset_name(args.dataset)
        overrides = parse_overrides(args.set)
        model_cfg, train_cfg = spec.configs(args.dataset, overrides, args.config)
        against = parse_overrides(args.against)
        alt_cfg = None
        if against:
            alt_cfg, alt_train = spec.configs(args.dataset, {**overrides, **against}, args.config)
            if alt_train != train_cfg:
                raise HarnessError(f"--against takes model settings of {spec.name}; "
                                   f"{', '.join(against)} include training settings")
        threads = cli.torch_threads(args.threads)
        device = pick_device(args.device)
        splits = load_dataset(args.dataset, args.data_dir)
        _, chash = record_base(spec, args.dataset, splits, model_cfg, train_cfg)
        path = store.state_path(store.default_model_dir(), args.dataset, spec.name, chash, args.seed)
        saved = store.load_state(path)
        if saved is None:
            raise HarnessError(
                f"no saved state for {spec.name} on {args.dataset}, seed {args.seed}, this config "
                f"({path}); make it with python -m harness.run --model {spec.name} --dataset "
                f"{args.dataset}{' --config ' + args.config if args.config else ''} "
                f"--first-seed {args.seed} --seeds 1 --save-model")
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(threads)
    model = spec.build(splits.n_items, model_cfg)
    model.load_state_dict(saved["state_dict"])
    model.to(device).eval()
    alt = None
    if alt_cfg is not None:
        alt = spec.build(splits.n_items, alt_cfg)
        try:
            alt.load_state_dict(saved["state_dict"])
        except RuntimeError:
            print(f"error: --against {' '.join(args.against)} changes {spec.name}'s parameters; "
                  f"give settings that only change how the state scores", file=sys.stderr)
            return 2
        alt.to(device).eval()
    epoch = int(saved["selected_epoch"])
    n = splits.n_items
    never = target_counts(splits.train, n) == 0
    rows, alt_rows = [], []
    for split in ("val", "test"):
        sp = splits.split(split)
        gen = eval_generator(device, args.seed, epoch, split)
        alt_gen = eval_generator(device, args.seed, epoch, split)  # the same draws, as far as
        ranks, counts = [], np.zeros(n, dtype=np.int64)  # the other setting uses them
        alt_ranks, overlap = [], []
        with torch.no_grad():
            for start in range(0, len(sp), train_cfg.eval_batch_size):
                sl = slice(start, start + train_cfg.eval_batch_size)
                h, ln, t = (torch.from_numpy(a[sl]).to(device) for a in (sp.history, sp.length, sp.target))
                scores = model.full_sort_predict(h, ln, gen)
                ranks.append(target_ranks(scores, t).cpu().numpy())
                top = scores.topk(K, dim=1).indices
                counts += np.bincount(top.flatten().cpu().numpy(), minlength=n)
                if alt is not None:
                    alt_scores = alt.full_sort_predict(h, ln, alt_gen)
                    alt_ranks.append(target_ranks(alt_scores, t).cpu().numpy())
                    alt_top = alt_scores.topk(K, dim=1).indices
                    same = (top.unsqueeze(2) == alt_top.unsqueeze(1)).any(2).sum(1)
                    overlap.append(same.cpu().numpy())
        r = np.concatenate(ranks)
        if alt is not None:
            o = np.concatenate(overlap) / K
            alt_rows.append([split, f"{100 * (r < K).mean():.2f}",
                             f"{100 * (np.concatenate(alt_ranks) < K).mean():.2f}",
                             f"{o.mean():.4f}", f"{100 * (o == 1).mean():.1f}"])
        hit = r < K
        unseen = never[sp.target]
        top = np.sort(counts)[::-1][:K].sum() / counts.sum()
        rows.append([split, len(sp), f"{100 * hit.mean():.2f}", f"{100 * (counts > 0).mean():.2f}",
                     f"{top:.3f}", f"{100 * never[counts > 0].mean():.1f}",
                     f"{unseen.sum()} ({100 * unseen.mean():.1f} %)",
                     f"{100 * hit[unseen].mean():.2f}" if unseen.any() else "—",
                     f"{100 * hit[~unseen].mean():.2f}"])
    lines = [
        f"`python -m harness.diagnose {' '.join(argv if argv is not None else sys.argv[1:])}` "
        f"({store.now_iso()}, commit {store.git_state()['commit']})", "",
        f"{spec.name} on {args.dataset}, seed {args.seed}: the validation-selected state (epoch "
        f"{epoch}, config hash {chash}), scored as the run scored it. {int(never.sum())} of {n} "
        f"items never occur as a training target.", "",
        tabulate(rows, headers=["split", "rows", "HR@20 %", "coverage@20 %",
                                "top-20 share of the 20 most recommended", "% of recommended items never a train target",
                                "rows whose target is never a train target",
                                "HR@20 % on those rows", "HR@20 % on the other rows"],
                 tablefmt="github"), ""]
    if alt is not None:
        lines += [f"Against `{' '.join('--against ' + a for a in args.against)}` (the same "
                  f"state, scored with that setting changed):", "",
                  tabulate(alt_rows, headers=["split", "HR@20 % as trained", "HR@20 % against",
                                              "mean top-20 overlap", "rows with the same top-20 %"],
                           tablefmt="github"), ""]
    try:
        table = model.item_table()
    except NotImplementedError:  # a model without one table of item embeddings
        table = None
    if table is not None:
        norms = table.detach().norm(dim=1).cpu().numpy()
        rest = (f"items that never are {norms[never].mean():.3f} ± {norms[never].std():.3f}"
                if never.any() else "every item is one")
        lines += [f"Item embedding norms (mean ± std): items that are training targets "
                  f"{norms[~never].mean():.3f} ± {norms[~never].std():.3f}; {rest}.", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        store.write_text(Path(args.out), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
