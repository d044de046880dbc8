"""Noise schedules and the DDPM forward/posterior coefficients (pure math, no nn.Module).

Formulas follow the official DreamRec code (github.com/YangZhengyi98/DreamRec, ``DreamRec.py``):
``linear`` (beta_start..beta_end), ``exp`` (beta_min 0.1, beta_max 10), ``cosine`` (s = 0.008,
clipped to [1e-4, 0.9999]) and ``sqrt`` (alpha_bar(t) = 1 - sqrt(t + 1e-4), max beta 0.999);
``trunc_lin`` is DiffuRec's (github.com/WHUIR/DiffuRec), its beta range set by T alone.
Tables are computed once in float64 ("Use float64 for accuracy", improved-diffusion) and handed
out as float32 tensors on the device where they are used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor

ScheduleName = Literal["linear", "exp", "cosine", "sqrt", "trunc_lin"]
SCHEDULES: tuple[str, ...] = get_args(ScheduleName)


def make_betas(
    name: str, timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> np.ndarray:
    """beta_1..beta_T as float64, [T]."""
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    T = timesteps
    if name == "linear":
        return np.linspace(beta_start, beta_end, T, dtype=np.float64)
    if name == "exp":
        beta_min, beta_max = 0.1, 10.0
        x = np.linspace(1, 2 * T + 1, T, dtype=np.float64)
        return 1.0 - np.exp(-beta_min / T - x * 0.5 * (beta_max - beta_min) / (T * T))
    if name == "cosine":
        s = 0.008
        x = np.linspace(0, T, T + 1, dtype=np.float64)
        alpha_bar = np.cos(((x / T) + s) / (1 + s) * math.pi * 0.5) ** 2
        alpha_bar = alpha_bar / alpha_bar[0]
        return np.clip(1.0 - alpha_bar[1:] / alpha_bar[:-1], 1e-4, 0.9999)
    if name == "sqrt":
        t1 = np.arange(T, dtype=np.float64) / T
        t2 = (np.arange(T, dtype=np.float64) + 1) / T
        alpha_bar = lambda t: 1.0 - np.sqrt(t + 1e-4)  # noqa: E731
        return np.minimum(1.0 - alpha_bar(t2) / alpha_bar(t1), 0.999)
    if name == "trunc_lin":  # DiffuRec's (github.com/WHUIR/DiffuRec, get_named_beta_schedule)
        scale = 1000.0 / T
        start, end = scale * 0.0001 + 0.01, scale * 0.02 + 0.01
        if end > 1:
            end = scale * 0.001 + 0.01
        return np.linspace(start, end, T, dtype=np.float64)
    raise ValueError(f"unknown noise schedule {name!r}; valid: {', '.join(SCHEDULES)}")


@dataclass(frozen=True, eq=False)
class DiffusionSchedule:
    """Coefficients of q(x_t | x_0) and of the posterior q(x_{t-1} | x_t, x_0), indexed t = 0..T-1.

    Index t here is the paper's step t+1 (the official code's convention): x_t at index 0 is one
    noising step away from x_0.
    """

    name: str
    timesteps: int
    betas: np.ndarray  # [T] float64
    alphas_cumprod: np.ndarray  # [T]
    alphas_cumprod_prev: np.ndarray  # [T], 1 at t = 0
    sqrt_alphas_cumprod: np.ndarray  # [T]
    sqrt_one_minus_alphas_cumprod: np.ndarray  # [T]
    posterior_mean_coef1: np.ndarray  # [T], multiplies x_0
    posterior_mean_coef2: np.ndarray  # [T], multiplies x_t
    posterior_variance: np.ndarray  # [T]
    _tables: dict = field(default_factory=dict, repr=False)

    @classmethod
    def create(
        cls, name: str, timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> DiffusionSchedule:
        betas = make_betas(name, timesteps, beta_start, beta_end)
        alphas = 1.0 - betas
        ac = np.cumprod(alphas)
        ac_prev = np.concatenate([[1.0], ac[:-1]])
        return cls(
            name=name,
            timesteps=timesteps,
            betas=betas,
            alphas_cumprod=ac,
            alphas_cumprod_prev=ac_prev,
            sqrt_alphas_cumprod=np.sqrt(ac),
            sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - ac),
            # DDPM (Ho et al. 2020) eq. (7): mu~_t = coef1 * x_0 + coef2 * x_t
            posterior_mean_coef1=betas * np.sqrt(ac_prev) / (1.0 - ac),
            posterior_mean_coef2=(1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
            posterior_variance=betas * (1.0 - ac_prev) / (1.0 - ac),
        )

    def table(self, name: str, device: torch.device | str = "cpu") -> Tensor:
        """One coefficient table as a float32 tensor on ``device``, [T] (made once per device)."""
        key = (name, str(torch.device(device)))
        if key not in self._tables:
            self._tables[key] = torch.as_tensor(getattr(self, name), dtype=torch.float32, device=device)
        return self._tables[key]

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """q(x_t | x_0): sqrt(a_bar_t) x_0 + sqrt(1 - a_bar_t) eps; x0, noise [B, H], t [B] long."""
        a = self.table("sqrt_alphas_cumprod", x0.device)[t].unsqueeze(-1)
        s = self.table("sqrt_one_minus_alphas_cumprod", x0.device)[t].unsqueeze(-1)
        return a * x0 + s * noise


SamplerName = Literal["ddpm", "ddim"]
SAMPLERS: tuple[str, ...] = get_args(SamplerName)


@dataclass(frozen=True)
class SamplingPlan:
    """The reverse steps one sampler takes, and the update of each.

    Step ``j`` (in sampling order) goes from the trained index ``t = steps[j]`` to the previous
    index of the plan (or to x_0 after the last step) by
    ``x <- coef_x0[j] * x0_hat + coef_xt[j] * x + sigma[j] * z`` with ``z ~ N(0, I)``, where
    ``x0_hat`` is the (guided) denoiser output at ``t``. The lists are Python floats, computed in
    float64.
    """

    sampler: str
    eta: float
    steps: list[int]  # trained indices, descending
    coef_x0: list[float]
    coef_xt: list[float]
    sigma: list[float]


def sampling_plan(schedule: DiffusionSchedule, sampler: str = "ddpm", steps: int = 0,
                  eta: float = 0.0) -> SamplingPlan:
    """Coefficients of ``sampler`` over ``steps`` of the ``schedule``'s T trained steps (0 = all T).

    The k steps are evenly spaced over the indices 0..T-1 with both ends included
    (``round(linspace(0, T-1, k))``: sampling starts at the last trained step, as DDPM does).

    - ``ddim`` (Song et al. 2021, eq. 12, written for an x_0-predicting network): from ``t`` to
      ``s``, ``sigma = eta * sqrt((1 - a_s) / (1 - a_t)) * sqrt(1 - a_t / a_s)`` with ``a`` the
      cumulative alpha product (``a = 1`` after the last step), and
      ``x_s = sqrt(a_s) x0_hat + sqrt(1 - a_s - sigma^2) * (x_t - sqrt(a_t) x0_hat) / sqrt(1 - a_t)
      + sigma z``. ``eta = 0`` is deterministic given x_T; ``eta = 1`` is DDPM's posterior.
    - ``ddpm``: over all T steps, DDPM's posterior (Ho et al. 2020, eq. 7), from the schedule's
      own tables; over k < T steps, the posterior of the respaced chain, which is DDIM with
      ``eta = 1`` (``eta`` is not used).
    """
    T = schedule.timesteps
    k = steps or T
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    if not 1 <= k <= T:
        raise ValueError(f"sampling steps must lie in 1..{T} (the trained T; 0 means all T), "
                         f"got {steps}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    if sampler == "ddpm" and k == T:  # the schedule's tables, bit for bit
        idx = list(range(T - 1, -1, -1))
        return SamplingPlan(
            sampler, 1.0, idx,
            schedule.posterior_mean_coef1[idx].tolist(),
            schedule.posterior_mean_coef2[idx].tolist(),
            np.sqrt(schedule.posterior_variance[idx]).tolist(),
        )
    if sampler == "ddpm":
        eta = 1.0
    idx = np.unique(np.round(np.linspace(0, T - 1, k)).astype(np.int64))[::-1]  # descending
    a_t = schedule.alphas_cumprod[idx]
    a_s = np.concatenate([schedule.alphas_cumprod[idx[1:]], [1.0]])
    sigma = eta * np.sqrt((1.0 - a_s) / (1.0 - a_t)) * np.sqrt(1.0 - a_t / a_s)
    coef_xt = np.sqrt(np.maximum(1.0 - a_s - sigma**2, 0.0)) / np.sqrt(1.0 - a_t)
    coef_x0 = np.sqrt(a_s) - coef_xt * np.sqrt(a_t)
    return SamplingPlan(sampler, float(eta), idx.tolist(), coef_x0.tolist(), coef_xt.tolist(),
                        sigma.tolist())
