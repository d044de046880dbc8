"""The RecBole adapters, the compatibility module, negatives, CL4SRec's augmentations, DiffRec."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy import stats

from baselines import compat
from baselines.cl4srec import CL4SRec, CL4SRecConfig, crop, info_nce, mask, reorder
from baselines.contract import Batch
from baselines.diffrec import DiffRec, DiffRecConfig
from baselines.fast import accelerate
from baselines.ids import from_recbole, real_item_columns, to_recbole
from baselines.recbole_models import (
    Caser, CaserConfig, GRU4RecConfig, SASRec, SASRecConfig, pairwise_loss,
)
from harness.train import sample_negatives

RECBOLE_PROPERTIES = Path(importlib.util.find_spec("recbole").origin).parent / "properties" / "model"


def _py(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


# --- compatibility module ------------------------------------------------------------------------

def test_recbole_import_turns_anomaly_detection_on_and_the_compat_import_does_not():
    assert _py("import torch, recbole.model.sequential_recommender as m; "
               "print(torch.is_anomaly_enabled())") == "True"
    assert _py("import torch, baselines.compat as c; c.recbole_models(); "
               "print(torch.is_anomaly_enabled())") == "False"
    assert _py("import torch; torch.autograd.set_detect_anomaly(True); import baselines.compat as c; "
               "c.recbole_models(); print(torch.is_anomaly_enabled())") == "True"


def test_recbole_config_sees_no_argv_and_leaks_no_environment(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prog", "--learning_rate=0.5", "--gpu_id=3"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    with compat.isolated_recbole_config("SASRec", "ml-100k", {"learning_rate": 0.01, "loss_type": "BPR",
                                                             "use_gpu": False}) as cfg:
        assert cfg["learning_rate"] == 0.01
        assert cfg["gpu_id"] == "0"
    assert sys.argv == ["prog", "--learning_rate=0.5", "--gpu_id=3"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "7"
    assert np.float_ is np.float64  # the alias recbole's Config assigns from
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with compat.isolated_recbole_config("SASRec", "ml-100k", {"use_gpu": False,
                                                             "loss_type": "BPR"}):
        pass
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_model_config_names_a_missing_setting():
    cfg = compat.ModelConfig("SASRec", {"n_layers": 2}, 10)
    assert cfg["n_layers"] == 2 and cfg["MAX_ITEM_LIST_LENGTH"] == 10
    with pytest.raises(KeyError, match="'n_heads'"):
        cfg["n_heads"]


def test_torch_load_full_reads_what_weights_only_refuses(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"config": compat.ModelDataset(5)}, path)
    with pytest.raises(Exception):
        torch.load(path)
    assert compat.torch_load_full(path)["config"].item_num == 5


# --- ids, negatives, losses ----------------------------------------------------------------------

def test_id_mapping_round_trips_and_sends_the_pad_to_zero():
    n = 7
    ids = torch.arange(n + 1)  # real items and the pad
    rb = to_recbole(ids, n)
    assert rb.tolist() == [1, 2, 3, 4, 5, 6, 7, 0]
    assert torch.equal(from_recbole(rb, n), ids)
    scores = torch.arange(2 * (n + 2)).reshape(2, n + 2)  # pad column, items, one extra token
    assert torch.equal(real_item_columns(scores, n), scores[:, 1:n + 1])


def test_negatives_never_hit_the_target_and_are_uniform_over_the_rest():
    n_items, rows = 50, 20_000
    target = torch.full((rows,), 17)
    gen = torch.Generator().manual_seed(0)
    neg = sample_negatives(target, n_items, 3, gen)
    assert neg.shape == (rows, 3)
    assert not (neg == 17).any() and neg.min() >= 0 and neg.max() < n_items
    counts = np.bincount(neg.flatten().numpy(), minlength=n_items)
    others = np.delete(counts, 17)
    assert stats.chisquare(others).pvalue > 0.01
    # and for varied targets: never the row's own target
    target = torch.randint(0, n_items, (rows,), generator=gen)
    assert not (sample_negatives(target, n_items, 1, gen) == target[:, None]).any()


def test_pairwise_losses_by_hand():
    pos, neg = torch.tensor([2.0, -1.0]), torch.tensor([[0.5], [1.0]])
    sig = torch.sigmoid
    bce = (-torch.log(sig(pos)) - torch.log(1 - sig(neg[:, 0]))).mean()
    bpr = (-torch.log(sig(pos - neg[:, 0]))).mean()
    assert pairwise_loss(pos, neg, "bce").item() == pytest.approx(bce.item(), rel=1e-6)
    assert pairwise_loss(pos, neg, "bpr").item() == pytest.approx(bpr.item(), rel=1e-6)
    with pytest.raises(ValueError, match="unknown loss"):
        pairwise_loss(pos, neg, "ce")


def _batch(n_items=30, B=16, seed=0, k=1):
    g = torch.Generator().manual_seed(seed)
    length = torch.randint(1, 11, (B,), generator=g)
    hist = torch.randint(0, n_items, (B, 10), generator=g)
    hist[torch.arange(10) >= length[:, None]] = n_items
    target = torch.randint(0, n_items, (B,), generator=g)
    return Batch(hist, length, target, sample_negatives(target, n_items, k, g), g)


@pytest.mark.parametrize("cls,cfg", [(SASRec, SASRecConfig(loss="bpr")),
                                     (Caser, CaserConfig(loss="bpr"))])
def test_bpr_loss_equals_recboles_own_calculate_loss(cls, cfg):
    torch.manual_seed(0)
    model = cls(30, cfg).eval()
    b = _batch()
    inter = model.interaction(b.history, b.length)
    inter[model.net.POS_ITEM_ID] = to_recbole(b.target, 30)
    inter[model.net.NEG_ITEM_ID] = to_recbole(b.negatives[:, 0], 30)
    ours, theirs = model.calculate_loss(b), model.net.calculate_loss(inter)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_scores_are_recboles_item_columns_without_the_pad():
    torch.manual_seed(0)
    model = SASRec(30, SASRecConfig()).eval()
    b = _batch()
    with torch.no_grad():
        scores = model.full_sort_predict(b.history, b.length)
        seq = model.encode(model.interaction(b.history, b.length))
        expect = seq @ model.net.item_embedding.weight[1:31].T
    assert scores.shape == (16, 30)
    torch.testing.assert_close(scores, expect)


def test_defaults_are_recboles_except_where_the_paper_fixes_a_value():
    def yaml_defaults(name):
        raw = yaml.safe_load((RECBOLE_PROPERTIES / f"{name}.yaml").read_text())
        return {k: float(v) if isinstance(v, str) and v[0].isdigit() else v for k, v in raw.items()}
    for cfg, name in ((GRU4RecConfig(), "GRU4Rec"), (CaserConfig(), "Caser"),
                      (SASRecConfig(), "SASRec")):
        theirs = yaml_defaults(name)
        ours = cfg.recbole_params()
        for key, value in ours.items():
            if key != "loss_type":
                assert value == theirs[key], (name, key)
    theirs, ours = yaml_defaults("DiffRec"), DiffRecConfig().recbole_params()
    for key in ("noise_schedule", "noise_scale", "noise_min", "noise_max", "steps",
                "sampling_steps", "reweight", "mean_type", "embedding_size", "mlp_act_func"):
        assert ours[key] == theirs[key], key
    assert ours["dims_dnn"] == theirs["dims_dnn"]


def test_accelerate_leaves_eval_outputs_unchanged_and_keeps_dropout_rates():
    b = _batch()
    torch.manual_seed(0)
    plain = compat.recbole_models().SASRec(
        compat.ModelConfig("SASRec", SASRecConfig().recbole_params(), 10), compat.ModelDataset(31))
    torch.manual_seed(0)
    fast = accelerate(compat.recbole_models().SASRec(
        compat.ModelConfig("SASRec", SASRecConfig().recbole_params(), 10), compat.ModelDataset(31)))
    assert not any(type(m) is torch.nn.Dropout for m in fast.modules())
    plain.eval(), fast.eval()
    seq = to_recbole(b.history, 30)
    with torch.no_grad():
        torch.testing.assert_close(fast(seq, b.length), plain(seq, b.length))
    fast.train()
    drop = next(m for m in fast.modules() if type(m).__name__ == "Dropout")
    x = torch.ones(200_000)
    assert (drop(x) == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)


# --- Caser without users ---------------------------------------------------------------------

def test_caser_user_embedding_is_the_fixed_zero_padding_user():
    torch.manual_seed(0)
    model = Caser(30, CaserConfig())
    b = _batch()
    model.calculate_loss(b).backward()
    assert model.net.user_embedding.weight.shape[0] == 1
    assert torch.all(model.net.user_embedding.weight == 0)
    assert torch.all(model.net.user_embedding.weight.grad == 0)


# --- CL4SRec augmentations on hand-made rows -----------------------------------------------------

PAD, MASK_ID = 0, 99
ROWS = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
                     [11, 12, 13, 14, 15, PAD, PAD, PAD, PAD, PAD],
                     [21, PAD, PAD, PAD, PAD, PAD, PAD, PAD, PAD, PAD]])
LENGTHS = torch.tensor([10, 5, 1])


@pytest.mark.parametrize("seed", range(5))
def test_crop_keeps_a_contiguous_run_moved_to_the_front(seed):
    out, keep = crop(ROWS, LENGTHS, 0.6, PAD, torch.Generator().manual_seed(seed))
    assert keep.tolist() == [6, 3, 1]
    for row, orig, n, k in zip(out.tolist(), ROWS.tolist(), LENGTHS.tolist(), keep.tolist()):
        run = row[:k]
        start = orig.index(run[0])
        assert run == orig[start:start + k] and start + k <= n
        assert row[k:] == [PAD] * (10 - k)


@pytest.mark.parametrize("seed", range(5))
def test_mask_replaces_exactly_floor_gamma_n_distinct_real_items(seed):
    out = mask(ROWS, LENGTHS, 0.3, MASK_ID, torch.Generator().manual_seed(seed))
    assert ((out == MASK_ID).sum(1)).tolist() == [3, 1, 0]
    unchanged = out != MASK_ID
    assert torch.equal(out[unchanged], ROWS[unchanged])
    assert not (out[ROWS == PAD] == MASK_ID).any()


@pytest.mark.parametrize("seed", range(5))
def test_reorder_shuffles_one_contiguous_window_only(seed):
    out = reorder(ROWS, LENGTHS, 0.6, torch.Generator().manual_seed(seed))
    for row, orig, n in zip(out.tolist(), ROWS.tolist(), LENGTHS.tolist()):
        assert sorted(row) == sorted(orig)
        moved = [i for i in range(10) if row[i] != orig[i]]
        if moved:
            assert max(moved) - min(moved) + 1 <= int(0.6 * n)
            assert max(moved) < n
    # the window really moves things for the long row with some seed
    outs = [reorder(ROWS, LENGTHS, 0.6, torch.Generator().manual_seed(s)) for s in range(5)]
    assert any(not torch.equal(o[0], ROWS[0]) for o in outs)


def test_each_row_gets_two_different_augmentations_and_single_items_stay():
    torch.manual_seed(0)
    model = CL4SRec(30, CL4SRecConfig())
    seq = to_recbole(ROWS.clamp(max=29) * (ROWS != PAD) + 30 * (ROWS == PAD), 30)
    which = torch.tensor([1, 1, 0])
    view, length = model.augment(seq, LENGTHS, which, torch.Generator().manual_seed(0))
    assert (view[0] == model.mask_id).sum() == 3  # mask on the 10-item row
    assert torch.equal(view[2], seq[2]) and length[2] == 1  # a single item is left as it is


def test_info_nce_matches_the_explicit_formula():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    tau = 0.5
    z = torch.cat([z1, z2])
    total = 0.0
    for i in range(8):
        j = (i + 4) % 8
        logits = [float(z[i] @ z[k]) / tau for k in range(8) if k != i]
        pos = float(z[i] @ z[j]) / tau
        total += -(pos - np.log(np.sum(np.exp(logits))))
    assert info_nce(z1, z2, tau).item() == pytest.approx(total / 8, rel=1e-5)


# --- DiffRec on multi-hot rows ---------------------------------------------------------------

def test_diffrec_vectors_and_buffers():
    torch.manual_seed(0)
    model = DiffRec(30, DiffRecConfig())
    hist = torch.tensor([[3, 5, 30, 30], [0, 30, 30, 30]])
    x = model.multi_hot(hist, torch.tensor([7, 0]))
    assert x.shape == (2, 31) and x[:, 0].eq(0).all()
    assert torch.nonzero(x[0]).flatten().tolist() == [4, 6, 8]  # RecBole columns of 3, 5, 7
    assert torch.nonzero(x[1]).flatten().tolist() == [1]
    assert torch.nonzero(model.multi_hot(hist)[0]).flatten().tolist() == [4, 6]
    buffers = dict(model.net.named_buffers())
    assert {"betas", "alphas_cumprod", "Lt_history", "Lt_count"} <= set(buffers)
    assert model.n_negatives == 0


def test_diffrec_training_vector_holds_the_target_only_when_configured(monkeypatch):
    seen = []
    for vector in ("history+target", "history"):
        torch.manual_seed(0)
        model = DiffRec(30, DiffRecConfig(train_vector=vector))
        monkeypatch.setattr(model.net, "calculate_loss", lambda inter: seen.append(
            inter[model.net.USER_ID]) or torch.zeros(()))
        model.calculate_loss(Batch(torch.tensor([[3, 30]]), torch.tensor([1]), torch.tensor([9])))
    assert seen[0][0, 10] == 1 and seen[1][0, 10] == 0
    assert seen[0][0, 4] == 1 and seen[1][0, 4] == 1


def test_diffrec_vectors_without_time_aware_are_ones_whatever_the_weights_are_set_to():
    hist, target = torch.tensor([[3, 5, 3, 30], [30, 30, 30, 30]]), torch.tensor([7, 0])
    torch.manual_seed(0)
    vectors = [DiffRec(30, DiffRecConfig(**kw)).multi_hot(hist, t)
               for kw in ({}, {"w_min": 0.5, "w_max": 2.0}) for t in (target, None)]
    expect = torch.zeros(2, 31)
    expect[0, [4, 6, 8]] = 1.0
    expect[1, 1] = 1.0
    assert torch.equal(vectors[0], expect) and torch.equal(vectors[2], expect)
    expect[0, 8] = expect[1, 1] = 0.0
    assert torch.equal(vectors[1], expect) and torch.equal(vectors[3], expect)
    assert "recency" not in dict(DiffRec(30, DiffRecConfig()).named_buffers())


def _recbole_t_diffrec_vectors(sequences: dict[int, list[int]], n_items: int) -> torch.Tensor:
    """RecBole's own T-DiffRec user vectors ([users, n_items + 1]) for users 1.. whose
    interactions (harness ids) are ``sequences``, oldest first: its ``build_histroy_items`` with
    ``time-aware`` on a log given out of time order, then its ``get_rating_matrix``."""
    import types

    from recbole.data.interaction import Interaction
    from recbole.model.abstract_recommender import AutoEncoderMixin

    log = [(u, i + 1, float(t)) for u, items in sequences.items() for t, i in enumerate(items)]
    log = log[::-1]  # RecBole sorts by time itself
    inter = Interaction({"user_id": torch.tensor([u for u, _, _ in log]),
                         "item_id": torch.tensor([i for _, i, _ in log]),
                         "timestamp": torch.tensor([t for _, _, t in log])})
    dataset = types.SimpleNamespace(inter_feat=inter, time_field="timestamp", uid_field="user_id",
                                    iid_field="item_id", user_num=len(sequences) + 1)
    net = types.SimpleNamespace(time_aware=True, w_min=0.1, w_max=1.0, device="cpu",
                                n_items=n_items + 1)
    compat.recbole_models().DiffRec.build_histroy_items(net, dataset)
    return AutoEncoderMixin.get_rating_matrix(net, torch.arange(1, len(sequences) + 1))


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # RecBole's numpy calls
def test_diffrec_time_aware_vectors_are_recboles_t_diffrec_vectors():
    torch.manual_seed(0)
    model = DiffRec(30, DiffRecConfig(time_aware=True))
    pad = 30
    # row 0: history 3 5 3, target 7 (3 met twice); row 1: no history, target 0; row 2: 9 alone
    hist = torch.tensor([[3, 5, 3, pad], [pad, pad, pad, pad], [9, pad, pad, pad]])
    target = torch.tensor([7, 0, 4])
    train = model.multi_hot(hist, target)
    assert torch.equal(train, _recbole_t_diffrec_vectors({1: [3, 5, 3, 7], 2: [0], 3: [9, 4]}, 30))
    score = model.multi_hot(hist)
    assert torch.equal(score, _recbole_t_diffrec_vectors({1: [3, 5, 3], 2: [], 3: [9]}, 30))
    # by hand: np.linspace(0.1, 1, 4) = 0.1 0.4 0.7 1.0 over 3 5 3 7; the repeated 3 keeps 0.7
    assert train[0, [4, 6, 8]].tolist() == pytest.approx([0.7, 0.4, 1.0])
    assert train[1, 1].item() == pytest.approx(0.1)  # an item alone weighs w_min, as in RecBole
    assert score[0, [6, 4]].tolist() == pytest.approx([0.55, 1.0])  # linspace(0.1, 1, 3) over 3 5 3
    assert train[2, [10, 5]].tolist() == pytest.approx([0.1, 1.0])


def test_diffrec_time_aware_weights_grow_with_recency_and_feed_both_paths(monkeypatch):
    torch.manual_seed(0)
    model = DiffRec(30, DiffRecConfig(time_aware=True, w_min=0.2, w_max=0.9,
                                      train_vector="history"))
    hist = torch.arange(10).unsqueeze(0)  # ten distinct items, oldest first
    x = model.multi_hot(hist)
    weights = x[0, 1:11]  # RecBole columns of items 0 .. 9
    assert torch.all(weights[1:] > weights[:-1])
    assert torch.equal(weights, torch.from_numpy(np.linspace(0.2, 0.9, 10)).float())
    batch = Batch(hist, torch.tensor([10]), torch.tensor([20]))
    assert torch.isfinite(model.calculate_loss(batch))
    assert model.full_sort_predict(hist, batch.length).shape == (1, 30)
    seen = []
    monkeypatch.setattr(model.net, "calculate_loss", lambda inter: seen.append(
        inter[model.net.USER_ID]) or torch.zeros(()))
    model.calculate_loss(batch)
    assert torch.equal(seen[0], x)  # "history": the target is left out, the weights the same
    with pytest.raises(ValueError, match="w_min <= w_max"):
        DiffRecConfig(time_aware=True, w_min=1.0, w_max=0.5)


def test_diffrec_time_aware_settings_enter_the_config_hash_only_when_set():
    from harness.run import hashed_fields
    plain = hashed_fields(DiffRecConfig())
    assert not {"time_aware", "w_min", "w_max"} & set(plain)
    assert hashed_fields(DiffRecConfig(time_aware=True))["time_aware"] is True
    assert hashed_fields(DiffRecConfig(w_max=2.0))["w_max"] == 2.0
    params = DiffRecConfig(time_aware=True).recbole_params()
    assert params["time-aware"] is False and not {"time_aware", "train_vector"} & set(params)


def test_diffrec_loss_history_update_equals_recboles_element_by_element_loop():
    from baselines.compat import recbole_models
    from baselines.diffrec import update_lt_history

    def state(steps=5, size=3):
        net = torch.nn.Module()
        net.history_num_per_term = size
        net.Lt_history = torch.zeros(steps, size, dtype=torch.float64)
        net.Lt_count = torch.zeros(steps, dtype=torch.long)
        return net

    ours, theirs = state(), state()
    reference = recbole_models().DiffRec.update_Lt_history
    g = torch.Generator().manual_seed(0)
    for _ in range(6):  # enough calls for every step's FIFO to fill and then shift
        ts = torch.randint(0, 5, (16,), generator=g)
        loss = torch.rand(16, generator=g)
        update_lt_history(ours, ts, loss)
        reference(theirs, ts, loss)
        assert torch.equal(ours.Lt_history, theirs.Lt_history)
        assert torch.equal(ours.Lt_count, theirs.Lt_count)
    assert int(ours.Lt_count.min()) == 3  # every FIFO is full: the shifting branch ran


def test_diffrec_timesteps_are_recboles_draw_once_the_histories_are_full():
    from baselines.compat import recbole_models
    from baselines.diffrec import sample_timesteps

    torch.manual_seed(0)
    net = DiffRec(30, DiffRecConfig()).net
    reference = recbole_models().DiffRec.sample_timesteps
    # histories not yet full: uniform steps, pt = 1, as RecBole's uniform branch
    t, pt = sample_timesteps(net, 4000, "cpu", "importance")
    assert torch.equal(pt, torch.ones(4000))
    counts = torch.bincount(t, minlength=net.steps).float()
    assert stats.chisquare(counts.numpy()).pvalue > 1e-4
    # full histories: the same draw as RecBole's importance branch, from the same generator
    with torch.no_grad():
        net.Lt_history.copy_(torch.rand_like(net.Lt_history))
        net.Lt_count.fill_(net.history_num_per_term)
    torch.manual_seed(5)
    ours = sample_timesteps(net, 64, "cpu", "importance")
    torch.manual_seed(5)
    theirs = reference(net, 64, "cpu", "importance")
    assert torch.equal(ours[0], theirs[0])
    torch.testing.assert_close(ours[1], theirs[1].float(), rtol=1e-6, atol=0)


def test_sasrec_without_negatives_trains_on_the_positives_alone():
    """n_negatives = 0 with bce: the loss is the mean of -log σ(pos) (the paper's SASRec
    "without negative sampling" of its Figure 3); the trainer draws none; the models whose
    loss needs candidates refuse it."""
    import torch.nn.functional as F

    from baselines.contract import Batch
    from baselines.ips import IPSConfig
    from baselines.recbole_models import SASRec, SASRecConfig

    torch.manual_seed(0)
    m = SASRec(30, SASRecConfig(n_negatives=0, hidden_size=16, inner_size=32, n_layers=1))
    assert m.n_negatives == 0
    g = torch.Generator().manual_seed(0)
    hist = torch.randint(0, 30, (6, 10), generator=g)
    length = torch.full((6,), 10)
    target = torch.randint(0, 30, (6,), generator=g)
    m.eval()
    loss = m.calculate_loss(Batch(hist, length, target, None, g))
    seq = m.encode(m.interaction(hist, length))
    pos = (seq * m.net.item_embedding(target + 1)).sum(-1)
    assert torch.allclose(loss, F.softplus(-pos).mean())
    with pytest.raises(ValueError, match="or 0 with loss bce"):
        SASRecConfig(n_negatives=0, loss="bpr")
    with pytest.raises(ValueError, match="or 0 with loss bce"):
        IPSConfig(n_negatives=0)
