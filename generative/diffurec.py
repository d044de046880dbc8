"""DiffuRec (Li, Sun and Li, "DiffuRec: A Diffusion Model for Sequential Recommendation", ACM
TOIS 2023), written here from the paper's description and its code's facts
(github.com/WHUIR/DiffuRec at f6f70c9, ``src/model.py``, ``src/diffurec.py``, ``src/main.py``).

What is its code's:

- The target's embedding x_0 = E[target] is noised, ``x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps``,
  with t uniform over the T = 32 steps of the *truncated linear* schedule (``trunc_lin``: betas
  linear from 1e-4 s + 0.01 to 0.02 s + 0.01 with s = 1000 / T; ``get_named_beta_schedule``).
- The approximator (``Diffu_xstart.forward``): x_t plus a step embedding (sinusoid of
  t * 1000 / T, then Linear(H, 4H), SiLU, Linear(4H, H)) is added to every position of the
  history's representation (E[history], dropout 0.3, LayerNorm), scaled elementwise by
  lambda ~ N(0.001, 0.001) drawn fresh at every call, in training and in sampling; then a
  Transformer (4 pre-LN blocks, 4 heads, feed-forward 4H with GELU, dropout 0.1), dropout and a
  LayerNorm; x0_hat is the output at the last real position. No positional embeddings (the
  code's are commented out).
- The loss is the cross-entropy of ``x0_hat E^T`` over all items against the target
  (``loss_diffu_ce``), the code's only term.
- Prediction: x_T ~ N(0, I), all T reverse steps with DDPM's posterior mean and the
  "fixed-large" variance beta_t (``p_mean_variance``: ``log(append(posterior_variance[1],
  betas[1:]))``), no noise at the last step, whose output is x0_hat; items ranked by
  ``x0_hat E^T``.
- Adam, lr 1e-3, weight decay 0 (``main.py``); the code also decays lr tenfold every 100
  epochs (StepLR), which the harness's trainer has no counterpart for.

What differs: hidden size 64 for Table 1 (the code's 128 is ``hidden_size = 128``); batch 256 as
every row (the code: 512); histories of
the protocol's 10 items, right-padded (the code: 50, left-padded); attention masks padded keys
(the code's mask covers padded *queries*, so real positions attend to padding); the pad row is
not a class of the cross-entropy and never scored (the code's softmax and ranking include it);
no extra dropout after each block; Adam's lr decay left out; selection on validation NDCG@20
every ``eval_every`` epochs, at most ``max_epochs`` (the code: any of HR/NDCG@5/10/20, every 20
epochs, patience 5, at most 500 epochs);
lambda and the reverse noise come from the trainer's and the evaluation's generators; dropout
masks come from 15-bit draws (:class:`kernels.ops.Dropout`: p = 0.1 is 0.1000061, 0.3 is
0.2999878), the attention weights' too; the blocks written out (:class:`Block`: the same
function as ``nn.TransformerEncoderLayer``, the last block evaluated at the one position read,
the softmax over 10 keys by hand); the step sinusoid is DreamRec's
formula (sin first, frequencies over half - 1; the code: cos first, over half; a Linear follows
either way); LayerNorm eps 1e-5 inside the blocks (the code: 1e-12; the embedding's and the
output's LayerNorm take 1e-12 here too); initialisation as ``nn.TransformerEncoderLayer``'s
(:class:`Block`: q/k/v xavier-uniform over the stacked [3H, H], zero q/k/v and output-projection
biases, PyTorch's defaults elsewhere; the code: ``xavier_normal_`` for the feed-forward and
attention-output weights, PyTorch's defaults for q/k/v and every bias); the code's unused layers
left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.contract import Batch, SequentialRecommender
from dreamrec.model import sinusoidal_embedding
from dreamrec.schedule import DiffusionSchedule
from kernels.ops import Dropout, attend_at_one_position


def gelu_tanh(x: Tensor) -> Tensor:
    return F.gelu(x, approximate="tanh")


def softmax_last(scores: Tensor) -> Tensor:
    """``torch.softmax(scores, -1)`` written out: over these 10-key rows PyTorch's CPU kernel is
    ~10x slower than its parts (25 vs 2.5 ms for [2048, 4, 10, 10] on one thread). The shift by
    the row's maximum changes nothing but the range, so it takes no gradient."""
    e = torch.exp(scores - scores.amax(dim=-1, keepdim=True).detach())
    return e / e.sum(dim=-1, keepdim=True)


