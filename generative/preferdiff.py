"""PreferDiff (Liu et al., "Preference Diffusion for Recommendation", ICLR 2025), written here on
DreamRec's structure (the same encoder, denoiser, guidance and schedules: :mod:`dreamrec.model`).

What is the paper's and its code's (github.com/lswhim/PreferDiff at fdf45b0; ``diffusion.py``
``PreferenceDiffusion.p_losses``, ``models/PreferDiff/_model.py``, ``config.yaml``):

- x_0-prediction from ``[x_t, c, t_emb]`` by one linear layer, classifier-free guidance with a
  learned null condition at rate p_u = 0.1, item table N(0, 1), inner-product retrieval: as
  DreamRec (the code's ``denoise_nn`` is one ``Linear(3D, D)``).
- The loss (``p_losses``, mode ``neg``): with ``cos_err(x, y) = mean over the batch of
  (cos(x, y) - 1)^2``, ``L_pos = cos_err(x_0, f(x_t, c, t))`` and ``L_neg`` the same for the
  negative, ``loss = -(1 - lambda) log sigmoid(-gamma (L_pos - L_neg)) + lambda L_pos``. The
  negative of a row is the *centroid* of the embeddings of the batch's other B - 1 targets
  (``in_batch_negative_sampling``, then ``torch.mean`` over them, duplicates kept), noised at
  the row's t with noise of its own and denoised under the row's condition. The log-sigmoid is
  taken of the two batch means, as the code does, not per row. Nothing is detached: the item
  table learns through histories, targets and negatives.
- gamma = 5 (the code's default, never overridden); lambda = 0.4 (the README's Sports and
  Beauty; 0.6 for Toys; the config file's 0.5); w = 2 (README, Sports); lr 1e-4, weight decay 0,
  AdamW, batch 256; T = 2000, linear betas 1e-4..0.02, deterministic DDIM (eta 0) with
  ``ddim_step = 100``: the grid ``range(0, T + 1, 100)`` has 21 points, so 21 denoiser calls at
  t = 2000, 1900, ..., 100, 0, the last one returning x0_hat (``init_ddim_variables``,
  ``sample_from_noise``). Here ``steps = 21`` evenly spaced over the trained indices 0..T-1
  (1999, 1899, ..., 100, 0: the same alpha_bar grid within one index; the code reads alpha_bar
  one index early and feeds t = 2000, a step never trained).

What differs: embedding size 64 for Table 1 (the paper's 3072 is ``hidden_size = 3072``); the
sequence encoder is DreamRec's one-head block (the code's SASRec-style block, ``modules.py``, has
two heads, scales by sqrt(H) and adds two outer residuals, ``seq + attention`` whose attention
output already holds its queries, then ``seq + feed-forward``, so the raw last-item embedding
reaches c; neither block has an output projection); training rows are every prefix of every
sequence (the code: one row per user); full ranking over all items, selection on validation
NDCG@20 every 5 epochs with early stopping after 30 evaluations without a gain (the code:
recall@5 every epoch, stopping after 10 epochs without a gain, at most 150 epochs,
``default.yaml``); the encoder's attention projections keep PyTorch's initialisation, as
DreamRec's (the code's ``TransformerEncoder._reset_parameters``: Xavier-uniform, zero bias).
A batch needs two or more rows (``MIN_BATCH_ROWS``: harness.run refuses a batch size that leaves
a last batch of one; the code would average over no negatives, NaN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from baselines.contract import Batch
from dreamrec.model import DreamRec, DreamRecConfig


@dataclass
class PreferDiffConfig(DreamRecConfig):
    """DreamRec's settings with PreferDiff's defaults, and its preference loss's two."""

    timesteps: int = 2000
    w: float = 2.0
    sampler: str = "ddim"
    steps: int = 21
    lam: float = 0.4  # weight of L_pos beside the preference term
    gamma: float = 5.0  # scale of the preference margin

    HASHED_IF_SET: ClassVar[tuple[str, ...]] = ()  # a new model: every field is hashed
    MIN_BATCH_ROWS: ClassVar[int] = 2  # in-batch negatives: a row needs another (harness.run)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must lie in [0, 1], got {self.lam}")
        if self.gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}")
        if self.targets != "learned" or self.normalize:
            raise ValueError("PreferDiff takes the learned item table (targets = \"learned\", "
                             "normalize = false)")


def cosine_error(x0: Tensor, x0_hat: Tensor) -> Tensor:
    """PreferDiff's cosine loss: the batch mean of (cos(x_0, x0_hat) - 1)^2, a scalar."""
    return ((F.cosine_similarity(x0, x0_hat, dim=-1) - 1.0) ** 2).mean()


class PreferDiff(DreamRec):
    """DreamRec with PreferDiff's preference loss against the in-batch negatives' centroid."""

    config: PreferDiffConfig

    def calculate_loss(self, batch: Batch) -> Tensor:
        bits, drop, t, noise = self.step_draws(batch, 2)
        return self.preference_loss(batch.history, batch.length, batch.target, bits, drop, t,
                                    noise[0], noise[1])

    def preference_loss(self, history: Tensor, length: Tensor, target: Tensor,
                        bits: tuple[Tensor, ...] | None, drop: Tensor, t: Tensor,
                        noise_pos: Tensor, noise_neg: Tensor) -> Tensor:
        """The loss given the step's random draws (see the module's docstring)."""
        B = target.shape[0]
        if B < 2:
            raise ValueError("PreferDiff's in-batch negatives need batches of two or more rows")
        emb = self.item_embeddings(torch.cat((history, target.unsqueeze(1)), dim=1))
        hist_emb, x0 = emb.split([history.shape[1], 1], dim=1)
        x0 = x0.squeeze(1)  # [B, H]
        x0_neg = (x0.sum(0, keepdim=True) - x0) / (B - 1)  # centroid of the other targets
        c = self.encoder(hist_emb, history, length, bits)
        c = torch.where(drop, self.null_cond, c)
        t_emb = self.denoiser.step_embedding(t)
        x_t = self.schedule.add_noise(torch.cat((x0, x0_neg)), torch.cat((noise_pos, noise_neg)),
                                      torch.cat((t, t)))
        pred = self.denoiser(x_t, torch.cat((c, c)), torch.cat((t_emb, t_emb)))
        loss_pos = cosine_error(x0, pred[:B])
        loss_neg = cosine_error(x0_neg, pred[B:])
        lam, gamma = self.config.lam, self.config.gamma
        return -(1 - lam) * F.logsigmoid(-gamma * (loss_pos - loss_neg) + 1e-8) + lam * loss_pos
