"""``python -m harness.embeddings``: the paper's Figure 3 and the numbers a picture cannot give.

For each row (a model, or ``<model>.<name>`` for the model under
``harness/configs/<dataset>/<model>.<name>.toml``) it reads the validation-selected state that
``harness.run --save-model`` kept for the seed (``--train`` trains the missing ones first, as
their own runs), takes the real items' embedding table, and reports:

- a t-SNE map of every item (scikit-learn's ``TSNE`` with its defaults, as the paper states,
  seeded), items that occur as a training target and items that never do in two colours: the
  paper's Figure 3 shows SASRec trained on positives only (``sasrec.positives``), SASRec and
  DreamRec on zhihu;
- the embedding norms of both kinds of item (median and the 10th and 90th percentiles): an
  embedding that no loss reaches keeps its initial norm;
- the uniformity of the normalised embeddings (Wang and Isola, ICML 2020):
  ``log mean over pairs i < j of exp(-2 |x_i - x_j|^2)``, from 0 (every item the same point)
  down to about -4 (spread over the sphere); a collapsed table is near 0.

Writes ``results/figures/fig3_tsne-<dataset>.png``/``.pdf``, ``results/embeddings/<dataset>/
<row>-seed<S>.json`` (the numbers, the 2-D map and the provenance) and ``results/embeddings-
<dataset>.md``. Example::

    python -m harness.embeddings --dataset zhihu --rows sasrec.positives,sasrec,dreamrec --train
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

from harness import cli, store
from harness.data import (DATASETS, check_dataset_name, history_counts, load_dataset,
                          target_counts)
from harness.errors import HarnessError
from harness.models import CONFIG_DIR, get_model
from harness.run import pick_device, record_base

UNIFORMITY_T = 2.0
PAIR_BLOCK = 1024


def row_config(row: str, dataset: str) -> tuple[str, str | None]:
    """(model, config file or None) of a row: ``sasrec`` or ``sasrec.positives``."""
    model, _, name = row.partition(".")
    get_model(model)
    if not name:
        return model, None
    path = CONFIG_DIR / dataset / f"{row}.toml"
    if not path.is_file():
        raise HarnessError(f"row {row!r} needs {path}, which does not exist; rows are models or "
                           f"<model>.<name> with a config file harness/configs/{dataset}/"
                           f"<model>.<name>.toml")
    return model, str(path)


def uniformity(x: torch.Tensor, t: float = UNIFORMITY_T) -> float:
    """Wang and Isola's uniformity of the rows of ``x`` after L2 normalisation: log of the mean
    over all pairs i < j of exp(-t |x_i - x_j|^2), computed in blocks of rows."""
    x = torch.nn.functional.normalize(x.double(), dim=1)
    n = x.shape[0]
    total = torch.zeros((), dtype=torch.float64)
    for start in range(0, n, PAIR_BLOCK):
        block = x[start:start + PAIR_BLOCK]
        d2 = (2 - 2 * block @ x.T).clamp_min(0)  # |a - b|^2 of unit vectors
        upper = torch.arange(n)[None, :] > torch.arange(start, start + len(block))[:, None]
        total += torch.exp(-t * d2)[upper].sum()
    return float(torch.log(total / (n * (n - 1) / 2)))


def norm_summary(norms: np.ndarray) -> dict[str, float]:
    if len(norms) == 0:
        return {}
    q10, q50, q90 = np.percentile(norms, [10, 50, 90])
    return {"n": int(len(norms)), "p10": float(q10), "median": float(q50), "p90": float(q90)}


def item_table(row: str, dataset: str, splits, seed: int, device, train: bool,
               results_dir: Path, threads: int = 0) -> tuple[np.ndarray, dict]:
    """The real items' embeddings [n_items, H] of a row's kept state, and its provenance
    (``train``: a missing state is trained first by ``harness.run``, its records written under
    ``results_dir``)."""
    model_name, config = row_config(row, dataset)
    spec = get_model(model_name)
    model_cfg, train_cfg = spec.configs(dataset, None, config)
    _, chash = record_base(spec, dataset, splits, model_cfg, train_cfg)
    path = store.state_path(store.default_model_dir(), dataset, model_name, chash, seed)
    saved = store.load_state(path)
    if saved is None and train:
        from harness import run
        argv = ["--model", model_name, "--dataset", dataset, "--seeds", "1", "--first-seed",
                str(seed), "--save-model", "--no-progress", "--no-summary", "--results-dir",
                str(results_dir), "--device", str(device)]
        if config:
            argv += ["--config", config]
        if threads:
            argv += ["--threads", str(threads)]
        if run.main(argv) != 0:
            raise HarnessError(f"training {row} seed {seed} on {dataset} failed")
        saved = store.load_state(path)
    if saved is None:
        raise HarnessError(
            f"no kept state for {row} on {dataset}, seed {seed} ({path}); make it with python -m "
            f"harness.run --model {model_name} --dataset {dataset}"
            f"{' --config ' + config if config else ''} --first-seed {seed} --seeds 1 "
            f"--save-model, or pass --train")
    model = spec.build(splits.n_items, model_cfg)
    model.load_state_dict(saved["state_dict"])
    table = model.item_table().detach().float().cpu().numpy()
    return table, {"row": row, "model": model_name, "config_file": config, "config_hash": chash,
                   "selected_epoch": int(saved.get("selected_epoch", -1)), "seed": seed}


def tsne_map(table: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    return TSNE(random_state=seed).fit_transform(table)  # scikit-learn's defaults otherwise


def plot(dataset: str, results: list[dict], trained: np.ndarray, stem: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 4.3), squeeze=False)
    for ax, res in zip(axes[0], results):
        xy = np.asarray(res["tsne"])
        ax.scatter(*xy[trained].T, s=2, c="tab:blue", alpha=0.5, linewidths=0,
                   label="training target")
        ax.scatter(*xy[~trained].T, s=2, c="tab:red", alpha=0.7, linewidths=0,
                   label="never a training target")
        ax.set_title(f"{res['row']}\nuniformity {res['uniformity']:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, markerscale=5, frameon=False)
    fig.suptitle(f"t-SNE of the item embeddings on {dataset} (seed {results[0]['seed']})")
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    store.save_figure(fig, stem)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.embeddings",
                                 description=cli.description(__doc__))
    ap.add_argument("--dataset", default="zhihu", help=f"one of: {', '.join(DATASETS)} "
                    "(default: zhihu)")
    ap.add_argument("--rows", default="sasrec.positives,sasrec,dreamrec",
                    help="comma-separated models or <model>.<name> config rows (default: the "
                    "paper's Figure 3: sasrec.positives,sasrec,dreamrec)")
    ap.add_argument("--seed", type=int, default=0, help="the seed whose kept states to read (default: 0)")
    ap.add_argument("--train", action="store_true",
                    help="train a row whose state is not kept (as harness.run --save-model)")
    ap.add_argument("--device", default="cpu", help=cli.device("cpu"))
    ap.add_argument("--threads", type=int, default=0, help=cli.THREADS)
    ap.add_argument("--data-dir", default=None, help=cli.DATA_DIR)
    ap.add_argument("--results-dir", default="results",
                    help="where the outputs go, and the records of what --train runs (default: "
                    "results/)")
    args = ap.parse_args(argv)
    store.git_state()
    try:
        check_dataset_name(args.dataset)
        rows = [r.strip() for r in args.rows.split(",") if r.strip()]
        if not rows:
            raise HarnessError("--rows is empty; give e.g. --rows sasrec,dreamrec")
        for r in rows:
            row_config(r, args.dataset)
        if args.seed < 0:
            raise HarnessError(f"--seed must be >= 0, got {args.seed}")
        threads = cli.torch_threads(args.threads)
        device = pick_device(args.device)
        splits = load_dataset(args.dataset, args.data_dir)
        res_dir = Path(args.results_dir)
        store.check_writable(res_dir, "--results-dir")
        tables = [item_table(r, args.dataset, splits, args.seed, device, args.train, res_dir,
                             args.threads) for r in rows]
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(threads)
    trained = target_counts(splits.train, splits.n_items) > 0
    # a row whose table learns through the histories only (dreamrec.detached) leaves these alone
    unread = history_counts(splits.train, splits.n_items) == 0
    results = []
    for table, meta in tables:
        norms = np.linalg.norm(table, axis=1)
        res = dict(meta, dataset=args.dataset, n_items=int(splits.n_items),
                   data_checksum=splits.checksum, git=store.git_state(), created=store.now_iso(),
                   norms={"training targets": norm_summary(norms[trained]),
                          "never training targets": norm_summary(norms[~trained]),
                          "never in a training history": norm_summary(norms[unread])},
                   uniformity=uniformity(torch.from_numpy(table)),
                   tsne=np.round(tsne_map(table, args.seed), 4).tolist())
        store.write_json(res_dir / "embeddings" / args.dataset / f"{meta['row']}-seed{args.seed}.json",
                         res)
        results.append(res)
    plot(args.dataset, results, trained, res_dir / "figures" / f"fig3_tsne-{args.dataset}")
    body = []
    for res in results:
        a, b, c = (res["norms"][k] for k in ("training targets", "never training targets",
                                              "never in a training history"))
        fmt = lambda q: f"{q['median']:.3f} [{q['p10']:.3f}, {q['p90']:.3f}]" if q else "—"  # noqa: E731
        body.append([res["row"], res["selected_epoch"], fmt(a), fmt(b), fmt(c),
                     f"{res['uniformity']:.3f}"])
    text = "\n".join([
        f"# Item embeddings on {args.dataset}, seed {args.seed}", "",
        f"Produced by `python -m harness.embeddings {' '.join(argv if argv is not None else sys.argv[1:])}`"
        f" (commit {store.git_state()['commit']}); the numbers are in `embeddings/{args.dataset}/`, "
        f"the map in `figures/fig3_tsne-{args.dataset}.png`. {int(trained.sum())} of "
        f"{splits.n_items} items occur as a training target; {int(unread.sum())} never occur in a "
        f"training history (a table that learns through the histories only leaves them as "
        f"initialised).", "",
        tabulate(body, headers=["row", "selected epoch", "norm, training targets: median [p10, p90]",
                                "norm, never training targets", "norm, never in a history",
                                "uniformity (t = 2)"],
                 tablefmt="github"), "",
        "Uniformity: log mean over item pairs of exp(-2 |x_i - x_j|^2) of the L2-normalised "
        "embeddings (Wang and Isola, 2020): near 0 when every item points the same way, lower "
        "when they spread. t-SNE: scikit-learn's TSNE with its defaults, random_state = the seed.",
        ""])
    store.write_text(res_dir / f"embeddings-{args.dataset}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
