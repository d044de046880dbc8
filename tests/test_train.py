"""The trainer on a small learnable task: learning, selection, determinism, failures."""

import numpy as np
import pytest
import torch

from dreamrec.model import DreamRec, DreamRecConfig
from harness import store
from harness.train import TrainConfig, TrainingDiverged, train
from tests.helpers import chain_splits

CFG = DreamRecConfig(hidden_size=32, timesteps=20, w=2.0, dropout=0.1)


def fit(seed=0, published=False, **kw):
    splits = chain_splits()
    torch.manual_seed(seed)
    model = DreamRec(splits.n_items, CFG)
    tc = TrainConfig(**{"lr": 1e-2, "max_epochs": 12, "eval_every": 3, "patience": 10, **kw})
    return train(model, splits, tc, seed, torch.device("cpu"), published=published,
                 progress=False)


@pytest.fixture(scope="module")
def run_a():
    return fit(seed=0, published=True)


def test_dreamrec_learns_the_chain_task(run_a):
    losses = [e["loss"] for e in run_a.history]
    assert losses[-1] < 0.5 * losses[0]
    # random ranking of 100 items gives HR@20 = 0.2
    assert run_a.test.metrics["hr@20"] > 0.5
    assert run_a.val.metrics["hr@20"] > 0.5


def test_same_seed_twice_gives_identical_metrics(run_a):
    again = fit(seed=0, published=True)
    assert again.test.metrics == run_a.test.metrics
    np.testing.assert_array_equal(again.test.ranks, run_a.test.ranks)
    assert [e["loss"] for e in again.history] == [e["loss"] for e in run_a.history]


def test_selection_is_on_validation_and_published_is_test_selected(run_a):
    evals = [e for e in run_a.history if "val" in e]
    assert [e["epoch"] for e in evals] == [2, 5, 8, 11]
    best = max(evals, key=lambda e: (e["val"]["ndcg@20"], e["val"]["hr@20"]))
    assert run_a.best_epoch == best["epoch"]
    assert run_a.val.metrics == best["val"]
    # the final test pass on the restored best state reproduces that epoch's test pass
    assert run_a.test.metrics == best["test"]
    pub_epoch, pub = run_a.published
    assert pub.metrics["ndcg@20"] == max(e["test"]["ndcg@20"] for e in evals)
    assert pub.metrics["ndcg@20"] >= run_a.test.metrics["ndcg@20"]


def test_published_protocol_does_not_change_the_training_trajectory(run_a):
    plain = fit(seed=0, published=False)
    assert plain.published is None
    assert plain.test.metrics == run_a.test.metrics


def test_early_stopping_after_patience_evaluations_without_gain():
    r = fit(seed=1, lr=1e-9, max_epochs=50, eval_every=1, patience=2)  # nothing improves
    assert r.epochs_run <= r.best_epoch + 1 + 2 + 1
    assert r.epochs_run < 50


def test_nan_loss_fails_the_run():
    with pytest.raises(TrainingDiverged, match="nan"):
        fit(seed=0, lr=1e30, max_epochs=3)


def test_train_config_rejects_nonsense():
    with pytest.raises(ValueError, match="eval_every"):
        TrainConfig(eval_every=0)


def test_flush_denormal_is_on_for_the_run_only(monkeypatch):
    calls = []
    real = torch.set_flush_denormal
    monkeypatch.setattr(torch, "set_flush_denormal", lambda on: calls.append(on) or real(on))
    fit(seed=0, max_epochs=1, eval_every=1, flush_denormal=True)
    assert calls == [True, False]
    assert torch.tensor([1e-40]).item() != 0  # the default is back: subnormals kept


def _guided(w):
    def score_fn(model):
        return lambda h, ln, g: model.item_scores(model.generate(h, ln, g, w=w))
    return score_fn


