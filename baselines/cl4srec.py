"""CL4SRec (Xie et al., ICDE 2022) on RecBole 1.2.1's SASRec encoder.

RecBole 1.2.1 has no CL4SRec, so this is the harness's own implementation on RecBole's SASRec
model: the next-item loss is the harness's pairwise loss with 1:1 uniform negatives (as for the
other baselines), plus ``cl_weight`` (λ) times an InfoNCE loss between two augmented views of each
row, with the other 2(B-1) views of the batch as negatives and dot-product similarity over
temperature ``tau`` (τ).

Each view applies one augmentation, drawn uniformly per row, and the two views of a row use two
different ones (as in the public implementation of CL4SRec's augmentations in the DuoRec code,
github.com/RuihongQiu/DuoRec); a row with a single item is left unchanged. On a row with ``n``
items:

- crop (η): keep a random contiguous run of ``max(1, ⌊η·n⌋)`` items;
- mask (γ): replace ``⌊γ·n⌋`` distinct random items with a mask token (an extra embedding row,
  never scored);
- reorder (β): shuffle a random contiguous run of ``⌊β·n⌋`` items.

Defaults η = 0.6, γ = 0.3, β = 0.6, τ = 1, λ = 0.1 are those of that public implementation
(the CL4SRec paper studies each ratio over 0.1-0.9). All augmentations are vectorised over the
batch and draw from the batch's generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from baselines.contract import Batch
from baselines.recbole_models import PairwiseConfig, RecBoleSequential, SASRecConfig

CROP, MASK, REORDER = 0, 1, 2


@dataclass
class CL4SRecConfig(SASRecConfig):
    """SASRec's settings plus the augmentation ratios and the contrastive loss."""

    crop_eta: float = 0.6
    mask_gamma: float = 0.3
    reorder_beta: float = 0.6
    tau: float = 1.0
    cl_weight: float = 0.1

    HARNESS_FIELDS: ClassVar[tuple[str, ...]] = PairwiseConfig.HARNESS_FIELDS + (
        "crop_eta", "mask_gamma", "reorder_beta", "tau", "cl_weight")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("crop_eta", "mask_gamma", "reorder_beta"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if self.tau <= 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if self.cl_weight < 0:
            raise ValueError(f"cl_weight must be >= 0, got {self.cl_weight}")


def _uniform_int(high: Tensor, gen: torch.Generator | None) -> Tensor:
    """One integer uniform in [0, high] per element of ``high`` (long, >= 0)."""
    u = torch.rand(high.shape, generator=gen, device=high.device)
    return torch.minimum((u * (high + 1)).long(), high)


def crop(seq: Tensor, length: Tensor, eta: float, pad: int,
         gen: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Keep a random contiguous run of max(1, ⌊η·n⌋) items of each row, moved to the front."""
    L = seq.shape[1]
    keep = torch.clamp((length * eta).floor().long(), min=1)
    keep = torch.where(length > 1, keep, length)
    begin = _uniform_int(length - keep, gen)
    pos = torch.arange(L, device=seq.device)
    idx = (begin.unsqueeze(1) + pos).clamp(max=L - 1)
    out = seq.gather(1, idx)
    out = torch.where(pos < keep.unsqueeze(1), out, torch.full_like(out, pad))
    return out, keep


def mask(seq: Tensor, length: Tensor, gamma: float, mask_id: int,
         gen: torch.Generator | None = None) -> Tensor:
    """Replace ⌊γ·n⌋ distinct random items of each row by ``mask_id``."""
    L = seq.shape[1]
    pos = torch.arange(L, device=seq.device)
    n_mask = (length * gamma).floor().long()
    keys = torch.rand(seq.shape, generator=gen, device=seq.device)
    keys = torch.where(pos < length.unsqueeze(1), keys, torch.full_like(keys, 2.0))
    rank = keys.argsort(1).argsort(1)  # rank of each position among the row's random keys
    return torch.where(rank < n_mask.unsqueeze(1), torch.full_like(seq, mask_id), seq)


def reorder(seq: Tensor, length: Tensor, beta: float,
            gen: torch.Generator | None = None) -> Tensor:
    """Shuffle a random contiguous run of ⌊β·n⌋ items of each row; the rest keeps its place."""
    L = seq.shape[1]
    pos = torch.arange(L, device=seq.device)
    span = (length * beta).floor().long()
    begin = _uniform_int(length - span, gen).unsqueeze(1)
    inside = (pos >= begin) & (pos < begin + span.unsqueeze(1))
    u = torch.rand(seq.shape, generator=gen, device=seq.device)
    keys = torch.where(inside, begin + u * span.unsqueeze(1), pos.float().expand_as(u))
    return seq.gather(1, keys.argsort(1))


def info_nce(z1: Tensor, z2: Tensor, tau: float) -> Tensor:
    """InfoNCE over 2B views: each view's positive is its partner, the other 2B-2 are negatives."""
    z = torch.cat([z1, z2], dim=0)
    sim = (z @ z.T) / tau
    sim.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    partner = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(sim, partner)


class CL4SRec(RecBoleSequential):
    """CL4SRec on RecBole's SASRec; see the module docstring."""

    recbole_name = "SASRec"
    extra_ids = 1  # the mask token, RecBole id n_items + 1

    def __init__(self, n_items: int, config: CL4SRecConfig) -> None:
        super().__init__(n_items, config)
        self.mask_id = n_items + 1

    def augment(self, seq: Tensor, length: Tensor, which: Tensor,
                gen: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """One view: row ``i`` gets augmentation ``which[i]`` (CROP, MASK or REORDER)."""
        c = self.config
        cropped, crop_len = crop(seq, length, c.crop_eta, 0, gen)
        masked = mask(seq, length, c.mask_gamma, self.mask_id, gen)
        shuffled = reorder(seq, length, c.reorder_beta, gen)
        w = which.unsqueeze(1)
        out = torch.where(w == CROP, cropped, torch.where(w == MASK, masked, shuffled))
        out = torch.where((length > 1).unsqueeze(1), out, seq)
        return out, torch.where((which == CROP) & (length > 1), crop_len, length)

    def calculate_loss(self, batch: Batch) -> Tensor:
        inter = self.interaction(batch.history, batch.length)
        loss = self.next_item_loss(self.encode(inter), batch)
        if self.config.cl_weight == 0:
            return loss
        seq, length, gen = inter[self.net.ITEM_SEQ], batch.length, batch.generator
        # two different augmentations per row: the first uniform, the second one of the other two
        first = torch.randint(0, 3, length.shape, generator=gen, device=length.device)
        second = (first + torch.randint(1, 3, length.shape, generator=gen,
                                        device=length.device)) % 3
        v1, l1 = self.augment(seq, length, first, gen)
        v2, l2 = self.augment(seq, length, second, gen)
        z1, z2 = self.net(v1, l1), self.net(v2, l2)
        return loss + self.config.cl_weight * info_nce(z1, z2, self.config.tau)
