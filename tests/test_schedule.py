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
