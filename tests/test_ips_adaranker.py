"""S-IPS and AdaRanker: the parts the shared contract test does not reach."""

from pathlib import Path

import pytest
import torch

from baselines.adaranker import AdaRanker, AdaRankerConfig
from baselines.contract import Batch
from baselines.ips import IPS, IPSConfig
from harness.data import load_dataset
from harness.models import CONFIG_DIR, get_model
from harness.train import TrainConfig, sample_negatives, train, train_step
from tests.helpers import chain_splits

N = 50
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dreamrec"


def rows(B=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    length = torch.randint(1, 11, (B,), generator=g)
    hist = torch.randint(0, N, (B, 10), generator=g)
    hist[torch.arange(10) >= length[:, None]] = N
    target = torch.randint(0, N, (B,), generator=g)
    return hist, length, target, g


# -- IPS --------------------------------------------------------------------------------------

def ips(**kw):
    torch.manual_seed(0)
    return IPS(N, IPSConfig(**kw))


def test_ips_weights_are_clipped_inverse_propensities_that_favour_rare_targets(monkeypatch):
    model = ips(self_normalize=False)
    hist, length, _, _ = rows(B=3)
    model.clip.fill_(0.01)
    probs = torch.full((3, N), 1e-9)
    probs[:, 0], probs[:, 1], probs[:, 2] = 0.5, 0.001, 0.0  # popular, rare, never predicted
    monkeypatch.setattr(model, "propensity_log_probs", lambda h, ln: probs.log())
    w = model.weights(hist, length, torch.tensor([0, 1, 2]))
    assert w.tolist() == pytest.approx([2.0, 100.0, 100.0])  # 1 / max(p, 0.01)
    assert torch.isfinite(w).all()
    model.config = IPSConfig()  # self-normalised: same ratios, mean 1
    wn = model.weights(hist, length, torch.tensor([0, 1, 2]))
    assert wn.mean().item() == pytest.approx(1.0) and (wn[1] / wn[0]).item() == pytest.approx(50.0)


def test_popularity_propensity_is_the_authors_square_root_of_smoothed_target_shares():
    model = ips(propensity="popularity", clip_quantile=0.0, self_normalize=False)
    target = torch.tensor([0, 0, 0, 1, 2, 2])
    model.observe_training_rows(torch.full((6, 10), N), torch.ones(6, dtype=torch.long), target)
    counts = torch.bincount(target, minlength=N).double() + 1
    expect = (counts / counts.sum()).sqrt()  # calcu_propensity_score in the authors' SASRec.py
    torch.testing.assert_close(model.item_propensity.double(), expect, rtol=1e-6, atol=0)
    w = model.weights(torch.full((3, 10), N), torch.ones(3, dtype=torch.long), torch.tensor([0, 1, 5]))
    assert w[0] < w[1]  # rarer targets weigh more
    assert w[2] == w[1]  # an item never a target: clipped at the rarest training row's p
    assert not hasattr(model, "propensity") and model.warmup_epochs == 0  # nothing to train


def test_the_clip_is_a_quantile_of_the_training_propensities_and_binds_on_that_share():
    model = ips(propensity="popularity", clip_quantile=0.25)
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, N, (400,), generator=g) ** 2 % N  # a skewed popularity
    hist, length = torch.full((400, 10), N), torch.ones(400, dtype=torch.long)
    model.observe_training_rows(hist, length, target)
    stats = model.weight_stats(hist, length, target)
    p = model.item_propensity[target]
    assert stats["clip"] == pytest.approx(torch.quantile(p.double(), 0.25).item(), rel=1e-6)
    assert 0.2 <= stats["share_at_clip"] <= 0.45 and stats["cv"] > 0.1


