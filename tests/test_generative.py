"""PreferDiff and DiffuRec: their losses, schedules and sampling against the facts of their code."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from baselines.contract import Batch
from dreamrec.schedule import DiffusionSchedule, make_betas
from generative.diffurec import DiffuRec, DiffuRecConfig
from generative.preferdiff import PreferDiff, PreferDiffConfig, cosine_error

N, H, B = 30, 16, 8


def rows(seed=0, empty_first=False):
    g = torch.Generator().manual_seed(seed)
    length = torch.randint(1, 11, (B,), generator=g)
    hist = torch.randint(0, N, (B, 10), generator=g)
    hist[torch.arange(10) >= length[:, None]] = N
    if empty_first:  # a row with no history, stored as the authors do
        hist[0, 0], length[0] = N, 1
    return hist, length, torch.randint(0, N, (B,), generator=g)


def preferdiff(**kw):
    torch.manual_seed(0)
    return PreferDiff(N, PreferDiffConfig(hidden_size=H, timesteps=50, steps=10, dropout=0.0, **kw))


@pytest.mark.parametrize("lam", [0.0, 0.4, 1.0])
def test_preferdiff_loss_is_the_codes_with_the_centroid_of_the_other_targets(lam):
    """The official p_losses, written out: each row's negatives are the batch's other B - 1
    targets (duplicates kept), averaged in embedding space, noised at the row's t."""
    m = preferdiff(lam=lam).train()
    hist, length, target = rows()
    drop = torch.zeros(B, 1, dtype=torch.bool)
    drop[3] = True
    t = torch.randint(0, 50, (B,), generator=torch.Generator().manual_seed(1))
    n_pos, n_neg = torch.randn(2, B, H, generator=torch.Generator().manual_seed(2))
    got = m.preference_loss(hist, length, target, None, drop, t, n_pos, n_neg)

    E = m.item_embeddings.weight
    others = torch.tensor([[j for j in range(B) if j != i] for i in range(B)])
    x0, x0_neg = E[target], E[target[others]].mean(dim=1)
    h = torch.where(drop, m.null_cond, m.encode(hist, length))
    temb = m.denoiser.step_embedding(t)
    pred_pos = m.denoiser(m.schedule.add_noise(x0, n_pos, t), h, temb)
    pred_neg = m.denoiser(m.schedule.add_noise(x0_neg, n_neg, t), h, temb)
    l_pos = torch.mean((F.cosine_similarity(x0, pred_pos) - 1) ** 2)
    l_neg = torch.mean((F.cosine_similarity(x0_neg, pred_neg) - 1) ** 2)
    want = -(1 - lam) * F.logsigmoid(-5.0 * (l_pos - l_neg) + 1e-8) + lam * l_pos
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(cosine_error(x0, pred_pos), l_pos)
    got.backward()
    assert E.grad[target].abs().sum() > 0  # nothing detached: the targets learn


def test_preferdiff_samples_by_ddim_on_its_codes_grid_and_guards_its_settings():
    plan = PreferDiff(N, PreferDiffConfig(hidden_size=H)).sampling_plan()
    # the code's ddim_step 100 over 0..2000: 21 calls, alpha_bar read at 1999, 1899, ..., 99, 0
    code = [0] + [i - 1 for i in range(100, 2001, 100)]
    assert plan.sampler == "ddim" and len(plan.steps) == 21 and plan.steps[0] == 1999
    assert max(abs(a - b) for a, b in zip(sorted(plan.steps), code)) <= 1
    assert all(s == 0 for s in plan.sigma)  # eta 0: deterministic given x_T
    with pytest.raises(ValueError, match="learned item table"):
        PreferDiffConfig(targets="detached")
    with pytest.raises(ValueError, match="lam must lie"):
        PreferDiffConfig(lam=1.5)


def test_trunc_lin_is_diffurecs_schedule():
    b = make_betas("trunc_lin", 32)
    assert np.isclose(b[0], 0.013125) and np.isclose(b[-1], 0.635) and len(b) == 32
    assert np.isclose(np.cumprod(1 - b)[-1], 9.9013e-7, rtol=1e-4)
    short = make_betas("trunc_lin", 16)  # 62.5 * 0.02 + 0.01 > 1: the code's fallback end
    assert np.isclose(short[-1], 62.5 * 0.001 + 0.01)
    s = DiffusionSchedule.create("trunc_lin", 32)
    # the last reverse step returns x0_hat itself
    assert np.isclose(s.posterior_mean_coef1[0], 1.0) and s.posterior_mean_coef2[0] == 0.0