def test_a_variant_is_selected_as_a_run_of_its_own_would_be():
    """DreamRec trained once with w = 2 and a w = 0 variant: the variant's selected epoch, val
    and test equal those of a run trained with w = 0 (training does not depend on w)."""
    from harness.train import EvalVariant
    splits = chain_splits(n_items=40, n_train=600, n_eval=100)
    cfg = TrainConfig(lr=1e-2, max_epochs=12, eval_every=2, patience=2, batch_size=64)

    def fit(w, variants=None):
        torch.manual_seed(0)
        m = DreamRec(splits.n_items, DreamRecConfig(hidden_size=16, timesteps=8, w=w))
        return train(m, splits, cfg, 0, torch.device("cpu"), progress=False, variants=variants)

    both = fit(2.0, [EvalVariant("w0", _guided(0.0)), EvalVariant("w2", _guided(2.0))])
    alone0, alone2 = fit(0.0), fit(2.0)
    v0, v2 = both.variants["w0"], both.variants["w2"]
    assert (v0.best_epoch, v0.val.metrics, v0.test.metrics) == (
        alone0.best_epoch, alone0.val.metrics, alone0.test.metrics)
    assert np.array_equal(v0.test.ranks, alone0.test.ranks)
    # a variant scoring as the run itself does reproduces the run's own selection
    assert (v2.best_epoch, v2.test.metrics) == (both.best_epoch, both.test.metrics)
    assert (both.best_epoch, both.test.metrics, both.epochs_run) == (
        alone2.best_epoch, alone2.test.metrics, alone2.epochs_run)
    assert v0.curve[0][0] == 1 and all(e % 2 == 1 for e, _ in v0.curve)


def test_a_run_with_variants_interrupted_and_resumed_gives_the_same_result(tmp_path):
    from harness.train import EvalVariant
    splits = chain_splits(n_items=40, n_train=600, n_eval=100)
    cfg = TrainConfig(lr=1e-2, max_epochs=10, eval_every=2, patience=3, batch_size=64)
    calls = {"n": 0}

    def flaky(model):  # the third variant evaluation is interrupted, once
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return _guided(0.0)(model)

    def fit(score_fn, ckpt=None):
        torch.manual_seed(0)
        m = DreamRec(splits.n_items, DreamRecConfig(hidden_size=16, timesteps=8, w=2.0))
        return train(m, splits, cfg, 0, torch.device("cpu"), progress=False, checkpoint=ckpt,
                     checkpoint_key="k", variants=[EvalVariant("w0", score_fn)])

    ref = fit(_guided(0.0))
    ckpt = tmp_path / "ck.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(flaky, ckpt)
    assert ckpt.exists()
    got = fit(flaky, ckpt)
    assert got.wall["resumed"] is True
    assert (got.best_epoch, got.test.metrics, got.history) == (ref.best_epoch, ref.test.metrics, ref.history)
    assert (got.variants["w0"].best_epoch, got.variants["w0"].test.metrics, got.variants["w0"].curve) == (
        ref.variants["w0"].best_epoch, ref.variants["w0"].test.metrics, ref.variants["w0"].curve)


