"""GRU4Rec, Caser and SASRec: RecBole 1.2.1's own model classes behind the harness's contract.

Each adapter builds RecBole's model from its class with RecBole's default hyper-parameters
(``properties/model/<Model>.yaml``), overridden only where the paper fixes a value (embedding
size 64, history length 10), through :class:`baselines.compat.ModelConfig` instead of RecBole's
``Config`` (no argv parsing, no environment changes). RecBole computes the sequence
representation (``forward``) and the full-ranking scores (``full_sort_predict``); the harness
supplies the ids (shifted so that RecBole's pad is 0, see :mod:`baselines.ids`), drops RecBole's
pad column from the scores, and trains with the paper's protocol: each positive against
``n_negatives`` items drawn uniformly by the trainer, with binary cross-entropy on the
(positive, negative) logits as in the official SASRec script of the paper's code, or BPR.
RecBole 1.2.1 offers only CE over all items and BPR, so the pairwise loss is the harness's
(:func:`pairwise_loss`); with ``loss = "bpr"`` it equals RecBole's own ``calculate_loss``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from baselines.compat import ModelConfig, ModelDataset, recbole_models
from baselines.contract import Batch, SequentialRecommender
from baselines.fast import accelerate
from baselines.ids import real_item_columns, to_recbole
from harness.data import SEQ_LEN

LOSSES = ("bce", "bpr")


def pairwise_loss(pos: Tensor, neg: Tensor, kind: str) -> Tensor:
    """Loss of positive logits ``pos`` [B] against negative logits ``neg`` [B, k].

    ``bce``: mean over rows of -log σ(pos) - Σ_k log(1 - σ(neg_k)) (binary cross-entropy with
    label 1 for the positive and 0 for each negative). ``bpr``: mean over rows and negatives of
    -log σ(pos - neg_k).
    """
    if kind == "bce":
        return (F.softplus(-pos) + F.softplus(neg).sum(-1)).mean()
    if kind == "bpr":
        return F.softplus(neg - pos.unsqueeze(-1)).mean()
    raise ValueError(f"unknown loss {kind!r}; valid: {', '.join(LOSSES)}")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


@dataclass
class PairwiseConfig:
    """The training protocol shared by the learning-to-classify baselines."""

    loss: str = "bce"  # bce (the paper's) or bpr
    #: negatives per positive, drawn uniformly by the trainer (1:1); 0 with bce trains on the
    #: positives alone (-log σ(pos)), the paper's "without negative sampling" (its Figure 3)
    n_negatives: int = 1

    #: fields the harness reads itself; RecBole's constructor gets every other field
    HARNESS_FIELDS: ClassVar[tuple[str, ...]] = ("loss", "n_negatives")
    #: whether the model trains with n_negatives = 0 (a loss on the positives alone)
    POSITIVES_ONLY: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.n_negatives < 0 or (self.n_negatives == 0 and (
                self.loss != "bce" or not self.POSITIVES_ONLY)):
            raise ValueError(f"n_negatives must be >= 1 (or 0 with loss bce: positives only), "
                             f"got {self.n_negatives} with loss {self.loss!r}")

    def recbole_params(self) -> dict[str, Any]:
        """The settings RecBole's constructor reads (``loss_type`` only picks its unused head)."""
        params = {k: v for k, v in asdict(self).items() if k not in self.HARNESS_FIELDS}
        return {**params, "loss_type": "BPR"}


@dataclass
class GRU4RecConfig(PairwiseConfig):
    """RecBole's GRU4Rec.yaml defaults; embedding_size 64 is also the paper's."""

    embedding_size: int = 64
    hidden_size: int = 128
    num_layers: int = 1
    dropout_prob: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_fraction("dropout_prob", self.dropout_prob)


@dataclass
class CaserConfig(PairwiseConfig):
    """RecBole's Caser.yaml defaults; embedding_size 64 is also the paper's."""

    embedding_size: int = 64
    dropout_prob: float = 0.4
    reg_weight: float = 1e-4
    nv: int = 4
    nh: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_fraction("dropout_prob", self.dropout_prob)


@dataclass
class SASRecConfig(PairwiseConfig):
    """RecBole's SASRec.yaml defaults; hidden_size 64 is also the paper's embedding size."""

    n_layers: int = 2
    n_heads: int = 2
    hidden_size: int = 64
    inner_size: int = 256
    hidden_dropout_prob: float = 0.5
    attn_dropout_prob: float = 0.5
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_fraction("hidden_dropout_prob", self.hidden_dropout_prob)
        _check_fraction("attn_dropout_prob", self.attn_dropout_prob)
        if self.hidden_size % self.n_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of n_heads "
                             f"({self.n_heads})")


