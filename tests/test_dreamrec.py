"""DreamRec: the encoder against the official formulation, guided sampling, dropout, contract."""

import math

import pytest
import torch
import torch.nn.functional as F

from baselines.contract import Batch
from dreamrec.model import DreamRec, DreamRecConfig
from kernels.ops import Dropout


def make_model(n_items=30, hidden=16, timesteps=20, denoiser="mlp1", w=2.0, seed=0):
    torch.manual_seed(seed)
    m = DreamRec(n_items, DreamRecConfig(hidden_size=hidden, timesteps=timesteps,
                                         denoiser=denoiser, w=w))
    with torch.no_grad():  # non-trivial layer-norm parameters, as after training
        for mod in m.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
    return m.eval()


def rows(n_items, seed=1):
    g = torch.Generator().manual_seed(seed)
    B, L = 12, 10
    length = torch.randint(1, L + 1, (B,), generator=g)
    hist = torch.randint(0, n_items, (B, L), generator=g)
    hist[torch.arange(L)[None, :] >= length[:, None]] = n_items
    hist[0, 0], length[0] = n_items, 1  # a row with no history, stored as the authors do
    return hist, length


def official_encode(m: DreamRec, history, length):
    """Tenc.cacu_h / predict of the official code: full [L, L] attention, then read-out."""
    enc, H = m.encoder, m.config.hidden_size
    L = history.shape[1]
    seq = m.item_embeddings(history) + enc.positional_embeddings(torch.arange(L))
    mask = torch.ne(history, m.n_items).float().unsqueeze(-1)
    seq = seq * mask
    queries = enc.ln_1(seq)
    Q, K, V = enc.linear_q(queries), enc.linear_k(seq), enc.linear_v(seq)
    out = torch.bmm(Q, K.transpose(1, 2)) / H**0.5
    key_mask = torch.sign(torch.abs(seq.sum(dim=-1))).unsqueeze(1).repeat(1, L, 1)
    out = torch.where(torch.eq(key_mask, 0), torch.ones_like(out) * (-(2**32) + 1), out)
    tril = torch.tril(torch.ones(L, L)).unsqueeze(0).repeat(out.shape[0], 1, 1)
    out = torch.where(torch.eq(tril, 0), torch.ones_like(out) * (-(2**32) + 1), out)
    out = torch.softmax(out, dim=-1)
    query_mask = torch.sign(torch.abs(queries.sum(dim=-1))).unsqueeze(-1).repeat(1, 1, L)
    out = torch.bmm(out * query_mask, V) + queries
    x = enc.ln_2(out)
    ff = enc.ff_ln(enc.ff_w2(F.relu(enc.ff_w1(x))) + x) * mask
    ff = enc.ln_3(ff)
    return ff[torch.arange(history.shape[0]), length - 1]


def test_encoder_equals_official_full_attention():
    m = make_model()
    hist, length = rows(m.n_items)
    torch.testing.assert_close(m.encode(hist, length), official_encode(m, hist, length),
                               rtol=1e-5, atol=1e-5)


def test_row_without_history_reads_the_last_layer_norm_bias():
    m = make_model()
    hist, length = rows(m.n_items)
    c = m.encode(hist, length)
    # position 0 is padding, so the feed-forward output is masked to 0 before ln_3
    torch.testing.assert_close(c[0], m.encoder.ln_3.bias)


@pytest.mark.parametrize("w", [0.0, 2.0, 7.5])
def test_fast_mlp1_sampling_equals_generic_path(w):
    m = make_model(timesteps=50, w=w)
    hist, length = rows(m.n_items)
    fast = m.generate(hist, length, torch.Generator().manual_seed(3), fast=True)
    slow = m.generate(hist, length, torch.Generator().manual_seed(3), fast=False)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_generic_sampling_is_classifier_free_guidance_with_ddpm_posterior():
    """One explicit loop, written as in the paper's Algorithm 2, for the mlp2 denoiser."""
    m = make_model(timesteps=10, denoiser="mlp2", w=3.0)
    hist, length = rows(m.n_items)
    g = torch.Generator().manual_seed(5)
    got = m.generate(hist, length, torch.Generator().manual_seed(5))
    c = m.encode(hist, length)
    null = m.null_cond.expand_as(c)
    sch = m.schedule
    x = torch.randn(c.shape, generator=g)
    for t in reversed(range(10)):
        temb = m.denoiser.step_embedding(torch.full((c.shape[0],), t))
        x0 = 4.0 * m.denoiser(x, c, temb) - 3.0 * m.denoiser(x, null, temb)
        mean = sch.posterior_mean_coef1[t] * x0 + sch.posterior_mean_coef2[t] * x
        x = mean + (math.sqrt(sch.posterior_variance[t]) * torch.randn(c.shape, generator=g)
                    if t > 0 else 0.0)
    torch.testing.assert_close(got, x, rtol=1e-5, atol=1e-5)


