"""Noise schedules and DDPM coefficients against closed forms."""

import math

import numpy as np
import pytest
import torch

from dreamrec.schedule import SCHEDULES, DiffusionSchedule, make_betas


def test_linear_betas_are_the_endpoints_and_evenly_spaced():
    b = make_betas("linear", 5, 1e-4, 0.02)
    np.testing.assert_allclose(b, [1e-4, 0.005075, 0.01005, 0.015025, 0.02], rtol=1e-12)


def test_exp_betas_closed_form():
    T = 4
    x = np.array([1.0, 1 + 2 * T / 3, 1 + 4 * T / 3, 2 * T + 1])  # linspace(1, 2T+1, T)
    expected = 1 - np.exp(-0.1 / T - x * 0.5 * (10 - 0.1) / T**2)
    np.testing.assert_allclose(make_betas("exp", T), expected, rtol=1e-12)


def test_cosine_betas_follow_alpha_bar_and_are_clipped():
    T, s = 10, 0.008
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    expected = [min(max(1 - f(t + 1) / f(t), 1e-4), 0.9999) for t in range(T)]
    np.testing.assert_allclose(make_betas("cosine", T), expected, rtol=1e-12)
    assert make_betas("cosine", T)[-1] == pytest.approx(0.9999)  # last step is clipped


def test_sqrt_betas_closed_form():
    T = 8
    ab = lambda t: 1 - math.sqrt(t + 1e-4)  # noqa: E731
    expected = [min(1 - ab((i + 1) / T) / ab(i / T), 0.999) for i in range(T)]
    np.testing.assert_allclose(make_betas("sqrt", T), expected, rtol=1e-12)


def test_unknown_schedule_lists_valid_ones():
    with pytest.raises(ValueError, match="linear, exp, cosine, sqrt"):
        make_betas("quadratic", 10)


@pytest.mark.parametrize("name", SCHEDULES)
def test_posterior_coefficients_match_gaussian_posterior(name):
    """q(x_{t-1}|x_t,x_0) from Bayes' rule on the two Gaussians, computed independently."""
    sch = DiffusionSchedule.create(name, 50)
    for t in (0, 1, 17, 49):
        beta = sch.betas[t]
        ab = np.prod(1 - sch.betas[: t + 1])
        ab_prev = np.prod(1 - sch.betas[:t]) if t > 0 else 1.0
        # precision-weighted combination of N(x_t; sqrt(1-beta) x, beta) and N(x; sqrt(ab_prev) x0, 1-ab_prev)
        prec = (1 - beta) / beta + 1 / (1 - ab_prev) if t > 0 else np.inf
        if t == 0:
            assert sch.posterior_variance[0] == 0.0
            assert sch.posterior_mean_coef1[0] == pytest.approx(1.0)
            assert sch.posterior_mean_coef2[0] == pytest.approx(0.0, abs=1e-12)
            continue
        var = 1 / prec
        c_xt = var * math.sqrt(1 - beta) / beta
        c_x0 = var * math.sqrt(ab_prev) / (1 - ab_prev)
        assert sch.posterior_variance[t] == pytest.approx(var, rel=1e-9)
        assert sch.posterior_mean_coef1[t] == pytest.approx(c_x0, rel=1e-9)
        assert sch.posterior_mean_coef2[t] == pytest.approx(c_xt, rel=1e-9)
        assert sch.alphas_cumprod[t] == pytest.approx(ab, rel=1e-12)


def test_add_noise_is_the_forward_marginal():
    sch = DiffusionSchedule.create("linear", 100)
    x0, eps = torch.ones(3, 2), torch.full((3, 2), 2.0)
    t = torch.tensor([0, 50, 99])
    ab = torch.tensor(sch.alphas_cumprod[[0, 50, 99]], dtype=torch.float32)
    expected = ab.sqrt()[:, None] * 1.0 + (1 - ab).sqrt()[:, None] * 2.0
    torch.testing.assert_close(sch.add_noise(x0, eps, t), expected.expand(3, 2))


# -- sampling plans ---------------------------------------------------------------------------

from dreamrec.schedule import sampling_plan  # noqa: E402


