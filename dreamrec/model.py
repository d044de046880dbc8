"""DreamRec (Yang et al., NeurIPS 2023): guided diffusion that generates an oracle item embedding.

Faithful to the paper and the official code (github.com/YangZhengyi98/DreamRec, ``DreamRec.py``
and ``Modules_ori.py``), with its known defects left out: sampling runs in eval mode (no
dropout), the pad row is never scored, and prediction takes a seeded generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.contract import Batch, SequentialRecommender
from dreamrec.schedule import SAMPLERS, SCHEDULES, DiffusionSchedule, SamplingPlan, sampling_plan

DenoiserKind = Literal["mlp1", "mlp2"]
DENOISERS: tuple[str, ...] = get_args(DenoiserKind)

# the official attention's additive mask value for masked keys (Modules_ori.py)
_MASKED = float(-(2**32) + 1)


@dataclass
class DreamRecConfig:
    """Model settings; the defaults are the official code's (README presets override some)."""

    hidden_size: int = 64
    timesteps: int = 500
    schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    w: float = 2.0  # guidance strength
    p_uncond: float = 0.1  # guidance dropout p_u
    dropout: float = 0.1
    denoiser: str = "mlp1"
    seq_len: int = 10
    # generation (evaluation only: a trained model samples with any of them, no retraining)
    sampler: str = "ddpm"  # ddpm | ddim
    steps: int = 0  # reverse steps, evenly spaced over the T trained ones; 0 = all T
    eta: float = 0.0  # DDIM noise scale in [0, 1]: 0 deterministic, 1 DDPM-like (ddpm ignores it)

    #: fields left out of the config hash while they hold their default, so that records made
    #: before the samplers existed keep their hash
    HASHED_IF_SET: ClassVar[tuple[str, ...]] = ("sampler", "steps", "eta")

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if self.denoiser not in DENOISERS:
            raise ValueError(f"unknown denoiser {self.denoiser!r}; valid: {', '.join(DENOISERS)}")
        if self.timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {self.timesteps}")
        if not 0.0 <= self.p_uncond <= 1.0:
            raise ValueError(f"p_uncond must lie in [0, 1], got {self.p_uncond}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; valid: {', '.join(SAMPLERS)}")
        if not 0 <= self.steps <= self.timesteps:
            raise ValueError(f"steps must lie in 0..timesteps={self.timesteps} (0 = all), "
                             f"got {self.steps}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1], got {self.eta}")


class Dropout(nn.Module):
    """Inverted dropout with a cheaper mask than ``nn.Dropout`` on the CPU.

    ``nn.Dropout`` draws one float per element (about 1 ms per [256, 10, 64] batch on this
    project's 2-core reference machine, the largest single cost of a DreamRec step). Here each
    32-bit draw of torch's global generator yields two independent 15-bit uniforms, and an
    element is dropped when its uniform is below ``round(p * 2**15)``: drop probability
    ``round(p * 2**15) / 2**15`` (0.1 -> 0.1000061), 4-7x faster. Identity in eval mode.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {p}")
        self.threshold = round(p * 32768)
        self.scale = 1.0 / (1.0 - self.threshold / 32768)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """Dropout of ``x``, times the 0/1 ``keep`` mask (broadcast to ``x``) when given.

        Folding a padding mask into the dropout mask saves one product over ``x`` and its
        gradient.
        """
        if not self.training or self.threshold == 0:
            return x if keep is None else x * keep
        n = x.numel()
        bits = torch.empty((n + 1) // 2, dtype=torch.int32, device=x.device).random_()
        u15 = bits.view(torch.int16)[:n].view(x.shape) & 0x7FFF  # uniform on [0, 2**15)
        mask = (u15 >= self.threshold).to(x.dtype) * self.scale
        return x * (mask if keep is None else mask * keep)


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """Transformer sinusoidal embedding of step indices, [N] -> [N, dim] (official formula)."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
    args = t.float()[:, None] * freq[None, :]
    return torch.cat((args.sin(), args.cos()), dim=-1)