def test_seeded_sampling_gives_fixed_values():
    m = make_model(n_items=6, hidden=4, timesteps=5)
    hist = torch.tensor([[0, 1, 6, 6, 6, 6, 6, 6, 6, 6], [6] * 10])
    length = torch.tensor([2, 1])
    x = m.generate(hist, length, torch.Generator().manual_seed(0))
    expected = torch.tensor(EXPECTED_SAMPLE)
    torch.testing.assert_close(x, expected, rtol=1e-4, atol=1e-5)


# generated once by this code (torch 2.13 CPU); a change here means sampling changed
EXPECTED_SAMPLE = [[-0.275694, 2.710395, 2.089219, 2.695548], [2.108521, -0.075794, 0.114958, 0.261095]]


def test_sampling_is_deterministic_in_eval_mode_and_never_scores_the_pad():
    m = make_model()
    hist, length = rows(m.n_items)
    a = m.full_sort_predict(hist, length, torch.Generator().manual_seed(9))
    b = m.full_sort_predict(hist, length, torch.Generator().manual_seed(9))
    assert a.shape == (hist.shape[0], m.n_items)  # the pad id is not a column
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_loss_is_finite_scalar_and_reaches_all_parameters():
    m = make_model().train()
    hist, length = rows(m.n_items)
    target = torch.randint(0, m.n_items, (hist.shape[0],))
    loss = m.calculate_loss(Batch(hist, length, target, generator=torch.Generator().manual_seed(0)))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    no_grad = [n for n, p in m.named_parameters() if p.grad is None]
    assert no_grad == []


def test_guidance_dropout_uses_the_null_condition_at_rate_p_u():
    m = make_model(n_items=10, hidden=8)
    m.config.p_uncond = 1.0  # every condition replaced: the loss cannot depend on the history
    target = torch.arange(10)
    h1 = torch.full((10, 10), 10); h1[:, 0] = torch.arange(10)
    h2 = torch.full((10, 10), 10); h2[:, 0] = (torch.arange(10) + 3) % 10
    ln = torch.ones(10, dtype=torch.long)
    l1 = m.calculate_loss(Batch(h1, ln, target, generator=torch.Generator().manual_seed(1)))
    l2 = m.calculate_loss(Batch(h2, ln, target, generator=torch.Generator().manual_seed(1)))
    assert l1.item() == pytest.approx(l2.item(), rel=1e-6)
    m.config.p_uncond = 0.0
    l3 = m.calculate_loss(Batch(h2, ln, target, generator=torch.Generator().manual_seed(1)))
    assert l3.item() != pytest.approx(l1.item(), rel=1e-6)


def test_dropout_rate_and_scale():
    torch.manual_seed(0)
    d = Dropout(0.1).train()
    x = torch.ones(200, 10, 64)
    y = d(x)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(0.1, abs=0.003)  # 128,000 draws: 4 standard errors
    assert y[y != 0].unique().tolist() == pytest.approx([1 / (1 - 3277 / 32768)])
    assert d.eval()(x) is x


def test_config_rejects_unknown_choices():
    with pytest.raises(ValueError, match="valid: linear, exp, cosine, sqrt"):
        DreamRecConfig(schedule="quadratic")
    with pytest.raises(ValueError, match="valid: mlp1, mlp2"):
        DreamRecConfig(denoiser="unet")