class RecBoleSequential(SequentialRecommender):
    """A RecBole sequential model (``self.net``) trained with the harness's pairwise protocol.

    Subclasses name the RecBole class and may add extra id rows after the real items
    (``extra_ids``, e.g. CL4SRec's mask token), which are never scored.
    """

    recbole_name: str = ""
    extra_ids: int = 0

    def __init__(self, n_items: int, config: PairwiseConfig) -> None:
        super().__init__(n_items)
        self.config = config
        self.n_negatives = config.n_negatives
        cls = getattr(recbole_models(), self.recbole_name)
        self.net = accelerate(cls(ModelConfig(self.recbole_name, config.recbole_params(), SEQ_LEN),
                                  ModelDataset(n_items + 1 + self.extra_ids)))

    def interaction(self, history: Tensor, length: Tensor) -> dict[str, Tensor]:
        """The batch as RecBole's models read it (a dict serves where RecBole takes an
        ``Interaction``): RecBole ids, and user 0 (RecBole's padding user) for every row."""
        net = self.net
        return {net.ITEM_SEQ: to_recbole(history, self.n_items), net.ITEM_SEQ_LEN: length,
                net.USER_ID: torch.zeros_like(length)}

    def encode(self, inter: dict[str, Tensor]) -> Tensor:
        """RecBole's sequence representation [B, H] of a batch from :meth:`interaction`."""
        return self.net(inter[self.net.ITEM_SEQ], inter[self.net.ITEM_SEQ_LEN])

    def item_table(self) -> Tensor:
        """RecBole's item embedding rows of the real items (RecBole id = item id + 1)."""
        return self.net.item_embedding.weight[1:self.n_items + 1]

    def regularizer(self) -> Tensor | float:
        """Terms RecBole's own ``calculate_loss`` adds to the ranking loss (none by default)."""
        return 0.0

    def next_item_loss(self, seq: Tensor, batch: Batch) -> Tensor:
        """The pairwise loss of representations ``seq`` [B, H] on the batch's target and
        negatives."""
        emb = self.net.item_embedding
        pos = (seq * emb(batch.target + 1)).sum(-1)
        if self.n_negatives == 0:  # positives only
            return pairwise_loss(pos, pos.new_zeros(pos.shape[0], 0), self.config.loss)
        assert batch.negatives is not None, "the trainer draws negatives for this model"
        neg = torch.einsum("bh,bkh->bk", seq, emb(batch.negatives + 1))
        return pairwise_loss(pos, neg, self.config.loss)

    def calculate_loss(self, batch: Batch) -> Tensor:
        seq = self.encode(self.interaction(batch.history, batch.length))
        return self.next_item_loss(seq, batch) + self.regularizer()

    def full_sort_predict(self, history: Tensor, length: Tensor,
                          generator: torch.Generator | None = None) -> Tensor:
        scores = self.net.full_sort_predict(self.interaction(history, length))
        return real_item_columns(scores, self.n_items)


class GRU4Rec(RecBoleSequential):
    """RecBole's GRU4Rec (Hidasi et al., ICLR 2016; Tan et al. 2016 improvements)."""

    recbole_name = "GRU4Rec"


class SASRec(RecBoleSequential):
    """RecBole's SASRec (Kang & McAuley, ICDM 2018)."""

    recbole_name = "SASRec"


class Caser(RecBoleSequential):
    """RecBole's Caser (Tang & Wang, WSDM 2018), without user embeddings.

    Caser concatenates a per-user embedding to its convolutional features. The paper's rows are
    anonymous history prefixes with no user id, so every row is given RecBole's padding user
    (id 0), whose embedding the adapter sets to zero after RecBole's initialisation (which draws
    it at random like every other row) and which lookups never update (``padding_idx=0``): Caser
    scores from its vertical and horizontal convolutions alone. A learned vector shared by all
    rows would only act as a second bias of the last layer, so none is added. Caser's own L2 term (``reg_weight`` on its
    embeddings, convolutions and fully connected layers, as RecBole's ``calculate_loss`` adds it)
    is kept.
    """

    recbole_name = "Caser"

    def __init__(self, n_items: int, config: CaserConfig) -> None:
        super().__init__(n_items, config)
        with torch.no_grad():
            self.net.user_embedding.weight.zero_()

    def encode(self, inter: dict[str, Tensor]) -> Tensor:
        return self.net(inter[self.net.USER_ID], inter[self.net.ITEM_SEQ])

    def regularizer(self) -> Tensor:
        net = self.net
        reg = net.reg_loss([net.user_embedding.weight, net.item_embedding.weight,
                            net.conv_v.weight, net.fc1.weight, net.fc2.weight])
        return net.reg_weight * reg + net.reg_loss_conv_h()