class SequenceEncoder(nn.Module):
    """One self-attention block over the history, read out at position ``length - 1``.

    Same parameters and computation as the official ``Tenc.cacu_h`` (one head, causal and key
    masks with the value -2^32+1, query mask, a position-wise feed-forward with its own layer
    norm, then ``ln_3``), except that attention and the feed-forward are evaluated for the one
    position that is read out: every operation after the key/value projections is position-wise,
    so the result is identical and 10x cheaper.
    """

    def __init__(self, n_items: int, hidden: int, seq_len: int, dropout: float) -> None:
        super().__init__()
        self.pad_id = n_items
        self.positional_embeddings = nn.Embedding(seq_len, hidden)
        self.emb_dropout = Dropout(dropout)
        self.ln_1 = nn.LayerNorm(hidden)
        self.ln_2 = nn.LayerNorm(hidden)
        self.ln_3 = nn.LayerNorm(hidden)
        self.linear_q = nn.Linear(hidden, hidden)
        self.linear_k = nn.Linear(hidden, hidden)
        self.linear_v = nn.Linear(hidden, hidden)
        self.attn_dropout = Dropout(dropout)
        self.ff_w1 = nn.Linear(hidden, hidden)  # Conv1d(k=1) in the official code
        self.ff_w2 = nn.Linear(hidden, hidden)
        self.ff_dropout = Dropout(dropout)
        self.ff_ln = nn.LayerNorm(hidden)
        self.register_buffer("positions", torch.arange(seq_len), persistent=False)

    def forward(self, history_emb: Tensor, history: Tensor, length: Tensor) -> Tensor:
        """Item embeddings of the history [B, L, H], history [B, L], length [B] -> c [B, H]."""
        B = history.shape[0]
        rows = torch.arange(B, device=history.device)
        last = length - 1  # [B]
        valid = history != self.pad_id  # [B, L]
        # dropout, then padding positions zeroed (one product)
        seq = self.emb_dropout(history_emb + self.positional_embeddings.weight,
                               keep=valid.unsqueeze(-1).to(history_emb.dtype))  # [B, L, H]
        query = self.ln_1(seq[rows, last])  # [B, H]
        q = self.linear_q(query)
        # keys and values in one product: same parameters as linear_k and linear_v
        kv = F.linear(
            seq,
            torch.cat((self.linear_k.weight, self.linear_v.weight)),
            torch.cat((self.linear_k.bias, self.linear_v.bias)),
        )
        k, v = kv.chunk(2, dim=-1)  # [B, L, H] each
        scores = torch.bmm(k, q.unsqueeze(-1)).squeeze(-1) / math.sqrt(q.shape[-1])  # [B, L]
        allowed = valid & (self.positions.unsqueeze(0) <= last.unsqueeze(1))  # key & causal
        scores = scores.masked_fill(~allowed, _MASKED)
        attn = torch.softmax(scores, dim=-1)
        attn = attn * (query.sum(-1, keepdim=True) != 0)  # official query mask
        attn = self.attn_dropout(attn)
        out = torch.bmm(attn.unsqueeze(1), v).squeeze(1) + query  # [B, H], residual
        x = self.ln_2(out)
        ff = self.ff_dropout(self.ff_w2(F.relu(self.ff_w1(x))))
        ff = self.ff_ln(ff + x)
        ff = ff * valid[rows, last].unsqueeze(-1)
        return self.ln_3(ff)  # [B, H]


class Denoiser(nn.Module):
    """x0-predicting network ``f(x_t, c, t)`` over ``[x_t, c, step_emb(t)]``.

    ``mlp1``: one linear layer 3H -> H; ``mlp2``: 3H -> 2H, GELU, 2H -> H. The step embedding is
    sinusoidal -> Linear(H, 2H) -> GELU -> Linear(2H, H).
    """

    def __init__(self, hidden: int, timesteps: int, kind: str) -> None:
        super().__init__()
        self.step_mlp = nn.Sequential(
            nn.Linear(hidden, hidden * 2), nn.GELU(), nn.Linear(hidden * 2, hidden)
        )
        if kind == "mlp1":
            self.net = nn.Sequential(nn.Linear(hidden * 3, hidden))
        elif kind == "mlp2":
            self.net = nn.Sequential(
                nn.Linear(hidden * 3, hidden * 2), nn.GELU(), nn.Linear(hidden * 2, hidden)
            )
        else:
            raise ValueError(f"unknown denoiser {kind!r}; valid: {', '.join(DENOISERS)}")
        sinus = sinusoidal_embedding(torch.arange(timesteps), hidden)
        self.register_buffer("sinusoid", sinus, persistent=False)  # [T, H]

    def step_embedding(self, t: Tensor) -> Tensor:
        """[N] long -> [N, H]."""
        return self.step_mlp(self.sinusoid[t])

    def forward(self, x_t: Tensor, cond: Tensor, t_emb: Tensor) -> Tensor:
        """x_t, cond, t_emb [B, H] -> predicted x_0 [B, H]."""
        return self.net(torch.cat((x_t, cond, t_emb), dim=1))


