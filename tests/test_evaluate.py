"""Full-ranking metrics against hand-computed answers."""

import math

import numpy as np
import pytest
import torch

from harness.data import Split
from harness.errors import HarnessError
from harness.evaluate import ModelOutputError, evaluate, row_metrics, summarize, target_ranks


def test_ranks_count_items_scoring_at_least_the_target():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3],   # target 2: only item 1 above -> rank 1
                           [0.4, 0.4, 0.4, 0.4],   # all tied: ties rank above the target -> 3
                           [0.9, 0.1, 0.2, 0.3]])  # target 0 is top -> rank 0
    assert target_ranks(scores, torch.tensor([2, 0, 0])).tolist() == [1, 3, 0]


def test_hr_and_ndcg_by_hand():
    ranks = np.array([0, 1, 9, 10, 19, 20, 49, 50])
    m = row_metrics(ranks)
    assert m["hr@10"].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert m["hr@20"].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert m["hr@50"].tolist() == [1, 1, 1, 1, 1, 1, 1, 0]
    np.testing.assert_allclose(m["ndcg@10"][:3], [1.0, 1 / math.log2(3), 1 / math.log2(11)])
    assert m["ndcg@20"][4] == pytest.approx(1 / math.log2(21))
    assert m["ndcg@50"][7] == 0.0
    s = summarize(ranks)
    assert s["hr@20"] == pytest.approx(5 / 8)
    assert s["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 8)


def _split(n_rows, n_items, seed=0):
    rng = np.random.default_rng(seed)
    hist = np.full((n_rows, 10), n_items, dtype=np.int64)
    hist[:, :3] = rng.integers(0, n_items, (n_rows, 3))
    return Split(hist, np.full(n_rows, 3, dtype=np.int64), rng.integers(0, n_items, n_rows))


def test_every_row_counted_whatever_the_batch_size():
    split = _split(1003, 57)
    a, b = torch.randn(2, 58, 57, generator=torch.Generator().manual_seed(0))

    def score(h, ln, g):  # a fixed function of each row's content
        return a[h[:, 0]] + b[h[:, 1]] * h[:, 2:3]

    expected = target_ranks(score(torch.from_numpy(split.history), None, None),
                            torch.from_numpy(split.target)).numpy()
    for bs in (1, 100, 256, 5000):
        ev = evaluate(score, split, 57, batch_size=bs)
        assert ev.ranks.shape == (1003,)
        np.testing.assert_array_equal(ev.ranks, expected)


def test_scores_including_the_pad_column_are_rejected():
    split = _split(4, 5)
    with pytest.raises(ModelOutputError, match=r"expected \(4, 5\).*without the pad column"):
        evaluate(lambda h, ln, g: torch.zeros(h.shape[0], 6), split, 5)


def test_non_finite_scores_are_rejected():
    split = _split(4, 5)
    with pytest.raises(ModelOutputError, match="non-finite"):
        evaluate(lambda h, ln, g: torch.full((h.shape[0], 5), float("nan")), split, 5)


def test_mask_history_removes_seen_items_for_the_ranking():
    hist = np.array([[1, 2, 5, 5, 5, 5, 5, 5, 5, 5], [3, 5, 5, 5, 5, 5, 5, 5, 5, 5]])
    split = Split(hist, np.array([2, 1]), np.array([0, 3]))
    scores = torch.tensor([[0.5, 0.9, 0.8, 0.1, 0.0],   # items 1, 2 seen and above target 0
                           [0.1, 0.2, 0.3, 0.9, 0.0]])  # target 3 repeats the history
    fn = lambda h, ln, g: scores  # noqa: E731
    assert evaluate(fn, split, 5).ranks.tolist() == [2, 0]
    assert evaluate(fn, split, 5, mask_history=True).ranks.tolist() == [0, 4]


def test_empty_split_is_an_error():
    empty = Split(np.zeros((0, 10), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    with pytest.raises(HarnessError, match="empty"):
        evaluate(lambda h, ln, g: torch.zeros(0, 5), empty, 5)


def test_coverage_is_the_share_of_items_in_some_top_20():
    split = _split(300, 100)
    same = torch.arange(100, dtype=torch.float32)  # every row ranks items 99..80 first

    ev = evaluate(lambda h, ln, g: same.expand(h.shape[0], 100), split, 100, batch_size=64)
    assert ev.metrics["coverage@20"] == pytest.approx(0.20)  # a constant ranking: 20 of 100
    # rows that rank by their first history item spread their top 20 over every item
    ev = evaluate(lambda h, ln, g: -((torch.arange(100) - h[:, :1]) % 100).float(), split, 100,
                  batch_size=64)
    firsts = set(split.history[:, 0].tolist())
    covered = {(f + j) % 100 for f in firsts for j in range(20)}
    assert ev.metrics["coverage@20"] == pytest.approx(len(covered) / 100)
    assert ev.metrics["coverage@20"] > 0.9


def test_most_popular_ranks_items_by_training_target_counts_the_same_for_every_row():
    from harness.data import Split
    from harness.evaluate import most_popular, popularity_scores

    def split(targets):
        n = len(targets)
        hist = np.full((n, 10), 5, dtype=np.int64)
        return Split(history=hist, length=np.ones(n, dtype=np.int64), target=np.asarray(targets))

    train = split([3, 3, 3, 1, 1, 4])  # counts: item 3 x3, item 1 x2, item 4 x1, items 0 and 2 x0
    s = popularity_scores(train, 5)
    assert s.argsort(descending=True).tolist() == [3, 1, 4, 0, 2]  # ties to the lower id
    ev = most_popular(train, split([3, 1, 0, 2]), 5)
    assert ev.ranks.tolist() == [0, 1, 3, 4]
    assert ev.metrics["hr@20"] == 1.0
    assert ev.metrics["ndcg@20"] == pytest.approx(np.mean(1 / np.log2(np.array([0, 1, 3, 4]) + 2)))
    assert ev.metrics["coverage@20"] == 1.0  # 5 items, all in the one top-20 list
