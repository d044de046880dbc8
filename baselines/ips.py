"""IPS: a sequential recommender trained with clipped inverse-propensity weights, with the
popularity propensity of the DreamRec authors' code or a sequential one (S-IPS).

Where each part comes from:

- The paper's Table 1 says "IPS" and its text cites S-IPS (Wang et al., "Unbiased Sequential
  Recommendation with Latent Confounders", WWW 2022). Neither the DreamRec release nor its DROS
  code contains an IPS recommender; the DreamRec release's ``SASRec.py`` computes, and leaves
  unused, a popularity propensity (``calcu_propensity_score``: ``ps = ((count(next) + 1) /
  sum(count + 1)) ** 0.5`` over the training targets), the same function its DROS code uses.
- This module is the harness's own code, offering both:
  - ``propensity = "popularity"``: that propensity, ``p(item) = ((c + 1) / sum(c + 1)) **
    popularity_power`` with ``c`` the item's count as a training target (power 0.5 as in the
    authors' code); nothing is trained for it.
  - ``propensity = "sequential"``: ``p(target | history)`` from a separate sequence encoder
    (RecBole's GRU4Rec, its default sizes and the paper's embedding size) with a softmax over
    all real items, trained first and alone by next-item cross-entropy for
    ``propensity_epochs`` epochs (the trainer does not evaluate during them) with its own
    ``propensity_lr`` and ``propensity_weight_decay``, then frozen.
- **Recommender**: RecBole's SASRec with the 1:1 uniform negatives and binary cross-entropy of
  the other baselines, each training row weighted by ``1 / max(p, M)``, with ``p`` computed in
  eval mode and no gradient through it. ``M`` is the ``clip_quantile`` quantile of ``p`` over
  the training rows (computed once, when the recommender starts), so the clip binds on that
  share of the rows whatever the scale of ``p`` (a fixed ``M = 0.01`` bound on every zhihu row
  under a sequential propensity: every weight was the clip). With ``self_normalize`` (default)
  the weights are divided by their batch mean, so the learning rate keeps its meaning.
- Scoring is the recommender's alone (SASRec's full ranking).

What it does not cover of S-IPS: the paper's treatment of *latent* confounders (unobserved
factors inferred beyond the observed history): the propensity conditions on the observed
history only, and no training schedule specific to the paper is reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from baselines.compat import ModelConfig, ModelDataset, recbole_models
from baselines.contract import Batch
from baselines.fast import accelerate
from baselines.ids import real_item_columns, to_recbole
from baselines.recbole_models import GRU4RecConfig, PairwiseConfig, RecBoleSequential, SASRecConfig
from harness.data import SEQ_LEN

PROPENSITIES = ("popularity", "sequential")
PROPENSITY_BATCH = 4096  # rows per pass when the sequential propensity scores the training split


@dataclass
class IPSConfig(SASRecConfig):
    """SASRec's settings (the recommender) plus the propensity's."""

    propensity: str = "sequential"  # popularity | sequential
    clip_quantile: float = 0.1  # M is this quantile of p over the training rows
    self_normalize: bool = True
    popularity_power: float = 0.5  # the authors' calcu_propensity_score
    propensity_epochs: int = 5  # sequential: epochs of the propensity model before the recommender
    propensity_lr: float = 1e-3
    propensity_weight_decay: float = 0.0

    POSITIVES_ONLY: ClassVar[bool] = False  # its loss is over its candidates
    HARNESS_FIELDS: ClassVar[tuple[str, ...]] = PairwiseConfig.HARNESS_FIELDS + (
        "propensity", "clip_quantile", "self_normalize", "popularity_power",
        "propensity_epochs", "propensity_lr", "propensity_weight_decay")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.propensity not in PROPENSITIES:
            raise ValueError(f"propensity must be one of {', '.join(PROPENSITIES)}, "
                             f"got {self.propensity!r}")
        if not 0.0 <= self.clip_quantile < 1.0:
            raise ValueError(f"clip_quantile must lie in [0, 1), got {self.clip_quantile}")
        if self.popularity_power <= 0:
            raise ValueError(f"popularity_power must be > 0, got {self.popularity_power}")
        if self.propensity == "sequential" and self.propensity_epochs < 1:
            raise ValueError(f"propensity_epochs must be >= 1 for the sequential propensity, "
                             f"got {self.propensity_epochs}")
        if self.propensity_lr <= 0 or self.propensity_weight_decay < 0:
            raise ValueError(f"propensity_lr must be > 0 and propensity_weight_decay >= 0, got "
                             f"{self.propensity_lr} and {self.propensity_weight_decay}")


class IPS(RecBoleSequential):
    """SASRec trained with clipped inverse-propensity weights; see the module docstring."""

    recbole_name = "SASRec"

    def __init__(self, n_items: int, config: IPSConfig) -> None:
        super().__init__(n_items, config)
        self.sequential = config.propensity == "sequential"
        if self.sequential:
            prop_cfg = GRU4RecConfig(embedding_size=config.hidden_size)
            self.propensity = accelerate(recbole_models().GRU4Rec(
                ModelConfig("GRU4Rec", prop_cfg.recbole_params(), SEQ_LEN),
                ModelDataset(n_items + 1)))
            self.warmup_epochs = config.propensity_epochs
        self.propensity_phase = self.sequential
        # p(item) of the popularity propensity; the clip M (-1: not computed yet)
        self.register_buffer("item_propensity", torch.ones(n_items))
        self.register_buffer("clip", torch.tensor(-1.0))
        self._train_rows: tuple[Tensor, Tensor, Tensor] | None = None

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        if not self.sequential:
            return super().param_groups(lr, weight_decay)
        prop = list(self.propensity.parameters())
        ids = {id(p) for p in prop}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": rest, "lr": lr, "weight_decay": weight_decay},
                {"params": prop, "lr": self.config.propensity_lr,
                 "weight_decay": self.config.propensity_weight_decay}]

    def observe_training_rows(self, history: Tensor, length: Tensor, target: Tensor) -> None:
        self._train_rows = (history, length, target)
        if not self.sequential:
            counts = torch.bincount(target, minlength=self.n_items)[:self.n_items].double() + 1.0
            p = (counts / counts.sum()) ** self.config.popularity_power
            self.item_propensity.copy_(p.float())
            self.clip.fill_(self._quantile(p.float()[target]))

    def set_epoch(self, epoch: int) -> None:
        self.propensity_phase = self.sequential and epoch < self.warmup_epochs
        if not self.propensity_phase and self.clip.item() < 0:
            assert self._train_rows is not None, "the trainer passes the training rows first"
            self.clip.fill_(self._quantile(self.training_propensities(*self._train_rows)))

    def _quantile(self, p: Tensor) -> float:
        return float(torch.quantile(p.double().cpu(), self.config.clip_quantile))

    def propensity_log_probs(self, history: Tensor, length: Tensor) -> Tensor:
        """log p(item | history) over the real items, [B, n_items] (sequential propensity)."""
        inter = {self.propensity.ITEM_SEQ: to_recbole(history, self.n_items),
                 self.propensity.ITEM_SEQ_LEN: length}
        logits = real_item_columns(self.propensity.full_sort_predict(inter), self.n_items)
        return torch.log_softmax(logits, dim=-1)

    @torch.no_grad()
    def propensities(self, history: Tensor, length: Tensor, target: Tensor) -> Tensor:
        """p of each row's target [B]: the item's popularity, or p(target | history) from the
        frozen propensity model in eval mode."""
        if not self.sequential:
            return self.item_propensity[target]
        was_training = self.propensity.training
        self.propensity.eval()
        try:
            logp = self.propensity_log_probs(history, length)
        finally:
            self.propensity.train(was_training)
        return logp.gather(1, target.unsqueeze(1)).squeeze(1).exp()

    def training_propensities(self, history: Tensor, length: Tensor, target: Tensor) -> Tensor:
        """p of every training row [N], in blocks of rows."""
        return torch.cat([self.propensities(history[i:i + PROPENSITY_BATCH],
                                            length[i:i + PROPENSITY_BATCH],
                                            target[i:i + PROPENSITY_BATCH])
                          for i in range(0, len(target), PROPENSITY_BATCH)])

    @torch.no_grad()
    def weight_stats(self, history: Tensor, length: Tensor, target: Tensor) -> dict[str, float]:
        """Over the given (training) rows: the share of rows at the clip, and the coefficient of
        variation of the weights normalised to mean 1 (0 when every weight is the same)."""
        p = self.training_propensities(history, length, target)
        w = self.clipped_inverse(p)
        w = w / w.mean()
        return {"clip": float(self.clip), "share_at_clip": float((p <= self.clip).double().mean()),
                "cv": float(w.std() / w.mean()), "median_p": float(p.median())}

    def clipped_inverse(self, p: Tensor) -> Tensor:
        """1 / max(p, M): the clipped inverse propensities."""
        return 1.0 / torch.maximum(p, self.clip)

    def weights(self, history: Tensor, length: Tensor, target: Tensor) -> Tensor:
        """Clipped inverse propensities [B] (batch-mean normalised when configured)."""
        w = self.clipped_inverse(self.propensities(history, length, target))
        return w / w.mean() if self.config.self_normalize else w

    def calculate_loss(self, batch: Batch) -> Tensor:
        if self.propensity_phase:
            logp = self.propensity_log_probs(batch.history, batch.length)
            return F.nll_loss(logp, batch.target)
        assert batch.negatives is not None, "the trainer draws negatives for this model"
        seq = self.encode(self.interaction(batch.history, batch.length))
        emb = self.net.item_embedding
        pos = (seq * emb(batch.target + 1)).sum(-1)
        neg = torch.einsum("bh,bkh->bk", seq, emb(batch.negatives + 1))
        if self.config.loss == "bce":  # label 1 for the positive, 0 for each negative
            per_row = F.softplus(-pos) + F.softplus(neg).sum(-1)
        else:  # bpr
            per_row = F.softplus(neg - pos.unsqueeze(-1)).mean(-1)
        w = self.weights(batch.history, batch.length, batch.target)
        return (w * per_row).mean()
