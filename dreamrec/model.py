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
from kernels.ops import Dropout, Embedding, NoiseBlocks, attend_at_one_position

DenoiserKind = Literal["mlp1", "mlp2"]
DENOISERS: tuple[str, ...] = get_args(DenoiserKind)
TARGETS = ("learned", "detached", "sasrec")

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
    # the harness's own settings against the collapse (the paper's model: "learned", False)
    #: where the diffusion targets x_0 come from: "learned" (the paper's: the item table, trained
    #: through the targets and the histories), "detached" (the same table, the targets
    #: stop-gradient: it learns through the histories only), "sasrec" (the item table of a
    #: frozen, validation-selected SASRec of the same dataset and seed, for histories and
    #: targets alike, scaled to DreamRec's own scale; see harness.run.pretrained_items and
    #: load_item_embeddings)
    targets: str = "learned"
    #: targets and retrieval on the sphere of radius sqrt(hidden_size) (an N(0, I) row's norm):
    #: x_0 = sqrt(H) e / |e|, and items ranked by the cosine of oracle and item embedding
    normalize: bool = False

    #: fields left out of the config hash while they hold their default, so that records made
    #: before they existed keep their hash
    HASHED_IF_SET: ClassVar[tuple[str, ...]] = ("sampler", "steps", "eta", "targets", "normalize")

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
        if self.targets not in TARGETS:
            raise ValueError(f"unknown targets {self.targets!r}; valid: {', '.join(TARGETS)}")

    @property
    def items_from(self) -> str | None:
        """The registered model whose validation-selected item table this model takes."""
        return "sasrec" if self.targets == "sasrec" else None


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
    so the result is identical and 10x cheaper; and the keys and values themselves are never
    formed (:func:`kernels.ops.attend_at_one_position`).
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

    def dropout_words(self, batch: int, length: int) -> list[int]:
        """32-bit draws of the three dropout masks of a training batch (embeddings, attention
        weights, feed-forward output)."""
        H = self.ln_1.normalized_shape[0]
        return [Dropout.words(batch * length * H), Dropout.words(batch * length),
                Dropout.words(batch * H)]

    def forward(self, history_emb: Tensor, history: Tensor, length: Tensor,
                bits: tuple[Tensor, ...] | None = None) -> Tensor:
        """Item embeddings of the history [B, L, H], history [B, L], length [B] -> c [B, H].

        ``bits``: the dropout masks' random draws (:meth:`dropout_words`), else drawn here.
        """
        B = history.shape[0]
        emb_bits, attn_bits, ff_bits = bits if bits is not None else (None, None, None)
        rows = torch.arange(B, device=history.device)
        last = length - 1  # [B]
        valid = history != self.pad_id  # [B, L]
        # dropout, then padding positions zeroed (one product)
        seq = self.emb_dropout(history_emb + self.positional_embeddings.weight,
                               keep=valid.unsqueeze(-1).to(history_emb.dtype),
                               bits=emb_bits)  # [B, L, H]
        query = self.ln_1(seq[rows, last])  # [B, H]
        allowed = valid & (self.positions.unsqueeze(0) <= last.unsqueeze(1))  # key & causal
        # the official code replaces a masked key's score by -2^32+1; adding it instead gives
        # the same weights (a real score vanishes in its rounding, and a row with no allowed
        # key has equal scores either way: the padded rows of seq are zero)
        bias = torch.where(allowed, 0.0, _MASKED).unsqueeze(1)  # [B, 1, L]
        gate = (query.sum(-1, keepdim=True) != 0).to(seq.dtype)  # official query mask
        out = attend_at_one_position(
            seq, query, self.linear_q, self.linear_k, self.linear_v, bias, query_gate=gate,
            attn_dropout=lambda a: self.attn_dropout(a, bits=attn_bits))
        out = out + query  # [B, H], residual
        x = self.ln_2(out)
        ff = self.ff_dropout(self.ff_w2(F.relu(self.ff_w1(x))), bits=ff_bits)
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
        # row n_items = pad; gradient into a buffer kept between steps (kernels.ops.Embedding)
        self.item_embeddings = Embedding(n_items + 1, H)
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
        """MSE between x_0 and the denoiser's prediction from x_t, c and t.

        The step's random draws come first, in two blocks: the dropout masks' bits from torch's
        global generator (one call), then the guidance dropout, the diffusion steps and the
        noise from the batch's generator; :meth:`loss_from` is the rest, free of random
        operations.
        """
        bits, drop, t, noise = self.step_draws(batch, 1)
        return self.loss_from(batch.history, batch.length, batch.target, bits, drop, t, noise[0])

    def step_draws(self, batch: Batch, n_noise: int) -> tuple[
            tuple[Tensor, ...] | None, Tensor, Tensor, Tensor]:
        """A training step's random draws, in order: the dropout masks' bits (torch's global
        generator), then from the batch's generator the guidance dropout [B, 1], the diffusion
        steps [B] and ``n_noise`` noise draws [n_noise, B, H] (one call)."""
        g = batch.generator
        B, L = batch.history.shape
        dev = batch.history.device
        bits = None
        if self.training and self.encoder.emb_dropout.threshold:
            words = self.encoder.dropout_words(B, L)
            bits = torch.empty(sum(words), dtype=torch.int32, device=dev).random_().split(words)
        drop = torch.rand(B, 1, generator=g, device=dev) < self.config.p_uncond
        t = torch.randint(0, self.config.timesteps, (B,), generator=g, device=dev)
        noise = torch.randn((n_noise, B, self.config.hidden_size), generator=g, device=dev)
        return bits, drop, t, noise

    def loss_from(self, history: Tensor, length: Tensor, target: Tensor,
                  bits: tuple[Tensor, ...] | None, drop: Tensor, t: Tensor,
                  noise: Tensor) -> Tensor:
        """The loss given the step's random draws (see :meth:`calculate_loss`)."""
        # one embedding lookup for history and target: one dense gradient instead of two
        emb = self.item_embeddings(torch.cat((history, target.unsqueeze(1)), dim=1))
        hist_emb, x0 = emb.split([history.shape[1], 1], dim=1)  # split: no zero-filled grads
        x0 = self.target_embedding(x0.squeeze(1))  # [B, H]
        c = self.encoder(hist_emb, history, length, bits)  # [B, H]
        c = torch.where(drop, self.null_cond, c)  # guidance dropout with p_u
        x_t = self.schedule.add_noise(x0, noise, t)  # forward process q(x_t | x_0)
        x0_hat = self.denoiser(x_t, c, self.denoiser.step_embedding(t))
        return F.mse_loss(x0_hat, x0)

    def target_embedding(self, e: Tensor) -> Tensor:
        """The diffusion target x_0 of item embeddings ``e`` [B, H] (see ``targets`` and
        ``normalize``)."""
        if self.config.targets == "sasrec" and self.item_embeddings.weight.requires_grad:
            raise RuntimeError("targets = 'sasrec' trains on a loaded, frozen item table and "
                               "none was loaded: build the model with harness.run.build_model")
        if self.config.targets == "detached":
            e = e.detach()
        if self.config.normalize:
            e = math.sqrt(self.config.hidden_size) * F.normalize(e, dim=-1)
        return e

    # -- a frozen item table from another model (targets = "sasrec") ------------------------
    def load_item_embeddings(self, table: Tensor) -> None:
        """Take ``table`` [n_items, H] as the real items' embeddings, frozen (the pad row is
        never read: padded positions are zeroed in the encoder), scaled by one factor to a mean
        row norm of sqrt(H), an N(0, I) row's: the scale of DreamRec's own initial table, which
        the schedule's unit-variance noise and the N(0, 1) positional embeddings assume. A
        SASRec table (initialised at std 0.02) has rows of norm ~0.2 at H = 64; taken as it is,
        its targets would sit ~40 times deeper in the noise at every step. One positive factor
        keeps every direction, every ratio of norms and the inner-product ranking."""
        if tuple(table.shape) != (self.n_items, self.config.hidden_size):
            raise ValueError(f"item table of shape {tuple(table.shape)}, expected "
                             f"({self.n_items}, {self.config.hidden_size}): the source model's "
                             f"hidden size must be DreamRec's")
        scale = math.sqrt(self.config.hidden_size) / table.norm(dim=-1).mean().clamp_min(1e-12)
        with torch.no_grad():
            self.item_embeddings.weight[: self.n_items] = table * scale
        self.item_embeddings.weight.requires_grad_(False)

    def item_table(self) -> Tensor:
        """The real items' embeddings [n_items, H] (the pad row left out)."""
        return self.item_embeddings.weight[: self.n_items]

    # -- prediction -------------------------------------------------------------------------
    def item_scores(self, oracle: Tensor) -> Tensor:
        """Inner product of oracle embeddings [B, H] with every real item -> [B, n_items]
        (their cosine with ``normalize``)."""
        items = self.item_embeddings.weight[: self.n_items]
        if self.config.normalize:
            return F.normalize(oracle, dim=-1) @ F.normalize(items, dim=-1).T
        return oracle @ items.T

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
        n_noisy = sum(s > 0 for s in sigma)
        if fast and self.config.denoiser == "mlp1" and all(s > 0 for s in sigma[:n_noisy]):
            # (every plan of dreamrec.schedule draws noise at all its steps but the last ones)
            return self._generate_mlp1(x, c, t_emb[pick], plan, n_noisy, w, generator)
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

    def _generate_mlp1(self, x: Tensor, c: Tensor, t_emb: Tensor, plan: SamplingPlan,
                       n_noisy: int, w: float, generator: torch.Generator | None) -> Tensor:
        """The exact fast path of :meth:`generate` for the one-layer denoiser.

        ``f(x, c, t) = x W_x^T + c W_c^T + t_emb(t) W_t^T + b`` is linear, so step j's update
        ``coef_x0 ((1+w) f(x, c, t) - w f(x, null, t)) + coef_xt x + sigma z`` is
        ``x M_j + coef_x0 (g + s_j) + sigma_j z`` with ``M_j = coef_x0 W_x^T + coef_xt I``,
        ``s_j = t_emb(t_j) W_t^T + b`` and the guided condition ``g = (1+w) c W_c^T - w null
        W_c^T``. Writing ``x_j = u_j + g Q_j`` with ``Q_0 = 0`` and ``Q_{j+1} = Q_j M_j +
        coef_x0 I`` takes g out of the chain: ``u_{j+1} = u_j M_j + coef_x0 s_j + sigma_j z``,
        one product (its bias a row vector) and one scaled addition of noise per step, and ``x
        = u_k + g Q_k`` at the end. The first ``n_noisy`` steps add noise, the rest none. Noise
        is drawn in blocks (:class:`kernels.ops.NoiseBlocks`: the same normals, in the same
        order, as one draw per step), by a second thread when torch has two or more threads
        here. The samples equal the generic path's up to float rounding.
        """
        B, H = c.shape
        lin: nn.Linear = self.denoiser.net[0]
        Wx, Wc, Wt = lin.weight.split(H, dim=1)  # each [H, H]
        dev = c.device
        k = t_emb.shape[0]
        cx0 = torch.tensor(plan.coef_x0, device=dev, dtype=c.dtype)
        cxt = torch.tensor(plan.coef_xt, device=dev, dtype=c.dtype)
        guided = (1 + w) * (c @ Wc.T) - w * (self.null_cond @ Wc.T)  # [B, H]
        shift = cx0[:, None] * (t_emb @ Wt.T + lin.bias)  # [k, H]
        eye = torch.eye(H, device=dev, dtype=c.dtype)
        M = cx0[:, None, None] * Wx.T + cxt[:, None, None] * eye  # [k, H, H]
        Q = torch.zeros_like(eye)
        for j in range(k):  # [H, H] products: negligible beside the [B, H] chain
            Q = torch.addmm(eye, Q, M[j], beta=plan.coef_x0[j])
        # blocks of about 1 MB, which stay in cache (one step a block unless a step's B*H
        # normals are a multiple of 16, see NoiseBlocks)
        block = (max(1, min(k, (1 << 18) // (B * H)))
                 if dev.type == "cpu" and (B * H) % 16 == 0 else 1)
        background = dev.type == "cpu" and torch.get_num_threads() > 1 and n_noisy > block
        threads = torch.get_num_threads()
        if background:  # the worker takes one of torch's threads
            torch.set_num_threads(threads - 1)
        try:
            j = 0
            for z in NoiseBlocks(generator, (B, H), n_noisy, block, dev, background=background):
                for i in range(z.shape[0]):
                    x = torch.addmm(shift[j], x, M[j]).add_(z[i], alpha=plan.sigma[j])
                    j += 1
            for j in range(j, k):  # the noiseless steps
                x = torch.addmm(shift[j], x, M[j])
        finally:
            torch.set_num_threads(threads)
        return torch.addmm(x, guided, Q)

    def full_sort_predict(
        self, history: Tensor, length: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        return self.item_scores(self.generate(history, length, generator))