def diffurec(**kw):
    torch.manual_seed(0)
    return DiffuRec(N, DiffuRecConfig(hidden_size=H, n_heads=2, n_blocks=2, timesteps=8, **kw))


def test_diffurec_x_t_enters_only_through_lambda():
    """With lambda's mean and std at 0 the approximator never sees x_t: sampling returns the
    same x0_hat from any x_T; with the code's 0.001 it does not."""
    hist, length, _ = rows()
    for lam, same in ((0.0, True), (0.001, False)):
        m = diffurec(lambda_uncertainty=lam).eval()
        a = m.generate(hist, length, torch.Generator().manual_seed(0))
        b = m.generate(hist, length, torch.Generator().manual_seed(1))
        assert torch.allclose(a, b) == same


def test_diffurec_loss_is_cross_entropy_over_the_real_items_and_rows_without_history_work():
    m = diffurec()
    hist, length, target = rows(empty_first=True)
    m.train()
    assert torch.isfinite(m.calculate_loss(Batch(hist, length, target, None,
                                                 torch.Generator().manual_seed(3))))
    m.eval()  # no dropout: the loss against the formula, from the same draws in the same order
    loss = m.calculate_loss(Batch(hist, length, target, None, torch.Generator().manual_seed(3)))
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, 8, (B,), generator=g)
    noise = torch.randn((B, H), generator=g)
    x_t = m.schedule.add_noise(m.item_embeddings(target), noise, t)
    scores = m.item_scores(m.approximate(hist, length, x_t, t, g))
    assert scores.shape == (B, N)  # the pad row is no class
    assert torch.allclose(loss, F.cross_entropy(scores, target))
    with torch.no_grad():
        out = m.full_sort_predict(hist, length, torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()  # the row with no history included


def test_diffurec_blocks_compute_what_torchs_transformer_layer_computes():
    """The written-out block against nn.TransformerEncoderLayer (pre-LN, GELU-tanh) with the same
    weights: every position, and the last real position alone, values and gradients."""
    from generative.diffurec import Block

    torch.manual_seed(0)
    block = Block(H, 2, dropout=0.0)
    ref = torch.nn.TransformerEncoderLayer(H, 2, 4 * H, 0.0, activation=lambda x: F.gelu(
        x, approximate="tanh"), batch_first=True, norm_first=True)
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(torch.cat([block.w_q.weight, block.w_k.weight,
                                                      block.w_v.weight]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([block.w_q.bias, block.w_k.bias,
                                                    block.w_v.bias]))
        for a, b in ((ref.self_attn.out_proj, block.out_proj), (ref.linear1, block.linear1),
                     (ref.linear2, block.linear2), (ref.norm1, block.norm1),
                     (ref.norm2, block.norm2)):
            a.weight.copy_(b.weight)
            a.bias.copy_(b.bias)
            b.bias.normal_()  # nonzero biases, copied back below
            a.bias.copy_(b.bias)
    hist, length, _ = rows()
    pad = torch.arange(10)[None, :] >= length[:, None]
    x = torch.randn(len(length), 10, H, requires_grad=True)
    bias = torch.zeros(pad.shape).masked_fill(pad, float("-inf")).unsqueeze(1)
    ref.train()  # dropout 0: no fast path, gradients
    want = ref(x, src_key_padding_mask=pad)
    got = block(x, bias)
    assert torch.allclose(got[~pad], want[~pad], atol=1e-5)
    w = torch.randn(want[~pad].shape)  # a loss on every real position: the gradients agree
    g_ref, = torch.autograd.grad((want[~pad] * w).sum(), x, retain_graph=True)
    g_got, = torch.autograd.grad((got[~pad] * w).sum(), x)
    assert torch.allclose(g_got, g_ref, atol=1e-5)
    rows_ = torch.arange(len(length))
    at = block(x, bias, at=length - 1)
    assert torch.allclose(at, want[rows_, length - 1], atol=1e-5)
    g_ref, = torch.autograd.grad(want[rows_, length - 1].sum(), x)
    g_at, = torch.autograd.grad(at.sum(), x)
    assert torch.allclose(g_at, g_ref, atol=1e-5)
    # the stacked in-projection is initialised as PyTorch's: xavier-uniform bound, zero biases
    fresh = Block(64, 4, 0.1)
    bound = math.sqrt(6 / (64 + 192))
    assert all(w.weight.abs().max() <= bound and w.weight.abs().max() > 0.9 * bound
               and not w.bias.any() for w in (fresh.w_q, fresh.w_k, fresh.w_v))
