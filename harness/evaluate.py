"""Full-ranking evaluation: one evaluator for every model.

Every row of a split is scored against all ``n_items`` real items (the pad id is not a column:
a model returning any other width is rejected), batched so memory stays bounded. The result
keeps each row's rank of its target; HR@K and NDCG@K per row follow from it. It also reports coverage@20,
the share of the items that some row gets in its top 20: a diagnostic that exposes a model
recommending the same items to every row, whatever its HR.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from harness.data import Split, target_counts
from harness.errors import HarnessError

KS: tuple[int, ...] = (10, 20, 50)
_RANK_BLOCK = 32  # rows per comparison block in target_ranks
#: coverage@K: the fraction of the items that appear in at least one row's top K. A model that
#: ranks every row alike (a collapsed one) covers K / n_items, however many targets it hits.
COVERAGE_K = 20

ScoreFn = Callable[[Tensor, Tensor, torch.Generator | None], Tensor]


class ModelOutputError(HarnessError):
    """A model returned scores of the wrong shape or non-finite scores."""


def target_ranks(scores: Tensor, target: Tensor) -> Tensor:
    """0-based rank of each row's target among all items, [B, n_items], [B] -> [B] long.

    Ties are counted against the target (an item scoring exactly as the target ranks above it),
    so a model that gives every item the same score never hits.
    """
    t_score = scores.gather(1, target.unsqueeze(1))  # [B, 1]
    out = torch.empty(scores.shape[0], dtype=torch.int32, device=scores.device)
    # in blocks of rows, so that the comparison stays in cache: 4x faster than one pass over
    # [4096, 4838] on a CPU (and the int32 sum avoids a copy to int64)
    for start in range(0, scores.shape[0], _RANK_BLOCK):
        sl = slice(start, start + _RANK_BLOCK)
        torch.sum(scores[sl] >= t_score[sl], dim=1, dtype=torch.int32, out=out[sl])
    return out.long() - 1


def row_metrics(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, np.ndarray]:
    """Per-row HR@K and NDCG@K from 0-based ranks [N] -> {"hr@K": [N], "ndcg@K": [N]}."""
    ranks = np.asarray(ranks)
    out: dict[str, np.ndarray] = {}
    gain = 1.0 / np.log2(ranks.astype(np.float64) + 2.0)
    for k in ks:
        hit = ranks < k
        out[f"hr@{k}"] = hit.astype(np.float64)
        out[f"ndcg@{k}"] = np.where(hit, gain, 0.0)
    return out


def summarize(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Means of :func:`row_metrics` over rows -> {"hr@10": ..., "ndcg@50": ...}."""
    return {name: float(v.mean()) for name, v in row_metrics(ranks, ks).items()}


@dataclass
class Evaluation:
    """Result of one pass over a split: per-row ranks [N] and their means."""

    ranks: np.ndarray
    metrics: dict[str, float]


@torch.no_grad()
def evaluate(
    score_fn: ScoreFn,
    split: Split,
    n_items: int,
    device: torch.device | str = "cpu",
    batch_size: int = 4096,
    generator: torch.Generator | None = None,
    mask_history: bool = False,
) -> Evaluation:
    """Rank every row of ``split`` with ``score_fn(history, length, generator) -> [B, n_items]``.

    ``mask_history=True`` removes the items of each row's history from its ranking (for every
    model alike; a target that repeats a history item then counts as a miss); the default keeps
    them, as the paper does. Rows are processed in batches of
    ``batch_size`` and all of them are counted.
    """
    device = torch.device(device)
    N = len(split)
    if N == 0:
        raise HarnessError("cannot evaluate an empty split")
    ranks = np.empty(N, dtype=np.int64)
    recommended = torch.zeros(n_items, dtype=torch.bool, device=device)  # in some top-K list
    history = torch.from_numpy(split.history)
    length = torch.from_numpy(split.length)
    target = torch.from_numpy(split.target)
    for start in range(0, N, batch_size):
        sl = slice(start, min(start + batch_size, N))
        h, ln, tg = history[sl].to(device), length[sl].to(device), target[sl].to(device)
        scores = score_fn(h, ln, generator)
        if scores.shape != (h.shape[0], n_items):
            raise ModelOutputError(
                f"model returned scores of shape {tuple(scores.shape)}, expected "
                f"({h.shape[0]}, {n_items}): score the real items only, without the pad column"
            )
        # min and max are finite exactly when every score is (NaN propagates through both);
        # one pass, 10x cheaper than isfinite().all()
        if not torch.isfinite(torch.stack(torch.aminmax(scores))).all():
            raise ModelOutputError("model returned non-finite scores (NaN or inf)")
        if mask_history:
            real = h < n_items  # [B, L]
            rows = torch.arange(h.shape[0], device=device).unsqueeze(1).expand_as(h)
            scores = scores.index_put((rows[real], h[real]), torch.tensor(float("-inf"), device=device))
        ranks[sl] = target_ranks(scores, tg).cpu().numpy()
        recommended[scores.topk(min(COVERAGE_K, n_items), dim=1).indices.flatten()] = True
    metrics = summarize(ranks)
    metrics[f"coverage@{COVERAGE_K}"] = float(recommended.float().mean())
    return Evaluation(ranks=ranks, metrics=metrics)


def popularity_scores(train: Split, n_items: int) -> Tensor:
    """[n_items] scores of the most-popular reference: items ordered by their count as a
    training target, ties broken towards the lower item id (so the top 20 is one fixed list).
    The scores are the positions in that order (n_items for the first, down to 1), exact in
    float32 whatever the counts."""
    order = np.lexsort((np.arange(n_items), -target_counts(train, n_items)))
    scores = np.empty(n_items, dtype=np.float32)
    scores[order] = np.arange(n_items, 0, -1, dtype=np.float32)
    return torch.from_numpy(scores)


def most_popular(train: Split, split: Split, n_items: int, mask_history: bool = False) -> Evaluation:
    """The most-popular reference on ``split``: every row gets the same ranking, by training
    target counts, through the same evaluator as the models. It needs no training and no seed;
    a model below it has learned less than the item counts say."""
    scores = popularity_scores(train, n_items)
    return evaluate(lambda h, ln, g: scores.expand(h.shape[0], -1), split, n_items,
                    mask_history=mask_history)