class DreamRec(SequentialRecommender):
    """Encoder + denoiser + schedule; loss = MSE to x_0, prediction = guided DDPM sampling."""

    def __init__(self, n_items: int, config: DreamRecConfig) -> None:
        super().__init__(n_items)
        self.config = config
        H = config.hidden_size
        self.item_embeddings = nn.Embedding(n_items + 1, H)  # row n_items = pad
        nn.init.normal_(self.item_embeddings.weight, 0, 1)
        self.null_cond = nn.Parameter(torch.randn(H))  # the unconditional embedding
        self.encoder = SequenceEncoder(n_items, H, config.seq_len, config.dropout)
        self.denoiser = Denoiser(H, config.timesteps, config.denoiser)
        self.schedule = DiffusionSchedule.create(
            config.schedule, config.timesteps, config.beta_start, config.beta_end
        )

    # -- training ---------------------------------------------------------------------------
    def encode(self, history: Tensor, length: Tensor) -> Tensor:
        """history [B, L], length [B] -> condition c [B, H]."""
        return self.encoder(self.item_embeddings(history), history, length)

    def calculate_loss(self, batch: Batch) -> Tensor:
        g = batch.generator
        # one embedding lookup for history and target: one dense gradient instead of two
        emb = self.item_embeddings(torch.cat((batch.history, batch.target.unsqueeze(1)), dim=1))
        hist_emb, x0 = emb.split([batch.history.shape[1], 1], dim=1)  # split: no zero-filled grads
        x0 = x0.squeeze(1)  # [B, H]
        B = x0.shape[0]
        c = self.encoder(hist_emb, batch.history, batch.length)  # [B, H]
        drop = torch.rand(B, 1, generator=g, device=x0.device) < self.config.p_uncond
        c = torch.where(drop, self.null_cond, c)  # guidance dropout with p_u
        t = torch.randint(0, self.config.timesteps, (B,), generator=g, device=x0.device)
        noise = torch.randn(x0.shape, generator=g, device=x0.device)
        x_t = self.schedule.add_noise(x0, noise, t)  # forward process q(x_t | x_0)
        x0_hat = self.denoiser(x_t, c, self.denoiser.step_embedding(t))
        return F.mse_loss(x0_hat, x0)

    # -- prediction -------------------------------------------------------------------------
    def item_scores(self, oracle: Tensor) -> Tensor:
        """Inner product of oracle embeddings [B, H] with every real item -> [B, n_items]."""
        return oracle @ self.item_embeddings.weight[: self.n_items].T

    def sampling_plan(self, sampler: str | None = None, steps: int | None = None,
                      eta: float | None = None) -> SamplingPlan:
        """The plan of the configured sampler, or of the one given (arguments override)."""
        cfg = self.config
        return sampling_plan(
            self.schedule, cfg.sampler if sampler is None else sampler,
            cfg.steps if steps is None else steps, cfg.eta if eta is None else eta,
        )

    @torch.no_grad()
    def generate(
        self, history: Tensor, length: Tensor, generator: torch.Generator | None = None,
        fast: bool = True, plan: SamplingPlan | None = None, w: float | None = None,
    ) -> Tensor:
        """Guided sampling of the oracle embedding, [B, H], with the configured sampler.

        x_T ~ N(0, I); at each step of the plan (:func:`dreamrec.schedule.sampling_plan`: all T
        DDPM steps by default, or DDIM over k of them) the guided prediction
        x0_hat = (1+w) f(x_t, c, t) - w f(x_t, null, t) enters the step's update
        ``coef_x0 * x0_hat + coef_xt * x_t + sigma * z`` (no noise where sigma is 0: DDPM's last
        step, deterministic DDIM). With the ``mlp1`` denoiser and ``fast=True`` the linear layer
        is split into its x_t, c and t parts, so the condition term is computed once per batch
        and the step term once per step; the samples equal the generic path's up to float
        rounding, from the same generator. Other denoisers run cond and uncond as one batched
        call. ``w`` overrides the configured guidance strength.
        """
        plan = plan or self.sampling_plan()
        c = self.encode(history, length)  # [B, H]
        B, H = c.shape
        w = self.config.w if w is None else w
        x = torch.randn((B, H), generator=generator, device=c.device)
        # step terms are computed for all T steps, then the plan's are picked: the same values
        # bit for bit, whatever the plan
        t_emb = self.denoiser.step_embedding(torch.arange(self.config.timesteps, device=c.device))
        pick = torch.tensor(plan.steps, device=c.device)  # [k], in sampling order
        coef_x0, coef_xt, sigma = plan.coef_x0, plan.coef_xt, plan.sigma
        if fast and self.config.denoiser == "mlp1":
            lin: nn.Linear = self.denoiser.net[0]
            Wx, Wc, Wt = lin.weight.split(H, dim=1)  # each [H, H]
            guided_c = (1 + w) * (c @ Wc.T) - w * (self.null_cond @ Wc.T)  # [B, H]
            step_part = (t_emb @ Wt.T + lin.bias)[pick]  # [k, H]
            WxT = Wx.T.contiguous()
            noise = torch.empty((B, H), device=c.device)
            for j in range(len(plan.steps)):
                x_next = torch.addmm(step_part[j], x, WxT).add_(guided_c)  # x0_hat, then in place:
                x_next.mul_(coef_x0[j]).add_(x, alpha=coef_xt[j])  # the step's mean
                if sigma[j] > 0:
                    x_next.add_(noise.normal_(generator=generator), alpha=sigma[j])
                x = x_next
            return x
        t_emb = t_emb[pick]
        cond = torch.cat((c, self.null_cond.expand(B, H)))  # [2B, H]
        for j in range(len(plan.steps)):
            f = self.denoiser(torch.cat((x, x)), cond, t_emb[j].expand(2 * B, H))
            f_c, f_u = f[:B], f[B:]
            x0_hat = (1 + w) * f_c - w * f_u
            x = coef_x0[j] * x0_hat + coef_xt[j] * x
            if sigma[j] > 0:
                x = x + sigma[j] * torch.randn((B, H), generator=generator, device=c.device)
        return x

    def full_sort_predict(
        self, history: Tensor, length: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        return self.item_scores(self.generate(history, length, generator))
