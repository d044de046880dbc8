"""DreamRec's settings against the collapse: detached targets, targets and retrieval on a
sphere, and a frozen SASRec item table (harness.run.pretrained_items)."""

import dataclasses
import math
import shutil

import pytest
import torch

from baselines.contract import Batch
from dreamrec.model import DreamRec, DreamRecConfig
from harness import run as harness_run
from harness import store
from harness.train import TrainConfig, train
from tests.helpers import chain_splits

N, H = 40, 16


def model(seed=0, **kw):
    torch.manual_seed(seed)
    return DreamRec(N, DreamRecConfig(hidden_size=H, timesteps=20, dropout=0.0, **kw))


def batch_with_unseen_targets():
    """Histories use items 0..19 only, targets are 20..39: a target row's gradient can only
    come through the target term of the loss."""
    g = torch.Generator().manual_seed(0)
    B = 24
    length = torch.randint(1, 11, (B,), generator=g)
    hist = torch.randint(0, 20, (B, 10), generator=g)
    hist[torch.arange(10) >= length[:, None]] = N
    target = torch.randint(20, N, (B,), generator=g)
    return Batch(hist, length, target, None, torch.Generator().manual_seed(1))


@pytest.mark.parametrize("targets, reaches_targets", [("learned", True), ("detached", False)])
def test_detached_targets_take_no_gradient_through_the_target_term(targets, reaches_targets):
    m = model(targets=targets).train()
    b = batch_with_unseen_targets()
    loss = m.calculate_loss(b)
    loss.backward()
    grad = m.item_embeddings.weight.grad
    assert grad[:20].abs().sum() > 0  # history items learn either way
    assert (grad[b.target.unique()].abs().sum() > 0) == reaches_targets
    ref = model(targets="learned").train()  # the forward pass is the same
    assert torch.allclose(loss, ref.calculate_loss(batch_with_unseen_targets()))


def test_normalized_targets_lie_on_the_sqrt_h_sphere_and_retrieval_is_cosine():
    m = model(normalize=True).eval()
    e = torch.randn(5, H) * torch.tensor([0.01, 0.1, 1.0, 10.0, 100.0])[:, None]
    assert torch.allclose(m.target_embedding(e).norm(dim=-1), torch.full((5,), math.sqrt(H)))
    oracle = torch.randn(3, H)
    with torch.no_grad():
        before = m.item_scores(oracle)
        m.item_embeddings.weight[7] *= 50.0  # a long item (never trained, say) gains nothing
        after = m.item_scores(oracle)
    assert torch.allclose(before, after, atol=1e-6) and before.abs().max() <= 1 + 1e-6
    plain = model().eval()
    with torch.no_grad():
        s0 = plain.item_scores(oracle)[:, 7].clone()
        plain.item_embeddings.weight[7] *= 50.0
        assert torch.allclose(plain.item_scores(oracle)[:, 7], 50 * s0, rtol=1e-5)


def scaled(table):
    """``table`` as load_item_embeddings keeps it: one factor to a mean row norm of sqrt(H)."""
    return table * (math.sqrt(H) / table.norm(dim=-1).mean())


def test_a_loaded_item_table_is_frozen_and_left_out_of_the_optimizer():
    m = model(targets="sasrec")
    assert m.config.items_from == "sasrec" and DreamRecConfig().items_from is None
    with pytest.raises(RuntimeError, match="none was loaded"):  # never the paper's model
        m.train().calculate_loss(batch_with_unseen_targets())
    table = torch.randn(N, H)
    m.load_item_embeddings(table)
    assert torch.equal(m.item_embeddings.weight[:N], scaled(table))
    assert all(p is not m.item_embeddings.weight for g in m.param_groups(1e-2, 0.0)
               for p in g["params"])
    res = train(m, chain_splits(n_items=N, n_train=600, n_eval=100), TrainConfig(
        lr=1e-2, max_epochs=2, eval_every=1, patience=5), seed=0, device=torch.device("cpu"),
        progress=False)
    assert res.history[-1]["loss"] < res.history[0]["loss"]  # the rest trains
    assert torch.equal(m.item_embeddings.weight[:N], scaled(table))
    with pytest.raises(ValueError, match="hidden size must be DreamRec's"):
        m.load_item_embeddings(torch.randn(N, H + 1))


