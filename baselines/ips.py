"""S-IPS (Wang et al., "Unbiased Sequential Recommendation with Latent Confounders", WWW 2022),
reimplemented as inverse-propensity weighting on RecBole 1.2.1's models.

Neither the DreamRec nor the DROS code release contains this baseline, so this is the harness's
own reimplementation: a labelled reimplementation, not the authors' code.

- **Propensity model** ``p(target | history)``: a separate sequence encoder (RecBole's GRU4Rec
  with its default sizes and the paper's embedding size) with a softmax over all real items,
  trained first, alone, by next-item cross-entropy for ``propensity_epochs`` epochs (the
  trainer does not evaluate during them), then frozen.
- **Recommender**: RecBole's SASRec with the 1:1 uniform negatives and binary cross-entropy of
  the other baselines, each training row weighted by its clipped inverse propensity
  ``1 / max(p, M)`` (``M = propensity_clip`` in (0, 1]), computed by the frozen propensity model
  in eval mode with no gradient through it. With ``self_normalize`` (default) the weights are
  divided by their batch mean, so the learning rate keeps its meaning (self-normalised IPS);
  ``self_normalize = false`` gives the plain weighted mean.
- Scoring is the recommender's alone (SASRec's full ranking).

What this covers of the paper: the inverse-propensity-weighted training of a sequential
recommender with a propensity estimated by a sequential model of the observed history. What it
does not: the paper's treatment of *latent* confounders (unobserved factors inferred beyond the
observed history) -- the propensity here conditions on the observed history only -- and any
training schedule specific to the paper.
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


@dataclass
class IPSConfig(SASRecConfig):
    """SASRec's settings (the recommender) plus the propensity model's."""

    propensity_clip: float = 0.01  # M: weights are 1 / max(p, M)
    propensity_epochs: int = 5
    self_normalize: bool = True

    HARNESS_FIELDS: ClassVar[tuple[str, ...]] = PairwiseConfig.HARNESS_FIELDS + (
        "propensity_clip", "propensity_epochs", "self_normalize")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.propensity_clip <= 1.0:
            raise ValueError(f"propensity_clip must lie in (0, 1], got {self.propensity_clip}")
        if self.propensity_epochs < 1:
            raise ValueError(f"propensity_epochs must be >= 1, got {self.propensity_epochs}")


class IPS(RecBoleSequential):
    """S-IPS: SASRec trained with clipped inverse-propensity weights; see the module docstring."""

    recbole_name = "SASRec"

    def __init__(self, n_items: int, config: IPSConfig) -> None:
        super().__init__(n_items, config)
        prop_cfg = GRU4RecConfig(embedding_size=config.hidden_size)
        self.propensity = accelerate(recbole_models().GRU4Rec(
            ModelConfig("GRU4Rec", prop_cfg.recbole_params(), SEQ_LEN), ModelDataset(n_items + 1)))
        self.warmup_epochs = config.propensity_epochs
        self.propensity_phase = True

    def set_epoch(self, epoch: int) -> None:
        self.propensity_phase = epoch < self.warmup_epochs

    def propensity_log_probs(self, history: Tensor, length: Tensor) -> Tensor:
        """log p(item | history) over the real items, [B, n_items]."""
        inter = {self.propensity.ITEM_SEQ: to_recbole(history, self.n_items),
                 self.propensity.ITEM_SEQ_LEN: length}
        logits = real_item_columns(self.propensity.full_sort_predict(inter), self.n_items)
        return torch.log_softmax(logits, dim=-1)

    @torch.no_grad()
    def weights(self, history: Tensor, length: Tensor, target: Tensor) -> Tensor:
        """Clipped inverse propensities [B] (batch-mean normalised when configured)."""
        was_training = self.propensity.training
        self.propensity.eval()
        try:
            logp = self.propensity_log_probs(history, length)
        finally:
            self.propensity.train(was_training)
        p = logp.gather(1, target.unsqueeze(1)).squeeze(1).exp()
        w = 1.0 / p.clamp(min=self.config.propensity_clip)
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