# -- samplers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("denoiser", ["mlp1", "mlp2"])
def test_ddim_with_eta_one_over_all_steps_samples_as_ddpm(denoiser):
    m = make_model(timesteps=30, denoiser=denoiser)
    hist, length = rows(m.n_items)
    ddpm = m.generate(hist, length, torch.Generator().manual_seed(2))
    ddim = m.generate(hist, length, torch.Generator().manual_seed(2), plan=m.sampling_plan("ddim", 30, 1.0))
    torch.testing.assert_close(ddim, ddpm, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_fast_mlp1_ddim_equals_generic_path(eta):
    m = make_model(timesteps=50, w=4.0)
    hist, length = rows(m.n_items)
    plan = m.sampling_plan("ddim", 7, eta)
    fast = m.generate(hist, length, torch.Generator().manual_seed(3), fast=True, plan=plan)
    slow = m.generate(hist, length, torch.Generator().manual_seed(3), fast=False, plan=plan)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_generic_ddim_is_the_explicit_update_over_the_strided_steps():
    m = make_model(timesteps=40, denoiser="mlp2", w=1.5)
    hist, length = rows(m.n_items)
    g = torch.Generator().manual_seed(4)
    got = m.generate(hist, length, torch.Generator().manual_seed(4), plan=m.sampling_plan("ddim", 5, 0.0))
    c = m.encode(hist, length)
    null = m.null_cond.expand_as(c)
    a = m.schedule.alphas_cumprod
    x = torch.randn(c.shape, generator=g)
    visited = [39, 29, 20, 10, 0]  # round(linspace(0, 39, 5)), descending
    for t, s in zip(visited, visited[1:] + [None]):
        temb = m.denoiser.step_embedding(torch.full((c.shape[0],), t))
        x0 = 2.5 * m.denoiser(x, c, temb) - 1.5 * m.denoiser(x, null, temb)
        eps = (x - math.sqrt(a[t]) * x0) / math.sqrt(1 - a[t])
        a_s = 1.0 if s is None else a[s]
        x = math.sqrt(a_s) * x0 + math.sqrt(1 - a_s) * eps
    torch.testing.assert_close(got, x, rtol=1e-5, atol=1e-5)


def test_deterministic_ddim_draws_x_T_and_nothing_else():
    m = make_model(timesteps=50)
    hist, length = rows(m.n_items)
    g = torch.Generator().manual_seed(6)
    m.generate(hist, length, g, plan=m.sampling_plan("ddim", 10, 0.0))
    ref = torch.Generator().manual_seed(6)
    torch.randn((hist.shape[0], m.config.hidden_size), generator=ref)  # x_T
    assert torch.equal(g.get_state(), ref.get_state())
    g_ddpm = torch.Generator().manual_seed(6)
    m.generate(hist, length, g_ddpm)  # DDPM draws noise at every step but the last
    assert not torch.equal(g_ddpm.get_state(), ref.get_state())


def test_configured_sampler_is_used_by_full_sort_predict():
    m = make_model(timesteps=50)
    hist, length = rows(m.n_items)
    plan = m.sampling_plan("ddim", 10, 0.0)
    expect = m.item_scores(m.generate(hist, length, torch.Generator().manual_seed(1), plan=plan))
    m.config = DreamRecConfig(hidden_size=16, timesteps=50, sampler="ddim", steps=10)
    got = m.full_sort_predict(hist, length, torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, expect, rtol=0, atol=0)


def test_config_rejects_bad_sampler_settings():
    with pytest.raises(ValueError, match="valid: ddpm, ddim"):
        DreamRecConfig(sampler="plms")
    with pytest.raises(ValueError, match="steps must lie in 0..timesteps=500"):
        DreamRecConfig(steps=501)
    with pytest.raises(ValueError, match=r"eta must lie in \[0, 1\]"):
        DreamRecConfig(eta=-0.1)


def test_with_dropout_zero_the_training_loss_and_gradients_equal_the_official_formulation():
    """The encoder at one position, keys and values never formed: same loss, same gradients."""
    torch.manual_seed(0)
    m = DreamRec(30, DreamRecConfig(hidden_size=16, timesteps=20, dropout=0.0)).train()
    hist, length = rows(m.n_items)
    target = torch.randint(0, m.n_items, (hist.shape[0],))
    params = [p for _, p in m.named_parameters()]
    loss = m.calculate_loss(Batch(hist, length, target,
                                  generator=torch.Generator().manual_seed(4)))
    ours = torch.autograd.grad(loss, params, allow_unused=True)
    g = torch.Generator().manual_seed(4)  # the same draws, in calculate_loss's order
    B = hist.shape[0]
    drop = torch.rand(B, 1, generator=g) < m.config.p_uncond
    t = torch.randint(0, m.config.timesteps, (B,), generator=g)
    noise = torch.randn((B, 16), generator=g)
    c = torch.where(drop, m.null_cond, official_encode(m, hist, length))
    x0 = m.item_embeddings(target)
    x_t = m.schedule.add_noise(x0, noise, t)
    ref = F.mse_loss(m.denoiser(x_t, c, m.denoiser.step_embedding(t)), x0)
    theirs = torch.autograd.grad(ref, params, allow_unused=True)
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-7)
    for (name, _), a, b in zip(m.named_parameters(), ours, theirs):
        if b is None:  # not reached by the official formulation either
            assert a is None or torch.count_nonzero(a) == 0, name
            continue
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_fast_sampling_with_the_noise_thread_gives_the_one_thread_samples():
    """With two torch threads the noise is drawn by a second thread: the same samples."""
    torch.manual_seed(0)
    m = DreamRec(30, DreamRecConfig(hidden_size=64, timesteps=50)).eval()
    g = torch.Generator().manual_seed(2)
    B = 128  # 128 x 64 normals a step: blocks of 32 steps, fewer than the 49 noisy ones
    length = torch.randint(1, 11, (B,), generator=g)
    hist = torch.randint(0, 30, (B, 10), generator=g)
    hist[torch.arange(10)[None, :] >= length[:, None]] = 30
    threads = torch.get_num_threads()
    try:
        out = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            out[n] = m.generate(hist, length, torch.Generator().manual_seed(7))
            assert torch.get_num_threads() == n  # restored after the noise thread
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(out[2], out[1], rtol=0, atol=0)
    slow = m.generate(hist, length, torch.Generator().manual_seed(7), fast=False)
    torch.testing.assert_close(out[2], slow, rtol=1e-4, atol=1e-4)