class Block(nn.Module):
    """One pre-LN Transformer encoder block, as ``nn.TransformerEncoderLayer(H, n_heads, 4H,
    dropout, activation=GELU-tanh, batch_first=True, norm_first=True)`` computes it and
    initialises it (q/k/v weights xavier-uniform over their stacked [3H, H], zero biases), written
    out: PyTorch's CPU attention kernel for these 10-position rows took 30 % of an evaluation
    pass (its softmax alone is slow over 10 keys: :func:`softmax_last`), and here the last
    block is evaluated at the one position that is read
    (:func:`kernels.ops.attend_at_one_position`). The same function up to float rounding
    (tested against ``nn.TransformerEncoderLayer``)."""

    def __init__(self, H: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1, self.norm2 = nn.LayerNorm(H), nn.LayerNorm(H)
        self.w_q, self.w_k, self.w_v = (nn.Linear(H, H) for _ in range(3))
        bound = math.sqrt(6.0 / (H + 3 * H))  # xavier_uniform_ of the stacked in-projection
        for lin in (self.w_q, self.w_k, self.w_v):
            nn.init.uniform_(lin.weight, -bound, bound)
            nn.init.zeros_(lin.bias)
        self.out_proj = nn.Linear(H, H)
        nn.init.zeros_(self.out_proj.bias)
        self.linear1, self.linear2 = nn.Linear(H, 4 * H), nn.Linear(4 * H, H)
        self.attn_dropout, self.dropout, self.dropout1, self.dropout2 = (
            Dropout(dropout) for _ in range(4))

    def forward(self, x: Tensor, bias: Tensor, at: Tensor | None = None) -> Tensor:
        """x [B, L, H] -> [B, L, H]; with ``at`` [B] (a position per row) only that position's
        output, [B, H]. ``bias`` [B, 1, L]: 0 for a key that may be attended, -inf else."""
        B, L, H = x.shape
        n, d = self.n_heads, H // self.n_heads
        y = self.norm1(x)
        if at is None:
            q, k, v = (w(y).view(B, L, n, d).transpose(1, 2) for w in (self.w_q, self.w_k,
                                                                          self.w_v))
            scores = q @ k.transpose(-1, -2) / math.sqrt(d) + bias.unsqueeze(1)  # [B, n, L, L]
            attn = self.attn_dropout(softmax_last(scores))
            x = x + self.dropout1(self.out_proj((attn @ v).transpose(1, 2).reshape(B, L, H)))
        else:
            rows = torch.arange(B, device=x.device)
            ctx = attend_at_one_position(y, y[rows, at], self.w_q, self.w_k, self.w_v,
                                         bias, n, self.attn_dropout)
            x = x[rows, at] + self.dropout1(self.out_proj(ctx))
        return x + self.dropout2(self.linear2(self.dropout(gelu_tanh(self.linear1(
            self.norm2(x))))))


@dataclass
class DiffuRecConfig:
    """DiffuRec's settings; defaults are its code's (``src/main.py``), hidden size Table 1's."""

    hidden_size: int = 64
    n_blocks: int = 4
    n_heads: int = 4
    dropout: float = 0.1
    emb_dropout: float = 0.3
    timesteps: int = 32
    schedule: str = "trunc_lin"
    lambda_uncertainty: float = 0.001  # mean and std of the x_t scale lambda
    seq_len: int = 10

    def __post_init__(self) -> None:
        if self.hidden_size % self.n_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be a multiple of n_heads "
                             f"{self.n_heads}")
        if self.timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {self.timesteps}")
        for name in ("dropout", "emb_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if self.lambda_uncertainty < 0:
            raise ValueError(f"lambda_uncertainty must be >= 0, got {self.lambda_uncertainty}")
        DiffusionSchedule.create(self.schedule, self.timesteps)  # an unknown schedule fails here


class DiffuRec(SequentialRecommender):
    """Approximator, truncated-linear diffusion over the target embedding, cross-entropy loss."""

    def __init__(self, n_items: int, config: DiffuRecConfig) -> None:
        super().__init__(n_items)
        self.config = config
        H = config.hidden_size
        self.item_embeddings = nn.Embedding(n_items + 1, H)  # row n_items = pad, N(0, 1)
        self.emb_dropout = Dropout(config.emb_dropout)
        self.emb_norm = nn.LayerNorm(H, eps=1e-12)
        self.time_mlp = nn.Sequential(nn.Linear(H, 4 * H), nn.SiLU(), nn.Linear(4 * H, H))
        self.blocks = nn.ModuleList(Block(H, config.n_heads, config.dropout)
                                    for _ in range(config.n_blocks))
        self.out_dropout = Dropout(config.dropout)
        self.out_norm = nn.LayerNorm(H, eps=1e-12)
        self.schedule = DiffusionSchedule.create(config.schedule, config.timesteps)
        T = config.timesteps
        self.register_buffer("sinusoid", sinusoidal_embedding(
            torch.arange(T) * (1000.0 / T), H), persistent=False)  # [T, H], rescaled steps

    def approximate(self, history: Tensor, length: Tensor, x_t: Tensor, t: Tensor,
                    generator: torch.Generator | None) -> Tensor:
        """x0_hat [B, H] from the history and x_t [B, H] at steps t [B]."""
        cfg = self.config
        pad = history == self.pad_id  # [B, L]
        # a row without history (a pad at position 0, length 1) attends to that pad's row
        pad[:, 0] &= ~pad.all(dim=1)
        seq = self.emb_norm(self.emb_dropout(self.item_embeddings(history)))  # [B, L, H]
        x = x_t + self.time_mlp(self.sinusoid[t])  # [B, H]
        lam = cfg.lambda_uncertainty + cfg.lambda_uncertainty * torch.randn(
            seq.shape, generator=generator, device=seq.device)
        rep = seq + lam * x.unsqueeze(1)
        bias = torch.zeros(pad.shape, dtype=rep.dtype, device=rep.device).masked_fill_(
            pad, float("-inf")).unsqueeze(1)  # [B, 1, L]
        for block in self.blocks[:-1]:
            rep = block(rep, bias)
        rep = self.blocks[-1](rep, bias, at=length - 1)  # only the last real position is read
        return self.out_norm(self.out_dropout(rep))

    def item_table(self) -> Tensor:
        return self.item_embeddings.weight[: self.n_items]

    def item_scores(self, x0_hat: Tensor) -> Tensor:
        return x0_hat @ self.item_embeddings.weight[: self.n_items].T

    def calculate_loss(self, batch: Batch) -> Tensor:
        g = batch.generator
        B = batch.target.shape[0]
        dev = batch.target.device
        t = torch.randint(0, self.config.timesteps, (B,), generator=g, device=dev)
        noise = torch.randn((B, self.config.hidden_size), generator=g, device=dev)
        x_t = self.schedule.add_noise(self.item_embeddings(batch.target), noise, t)
        x0_hat = self.approximate(batch.history, batch.length, x_t, t, g)
        return F.cross_entropy(self.item_scores(x0_hat), batch.target)

    @torch.no_grad()
    def generate(self, history: Tensor, length: Tensor,
                 generator: torch.Generator | None = None) -> Tensor:
        """Reverse sampling over all T steps (see the module's docstring) -> x0_hat [B, H]."""
        s = self.schedule
        B, H = history.shape[0], self.config.hidden_size
        dev = history.device
        x = torch.randn((B, H), generator=generator, device=dev)
        for step in range(s.timesteps - 1, -1, -1):
            t = torch.full((B,), step, dtype=torch.long, device=dev)
            x0_hat = self.approximate(history, length, x, t, generator)
            x = s.posterior_mean_coef1[step] * x0_hat + s.posterior_mean_coef2[step] * x
            if step > 0:  # fixed-large variance beta_t; the last step adds none
                x = x + math.sqrt(s.betas[step]) * torch.randn(
                    (B, H), generator=generator, device=dev)
        return x

    def full_sort_predict(self, history: Tensor, length: Tensor,
                          generator: torch.Generator | None = None) -> Tensor:
        return self.item_scores(self.generate(history, length, generator))