def test_a_checkpoint_from_another_device_resumes_with_a_reseeded_generator_and_says_so(tmp_path):
    splits = chain_splits(n_items=40, n_train=300, n_eval=60)
    ckpt = tmp_path / "ck.pt"

    def fit(max_epochs):
        torch.manual_seed(0)
        m = DreamRec(splits.n_items, DreamRecConfig(hidden_size=16, timesteps=8, w=2.0))
        cfg = TrainConfig(lr=1e-2, max_epochs=max_epochs, eval_every=2, patience=50, batch_size=64)
        return train(m, splits, cfg, 0, torch.device("cpu"), progress=False, checkpoint=ckpt,
                     checkpoint_key="k")

    first = fit(4)  # leaves its checkpoint after epoch 3
    here = {"threads": torch.get_num_threads(), "cpu": torch.backends.cpu.get_cpu_capability(),
            "commit": store.git_state()["commit"]}
    assert first.wall["segments"] == [{"device": "cpu", "torch": str(torch.__version__), "first_epoch": 0,
                                       "last_epoch": 3, "generator": "fresh", **here}]
    same = fit(6)
    assert [s["generator"] for s in same.wall["segments"]] == ["fresh", "continued"]
    assert same.wall["segments"][1]["first_epoch"] == 4 and same.wall["segments"][1]["last_epoch"] == 5

    ckpt.unlink()
    fit(4)  # a checkpoint after epoch 3 again (the resumed run above moved it to epoch 5)
    saved = torch.load(ckpt, weights_only=True)
    # as a checkpoint written on a CUDA device by code that kept no segments: a Philox state
    del saved["segments"]
    saved["generator"] = torch.zeros(16, dtype=torch.uint8)
    saved["cuda_rng"] = torch.zeros(16, dtype=torch.uint8)
    torch.save(saved, ckpt)
    moved = fit(6)
    assert moved.wall["resumed"] is True and moved.epochs_run == 6
    assert moved.wall["segments"] == [
        {"device": "cuda", "torch": None, "first_epoch": 0, "last_epoch": 3, "generator": "not recorded"},
        {"device": "cpu", "torch": str(torch.__version__), "first_epoch": 4, "last_epoch": 5,
         "generator": "reseeded", **here}]
    # the history before the move is the checkpoint's; the epochs after it were trained here
    assert moved.history[:4] == first.history and len(moved.history) == 6


def test_a_run_resumed_with_other_threads_records_each_stretchs_and_says_so(tmp_path, capsys):
    """Another thread count sums in another order, and at a high learning rate rounding grows
    into another run: each stretch's thread count is recorded, and the resume warns."""
    splits = chain_splits(n_items=40, n_train=300, n_eval=60)
    ckpt = tmp_path / "ck.pt"

    def fit(max_epochs, threads):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            torch.manual_seed(0)
            m = DreamRec(splits.n_items, DreamRecConfig(hidden_size=16, timesteps=8, w=2.0))
            cfg = TrainConfig(lr=1e-2, max_epochs=max_epochs, eval_every=2, patience=50,
                              batch_size=64)
            return train(m, splits, cfg, 0, torch.device("cpu"), progress=False,
                         checkpoint=ckpt, checkpoint_key="k")
        finally:
            torch.set_num_threads(before)

    fit(4, 1)
    assert "torch threads" not in capsys.readouterr().err
    got = fit(6, 2)
    assert [(s["first_epoch"], s["threads"]) for s in got.wall["segments"]] == [(0, 1), (4, 2)]
    assert "written by a process with 1 torch threads; resuming with 2" in capsys.readouterr().err
    fit(8, 2)  # the same count as the stretch before: no warning
    assert "torch threads" not in capsys.readouterr().err


def test_a_run_resumed_on_other_cpu_kernels_records_each_stretchs_and_says_so(
        tmp_path, capsys, monkeypatch):
    """torch's AVX2 and AVX512 kernels sum in other orders (a zhihu SASRec seed trained on an
    AVX2 host differs from its AVX512 record from epoch 0's loss on): each stretch records the
    instruction set it ran on, and a resume on another one warns."""
    splits = chain_splits(n_items=40, n_train=300, n_eval=60)
    ckpt = tmp_path / "ck.pt"

    def fit(max_epochs, isa):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: isa)
        torch.manual_seed(0)
        m = DreamRec(splits.n_items, DreamRecConfig(hidden_size=16, timesteps=8))
        cfg = TrainConfig(lr=1e-3, max_epochs=max_epochs, eval_every=2, patience=50,
                          batch_size=64)
        return train(m, splits, cfg, 0, torch.device("cpu"), progress=False,
                     checkpoint=ckpt, checkpoint_key="k")

    fit(4, "AVX512")
    assert "CPU kernels" not in capsys.readouterr().err
    got = fit(6, "AVX2")
    assert [(s["first_epoch"], s["cpu"]) for s in got.wall["segments"]] == [
        (0, "AVX512"), (4, "AVX2")]
    assert ("written by a process with the CPU kernels AVX512; resuming with AVX2"
            in capsys.readouterr().err)
    fit(8, "AVX2")  # the same kernels as the stretch before: no warning
    assert "CPU kernels" not in capsys.readouterr().err