def test_a_sasrec_scale_table_is_brought_to_the_scale_the_noise_assumes_keeping_its_ranking():
    # SASRec initialises at std 0.02: rows of norm ~0.1 at H = 16, against noise of norm ~4
    table = 0.02 * torch.randn(N, H) * torch.linspace(0.5, 1.5, N)[:, None]
    m = model(targets="sasrec")
    m.load_item_embeddings(table)
    loaded = m.item_table()
    norms = loaded.norm(dim=-1)
    assert norms.mean() == pytest.approx(math.sqrt(H), rel=1e-5)
    assert torch.allclose(norms / norms[0], table.norm(dim=-1) / table[0].norm(), rtol=1e-5)
    oracle = torch.randn(3, H)
    with torch.no_grad():
        assert torch.equal(m.item_scores(oracle).argsort(dim=-1),
                           (oracle @ table.T).argsort(dim=-1))


def test_the_new_settings_keep_old_hashes_and_reject_unknown_targets():
    assert harness_run.hashed_fields(DreamRecConfig()) == harness_run.hashed_fields(
        DreamRecConfig(targets="learned", normalize=False))
    assert "targets" in harness_run.hashed_fields(DreamRecConfig(targets="detached"))
    with pytest.raises(ValueError, match="unknown targets"):
        DreamRecConfig(targets="frozen")


@pytest.fixture
def configs(tmp_path, monkeypatch):
    """A copy of the config files with a tiny SASRec on ml-100k and a model folder of its own."""
    import harness.models

    root = tmp_path / "configs"
    shutil.copytree(harness.models.CONFIG_DIR, root)
    monkeypatch.setattr(harness.models, "CONFIG_DIR", root)
    monkeypatch.setenv("HARNESS_MODEL_DIR", str(tmp_path / "models"))
    path = root / "ml-100k" / "sasrec.toml"
    text = path.read_text()
    for key, value in (("hidden_size", H), ("inner_size", 32), ("max_epochs", 1),
                       ("n_layers", 1)):
        text = __import__("re").sub(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
    path.write_text(text)
    return root


def test_the_sasrec_table_is_trained_once_kept_and_then_loaded(configs, capsys):
    splits = chain_splits(n_items=N, n_train=600, n_eval=100)
    cfg = DreamRecConfig(hidden_size=H, targets="sasrec")
    dev = torch.device("cpu")
    first = harness_run.pretrained_items(cfg, "ml-100k", splits, 0, dev)
    assert "training sasrec seed 0 on ml-100k for its item table" in capsys.readouterr().err
    (state,) = (configs.parent / "models" / "ml-100k" / "sasrec").glob("*/seed0.pt")
    assert not list(state.parent.glob("*.partial.pt"))  # its checkpoint is gone
    again = harness_run.pretrained_items(cfg, "ml-100k", splits, 0, dev)
    assert "training" not in capsys.readouterr().err and torch.equal(first, again)
    assert first.shape == (N, H)
    m = harness_run.build_model(harness_run.get_model("dreamrec"), splits, cfg, 0, dev, "ml-100k")
    assert torch.equal(m.item_embeddings.weight[:N], scaled(first))
    # the sampler comparison builds its states the same way (it trained the paper's model)
    from harness import sampling
    spec = harness_run.get_model("dreamrec")
    s, epoch, source = sampling.selected_model(
        spec, splits, dataclasses.replace(cfg, timesteps=20), TrainConfig(max_epochs=1), 0, dev,
        "test-hash", "ml-100k")
    assert source == "trained here" and torch.allclose(s.item_table(), scaled(first))
    assert harness_run.pretrained_items(DreamRecConfig(), "ml-100k", splits, 0, dev) is None


def test_the_config_hash_follows_the_source_models_settings(configs):
    splits = chain_splits(n_items=N, n_train=50, n_eval=10)
    spec = harness_run.get_model("dreamrec")
    cfg, tc = DreamRecConfig(hidden_size=H, targets="sasrec"), TrainConfig()
    base, h1 = harness_run.record_base(spec, "ml-100k", splits, cfg, tc)
    assert base["items_from"]["model"] == "sasrec"
    path = configs / "ml-100k" / "sasrec.toml"
    path.write_text(path.read_text().replace("lr = ", "lr = 0.0042 #", 1))
    _, h2 = harness_run.record_base(spec, "ml-100k", splits, cfg, tc)
    assert h1 != h2
    _, plain = harness_run.record_base(spec, "ml-100k", splits, dataclasses.replace(
        cfg, targets="learned"), tc)
    assert "items_from" not in harness_run.record_base(spec, "ml-100k", splits, DreamRecConfig(), tc)[0]
    assert plain not in (h1, h2)
    assert store.config_hash(harness_run.hash_payload(spec, "ml-100k", cfg, tc, splits.checksum)) == h2