def test_full_ddpm_plan_is_the_posterior_table_in_reverse():
    s = DiffusionSchedule.create("linear", 50)
    p = sampling_plan(s, "ddpm")
    assert p.steps == list(range(49, -1, -1))
    np.testing.assert_array_equal(p.coef_x0, s.posterior_mean_coef1[::-1])
    np.testing.assert_array_equal(p.coef_xt, s.posterior_mean_coef2[::-1])
    np.testing.assert_array_equal(p.sigma, np.sqrt(s.posterior_variance[::-1]))
    assert p.sigma[-1] == 0.0 and all(v > 0 for v in p.sigma[:-1])


@pytest.mark.parametrize("name", SCHEDULES)
def test_ddim_with_eta_one_over_all_steps_is_ddpm(name):
    s = DiffusionSchedule.create(name, 40)
    ddpm, ddim = sampling_plan(s, "ddpm"), sampling_plan(s, "ddim", 40, 1.0)
    assert ddim.steps == ddpm.steps
    for a, b in [(ddim.coef_x0, ddpm.coef_x0), (ddim.coef_xt, ddpm.coef_xt), (ddim.sigma, ddpm.sigma)]:
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 7, 10, 499, 500])
def test_strided_steps_are_evenly_spaced_from_the_last_trained_step_to_zero(k):
    p = sampling_plan(DiffusionSchedule.create("linear", 500), "ddim", k)
    assert len(p.steps) == k and len(set(p.steps)) == k
    assert p.steps == sorted(p.steps, reverse=True)
    assert p.steps[-1] == 0 and (k == 1 or p.steps[0] == 499)
    gaps = -np.diff(p.steps)
    assert k <= 2 or gaps.max() - gaps.min() <= 1
    # the last step lands on x_0: x0_hat is returned as is
    assert (p.coef_x0[-1], p.coef_xt[-1], p.sigma[-1]) == (1.0, 0.0, 0.0)


def test_deterministic_ddim_keeps_an_exact_prediction_on_its_noise_trajectory():
    """DDIM's defining property (Song et al. 2021, eq. 12 with sigma = 0): if the network
    predicts the true x_0 at every step, x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps stays on the
    same eps at every visited step and ends exactly at x_0."""
    s = DiffusionSchedule.create("cosine", 100)
    p = sampling_plan(s, "ddim", 13, 0.0)
    assert all(v == 0.0 for v in p.sigma)
    rng = np.random.default_rng(0)
    x0, eps = rng.normal(size=8), rng.normal(size=8)
    a = s.alphas_cumprod
    x = math.sqrt(a[p.steps[0]]) * x0 + math.sqrt(1 - a[p.steps[0]]) * eps
    for j, t in enumerate(p.steps):
        np.testing.assert_allclose(x, math.sqrt(a[t]) * x0 + math.sqrt(1 - a[t]) * eps, atol=1e-12)
        x = p.coef_x0[j] * x0 + p.coef_xt[j] * x
    np.testing.assert_allclose(x, x0, atol=1e-12)


def test_stochastic_ddim_noise_grows_with_eta_and_strided_ddpm_is_eta_one():
    s = DiffusionSchedule.create("linear", 200)
    half, full = sampling_plan(s, "ddim", 20, 0.5), sampling_plan(s, "ddim", 20, 1.0)
    np.testing.assert_allclose(half.sigma, 0.5 * np.asarray(full.sigma), rtol=1e-12)
    ddpm = sampling_plan(s, "ddpm", 20, 0.0)  # eta is not used by ddpm
    assert ddpm.eta == 1.0 and ddpm.sigma == full.sigma and ddpm.coef_x0 == full.coef_x0


@pytest.mark.parametrize("kw, match", [
    (dict(sampler="ddpx"), "unknown sampler 'ddpx'; valid: ddpm, ddim"),
    (dict(steps=11), r"sampling steps must lie in 1..10"),
    (dict(steps=-1), r"sampling steps must lie in 1..10"),
    (dict(sampler="ddim", eta=1.5), r"eta must lie in \[0, 1\]"),
])
def test_sampling_plan_rejects_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        sampling_plan(DiffusionSchedule.create("linear", 10), **kw)
