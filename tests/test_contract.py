"""One contract, checked for every registered model (DreamRec and the baselines alike)."""

import math

import pytest
import torch

from baselines.contract import Batch
from harness.models import MODELS
from harness.train import TrainConfig, sample_negatives, train
from tests.helpers import chain_splits

N_ITEMS = 100
SMALL = {"dreamrec": {"hidden_size": 32, "timesteps": 20},  # DreamRec's T=500 is slow to sample
         "preferdiff": {"hidden_size": 32, "timesteps": 20, "steps": 10},
         "diffurec": {"hidden_size": 32, "n_blocks": 1, "n_heads": 2, "timesteps": 8},
         # the official 0.4 dropout on the scorer's input holds the 12-epoch task at chance
         "adaranker": {"scorer_dropout": 0.0}}
LR = {"dreamrec": 1e-2, "diffrec": 1e-3, "adaranker": 3e-3}


def build(name):
    spec = MODELS[name]
    torch.manual_seed(0)
    return spec.build(N_ITEMS, spec.config_cls(**SMALL.get(name, {})))


def batch(model, B=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    length = torch.randint(1, 11, (B,), generator=g)
    hist = torch.randint(0, N_ITEMS, (B, 10), generator=g)
    hist[torch.arange(10) >= length[:, None]] = N_ITEMS
    target = torch.randint(0, N_ITEMS, (B,), generator=g)
    neg = sample_negatives(target, N_ITEMS, model.n_negatives, g) if model.n_negatives else None
    return Batch(hist, length, target, neg, g)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_scores_cover_the_real_items_only_and_the_loss_is_finite(name):
    model = build(name)
    b = batch(model)
    model.train()
    loss = model.calculate_loss(b)
    assert loss.shape == () and math.isfinite(loss.item())
    loss.backward()
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(b.history, b.length, torch.Generator().manual_seed(0))
    assert scores.shape == (32, N_ITEMS)  # no pad column: the pad can never be ranked
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_loss_falls_and_hr20_beats_random_on_a_learnable_task(name):
    splits = chain_splits(n_items=N_ITEMS)
    model = build(name)
    result = train(model, splits, TrainConfig(lr=LR.get(name, 1e-2), max_epochs=12, eval_every=4,
                                              patience=10),
                   seed=0, device=torch.device("cpu"), progress=False)
    losses = [e["loss"] for e in result.history]
    assert losses[-1] < losses[0]
    assert result.test.metrics["hr@20"] > 0.2 + 0.1  # random ranking of 100 items: 0.2
