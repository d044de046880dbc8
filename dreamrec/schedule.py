"""Noise schedules and the DDPM forward/posterior coefficients (pure math, no nn.Module).

Formulas follow the official DreamRec code (github.com/YangZhengyi98/DreamRec, ``DreamRec.py``):
``linear`` (beta_start..beta_end), ``exp`` (beta_min 0.1, beta_max 10), ``cosine`` (s = 0.008,
clipped to [1e-4, 0.9999]) and ``sqrt`` (alpha_bar(t) = 1 - sqrt(t + 1e-4), max beta 0.999).
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

ScheduleName = Literal["linear", "exp", "cosine", "sqrt"]
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