def test_ips_trains_the_propensity_first_with_its_own_settings_then_the_recommender():
    model = ips(propensity_epochs=2, propensity_lr=0.05, propensity_weight_decay=0.5).train()
    hist, length, target, g = rows()
    model.observe_training_rows(hist, length, target)
    groups = model.param_groups(1e-3, 1e-6)
    assert [(x["lr"], x["weight_decay"]) for x in groups] == [(1e-3, 1e-6), (0.05, 0.5)]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.propensity.parameters()}
    batch = Batch(hist, length, target, sample_negatives(target, N, 1, g), g)
    model.set_epoch(0)
    assert model.clip.item() < 0  # not computed during the propensity epochs
    model.calculate_loss(batch).backward()
    assert model.propensity.item_embedding.weight.grad is not None
    assert model.net.item_embedding.weight.grad is None
    model.zero_grad(set_to_none=True)
    model.set_epoch(2)
    assert model.clip.item() > 0  # the quantile of p over the training rows, once
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


@pytest.mark.skipif(not DATA.is_dir(), reason=f"the authors' datasets are not at {DATA}")
@pytest.mark.parametrize("config", ["ips.toml", "ips.sequential.toml"])
def test_ips_weights_vary_under_the_shipped_zhihu_config(config):
    """The Table 1 row must reweight, whichever propensity validation picks for it: under the
    shipped zhihu settings of each (the sequential propensity trained as configured) the
    normalised weights vary (coefficient of variation >= 0.2) and the clip binds on at most a
    quarter of the training rows."""
    spec = get_model("ips")
    model_cfg, train_cfg = spec.configs("zhihu", {}, CONFIG_DIR / "zhihu" / config)
    splits = load_dataset("zhihu", DATA)
    torch.manual_seed(0)
    model = spec.build(splits.n_items, model_cfg)
    tr = splits.train
    h, ln, t = (torch.from_numpy(x.copy()) for x in (tr.history, tr.length, tr.target))
    model.observe_training_rows(h, ln, t)
    opt = torch.optim.AdamW(model.param_groups(train_cfg.lr, train_cfg.weight_decay), fused=True)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(model.warmup_epochs):  # the propensity epochs, as the trainer runs them
        model.set_epoch(epoch)
        perm = torch.randperm(len(t), generator=gen)
        for start in range(0, len(t), train_cfg.batch_size):
            train_step(model, opt, h, ln, t, perm[start:start + train_cfg.batch_size],
                       splits.n_items, gen)
    model.set_epoch(model.warmup_epochs)
    stats = model.weight_stats(h, ln, t)
    assert stats["cv"] >= 0.2, stats
    assert stats["share_at_clip"] <= 0.25, stats


@pytest.mark.parametrize("kw, key", [(dict(clip_quantile=1.0), "clip_quantile"),
                                     (dict(clip_quantile=-0.1), "clip_quantile"),
                                     (dict(propensity="uniform"), "propensity"),
                                     (dict(propensity_epochs=0), "propensity_epochs"),
                                     (dict(propensity_lr=0.0), "propensity_lr")])
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
        expect = model.layer2(torch.tanh(model.layer1(pairs))).squeeze(-1)
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-5)


