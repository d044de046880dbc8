"""S-IPS and AdaRanker: the parts the shared contract test does not reach."""

import math

import pytest
import torch
import torch.nn.functional as F

from baselines.adaranker import AdaRanker, AdaRankerConfig
from baselines.contract import Batch
from baselines.ips import IPS, IPSConfig
from harness.train import TrainConfig, sample_negatives, train
from tests.helpers import chain_splits

N = 50


def rows(B=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    length = torch.randint(1, 11, (B,), generator=g)
    hist = torch.randint(0, N, (B, 10), generator=g)
    hist[torch.arange(10) >= length[:, None]] = N
    target = torch.randint(0, N, (B,), generator=g)
    return hist, length, target, g


# -- S-IPS ----------------------------------------------------------------------------------

def ips(**kw):
    torch.manual_seed(0)
    return IPS(N, IPSConfig(**kw))


def test_ips_weights_are_clipped_inverse_propensities_that_favour_rare_targets(monkeypatch):
    model = ips(propensity_clip=0.01, self_normalize=False)
    hist, length, _, _ = rows(B=3)
    probs = torch.full((3, N), 1e-9)
    probs[:, 0], probs[:, 1], probs[:, 2] = 0.5, 0.001, 0.0  # popular, rare, never predicted
    monkeypatch.setattr(model, "propensity_log_probs", lambda h, ln: probs.log())
    w = model.weights(hist, length, torch.tensor([0, 1, 2]))
    assert w.tolist() == pytest.approx([2.0, 100.0, 100.0])  # 1 / max(p, 0.01)
    assert torch.isfinite(w).all()
    model.config = IPSConfig(propensity_clip=0.01)  # self-normalised: same ratios, mean 1
    wn = model.weights(hist, length, torch.tensor([0, 1, 2]))
    assert wn.mean().item() == pytest.approx(1.0) and (wn[1] / wn[0]).item() == pytest.approx(50.0)


def test_ips_trains_the_propensity_first_then_the_recommender_without_gradient_through_p():
    model = ips(propensity_epochs=2).train()
    hist, length, target, g = rows()
    batch = Batch(hist, length, target, sample_negatives(target, N, 1, g), g)
    model.set_epoch(0)
    model.calculate_loss(batch).backward()
    assert model.propensity.item_embedding.weight.grad is not None
    assert model.net.item_embedding.weight.grad is None
    model.zero_grad(set_to_none=True)
    model.set_epoch(2)
    loss = model.calculate_loss(batch)
    loss.backward()
    assert all(p.grad is None for p in model.propensity.parameters())  # frozen, no gradient
    assert model.net.item_embedding.weight.grad is not None
    assert model.propensity.training  # eval mode only while computing the weights


def test_the_trainer_does_not_evaluate_during_the_propensity_epochs():
    splits = chain_splits(n_items=N, n_train=300, n_eval=50)
    result = train(ips(propensity_epochs=2), splits,
                   TrainConfig(lr=1e-2, max_epochs=4, eval_every=1, patience=10), seed=0,
                   device=torch.device("cpu"), progress=False)
    assert [e["epoch"] for e in result.history if "val" in e] == [2, 3]
    assert result.history[0]["loss"] > 3.0  # cross-entropy over 50 items first (log 50 = 3.9)


@pytest.mark.parametrize("kw, key", [(dict(propensity_clip=0.0), "propensity_clip"),
                                     (dict(propensity_clip=1.5), "propensity_clip"),
                                     (dict(propensity_epochs=0), "propensity_epochs")])
def test_ips_config_rejects_bad_values_naming_the_key(kw, key):
    with pytest.raises(ValueError, match=key):
        IPSConfig(**kw)


# -- AdaRanker ---------------------------------------------------------------------------------

def ada(**kw):
    torch.manual_seed(0)
    return AdaRanker(N, AdaRankerConfig(**kw)).eval()


def test_adaranker_without_modulation_is_its_base_scorer():
    model = ada(modulate=False)
    hist, length, _, _ = rows()
    with torch.no_grad():
        got = model.full_sort_predict(hist, length)
        seq = model.net(model.interaction(hist, length)[model.net.ITEM_SEQ], length)  # plain SASRec
        items = model.net.item_embedding.weight[1:N + 1]
        pairs = torch.cat((seq.unsqueeze(1).expand(-1, N, -1), items.unsqueeze(0).expand(len(seq), -1, -1)), -1)
        W1 = torch.cat((model.w1_seq.weight, model.w1_item.weight), dim=1)  # over [sequence; item]
        expect = model.w2(F.relu(pairs @ W1.T + model.w1_seq.bias)).squeeze(-1)
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-5)


def test_adaranker_scores_change_with_z_and_blocks_do_not_change_them():
    model = ada(score_block=N * 64 * 3)  # three rows per block
    with torch.no_grad():
        model.film.weight.normal_(0, 0.5)  # a trained, non-identity input modulation
    hist, length, _, _ = rows()
    z1, z2 = torch.zeros(32), torch.ones(32)
    with torch.no_grad():
        a, b = model.full_sort_predict(hist, length, z=z1), model.full_sort_predict(hist, length, z=z2)
        assert (a - b).abs().max() > 1e-3
        one_block = ada(score_block=2**30)
        one_block.load_state_dict(model.state_dict())
        torch.testing.assert_close(one_block.full_sort_predict(hist, length, z=z1), a)
        # the catalogue's own latent when no z is given: deterministic in eval mode
        torch.testing.assert_close(model.full_sort_predict(hist, length), model.full_sort_predict(hist, length))


def test_adaranker_full_ranking_equals_its_training_scorer_under_modulation():
    """Full ranking folds the hidden modulation into the row and item parts and scores in
    blocks; it must give what the training path's pair scorer gives for every item."""
    model = ada(score_block=N * 64 * 5)
    with torch.no_grad():
        model.film.weight.normal_(0, 0.5)
        model.slot_values.normal_(0, 0.5)  # a non-trivial scale and shift of the hidden layer
    hist, length, _, _ = rows()
    z = torch.randn(32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model.full_sort_predict(hist, length, z=z)
        film, hidden_mod = model._mod(z)
        seq = model.sequence(hist, length, film)
        items = model.net.item_embedding.weight[1:N + 1]
        expect = model.pair_scores(seq, items.unsqueeze(0).expand(len(seq), -1, -1), hidden_mod)
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-5)


def test_adaranker_latent_follows_the_candidate_distribution():
    model = ada()
    emb = model.net.item_embedding.weight[1:N + 1].detach()
    z_all, kl = model.latent(emb, sample=False)
    z_few, _ = model.latent(emb[:5], sample=False)
    assert not torch.allclose(z_all, z_few) and math.isfinite(kl.item()) and kl.item() >= 0


@pytest.mark.parametrize("kw, key", [(dict(memory_slots=0), "memory_slots"),
                                     (dict(encoder="bert"), "encoder")])
def test_adaranker_config_rejects_bad_values_naming_the_key(kw, key):
    with pytest.raises(ValueError, match=key):
        AdaRankerConfig(**kw)


def test_adaranker_on_gru4rec_encoder_scores_every_item():
    model = ada(encoder="gru4rec")
    hist, length, _, _ = rows()
    with torch.no_grad():
        assert model.full_sort_predict(hist, length).shape == (16, N)