def test_adaranker_generates_a_full_weight_matrix_per_row_from_its_memory_slots():
    """The memory units mix ``memory_slots`` arrays into one [H, 2H] matrix per row (the
    official MemoryUnit), which scales the scorer's first weight elementwise."""
    model = ada()
    H = model.hidden
    assert model.mem_w1.array.shape == (10, 2 * H * H) and model.mem_w1.index.shape == (10, H)
    z = torch.randn(3, H, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = model.adapt(z)
        attn = torch.softmax(z @ model.mem_w1.index.T, -1)
        expect = (attn @ model.mem_w1.array).view(3, H, 2 * H) * model.layer1.weight
    assert a.w1.shape == (3, H, 2 * H)
    torch.testing.assert_close(a.w1, expect)
    assert (a.w1[0] - a.w1[1]).abs().max() > 1e-4  # rows with other latents get other weights
    assert a.gamma.shape == (3, 1, 1) and (a.gamma[0] - a.gamma[1]).abs().item() > 0
    # the scorer mixes the slots applied to its input: the same scores as the generated matrix
    g = torch.Generator().manual_seed(1)
    seq, items = torch.randn(3, H, generator=g), torch.randn(3, 4, H, generator=g)
    with torch.no_grad():
        got = model.pair_scores(seq, items, a)
        pairs = torch.cat((seq.unsqueeze(1).expand(-1, 4, -1), items), -1)
        hidden = torch.tanh(pairs @ expect.transpose(1, 2) + a.b1.unsqueeze(1))
        explicit = (hidden * a.w2.unsqueeze(1)).sum(-1) + a.b2.unsqueeze(1)
    torch.testing.assert_close(got, explicit, rtol=1e-5, atol=1e-5)


def test_adaranker_full_ranking_equals_its_training_scorer_per_row():
    """Full ranking splits each row's generated first layer into a row and an item part and
    scores in blocks; it must give what the training path's pair scorer gives for every item."""
    model = ada(score_block=N * 64 * 5)  # five rows per block
    hist, length, _, _ = rows()
    z = torch.randn(len(hist), 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model.full_sort_predict(hist, length, z=z)
        a = model.adapt(z)
        seq = model.sequence(hist, length, a)
        items = model.net.item_embedding.weight[1:N + 1]
        expect = model.pair_scores(seq, items.unsqueeze(0).expand(len(seq), -1, -1), a)
        one_block = ada(score_block=2**30)
        one_block.load_state_dict(model.state_dict())
        torch.testing.assert_close(one_block.full_sort_predict(hist, length, z=z), got)
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-5)


def test_adaranker_samples_z_at_prediction_from_the_given_generator():
    model = ada()
    hist, length, _, _ = rows()
    with torch.no_grad():
        a = model.full_sort_predict(hist, length, torch.Generator().manual_seed(1))
        b = model.full_sort_predict(hist, length, torch.Generator().manual_seed(1))
        c = model.full_sort_predict(hist, length, torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b)  # the same evaluation generator, the same scores
    assert (a - c).abs().max() > 1e-4  # another draw of eps, other scores


def test_adaranker_film_modulates_the_item_embeddings_the_encoder_reads():
    model = ada()
    hist, length, _, _ = rows()
    H = model.hidden
    with torch.no_grad():
        z1 = torch.zeros(len(hist), H)
        z2 = torch.randn(len(hist), H, generator=torch.Generator().manual_seed(3)) * 3
        s1 = model.sequence(hist, length, model.adapt(z1))
        s2 = model.sequence(hist, length, model.adapt(z2))
        plain = model.encode(model.interaction(hist, length))
    assert (s1 - s2).abs().max() > 1e-3
    assert not torch.allclose(s1, plain)


def test_adaranker_trains_every_part_of_the_adaptation():
    model = ada().train()
    hist, length, target, g = rows()
    batch = Batch(hist, length, target, sample_negatives(target, N, 1, g), g)
    model.calculate_loss(batch).backward()
    for name in ("extractor.hidden_to_mu.weight", "film_scale.weight", "mem_w1.array",
                 "mem_w1.index", "mem_b2.array", "layer1.weight", "net.item_embedding.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("kw, key", [(dict(memory_slots=0), "memory_slots"),
                                     (dict(encoder="bert"), "encoder"),
                                     (dict(np_dropout=1.0), "np_dropout")])
def test_adaranker_config_rejects_bad_values_naming_the_key(kw, key):
    with pytest.raises(ValueError, match=key):
        AdaRankerConfig(**kw)


def test_adaranker_on_gru4rec_encoder_scores_every_item():
    model = ada(encoder="gru4rec")
    hist, length, _, _ = rows()
    with torch.no_grad():
        assert model.full_sort_predict(hist, length).shape == (16, N)
