"""AdaRanker (Fan et al., SIGIR 2022), reimplemented from the paper on RecBole 1.2.1's encoders.

Neither the DreamRec nor the DROS code release contains AdaRanker, so this is the harness's own
reimplementation from the paper's description: a labelled reimplementation, not the authors'
code.

- **Distribution encoder** (a neural process over the candidate set): each candidate item's
  embedding goes through a per-item MLP, the results are mean-pooled, and a Gaussian
  ``q(z | candidates)`` is read from the pool; ``z`` is sampled with the reparameterisation
  trick in training (plus ``kl_weight`` x KL(q || N(0, I))) and is the mean at evaluation.
- **Input modulation**: the history's input embeddings are modulated by FiLM from ``z``,
  ``e' = (1 + gamma(z)) * e + beta(z)``, before RecBole's encoder (SASRec by default, GRU4Rec
  with ``encoder = "gru4rec"``) reads them: for SASRec after its input layer norm (item plus
  position embedding), where the values are of order 1 (RecBole draws SASRec's embeddings with
  std 0.02, which a shift from ``z`` would otherwise drown); for GRU4Rec on the item
  embeddings. The FiLM layer starts at the identity (zero weights).
- **Parameter modulation**: the scorer is a two-layer MLP over ``[sequence; item]``. Its hidden
  layer is modulated by parameters generated from ``z`` through a memory of ``memory_slots``
  slots: ``z`` attends over the slot keys (softmax of dot products), and the attention-weighted
  sum of the slots' scale and shift vectors rescales and shifts the hidden units,
  ``h = relu((W1 [s; e] + b1) * (1 + scale) + shift)``; the score is ``w2 . h + b2``.
- Training: binary cross-entropy on the positive and its uniform negative(s), the 1:1 protocol
  of the other baselines. The candidate set of a training batch is every target and negative in
  the batch (one ``z`` per batch).
- **Full ranking**: the candidate set is every real item, so the adaptation sees the whole
  catalogue's embedding distribution: one ``z``, the same for every row, at each evaluation.
  Scoring ``[sequence; item]`` pairs for all items splits the first layer into a row part and an
  item part, ``W1 [s; e] = W1s s + W1e e``, folds the hidden layer's scale and shift into the
  two parts, and runs the hidden layer over blocks of rows so that at most ``score_block``
  (row, item, unit) values exist at once: memory stays bounded on yc. On a CPU the blocks are
  further capped at ``CPU_BLOCK`` values, which stay in cache (zhihu's val + test in 6.3 s on
  one thread: ``python -m harness.bench --model adaranker --dataset zhihu --threads 1
  --epochs 0``, ``results/bench/zhihu-adaranker-cpu.md``).
- ``modulate = false`` switches both modulations off: the model is then its base scorer (the
  MLP over the plain encoder output), which a test checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.contract import Batch
from baselines.recbole_models import (
    GRU4RecConfig,
    PairwiseConfig,
    RecBoleSequential,
    SASRecConfig,
)

ENCODERS = ("sasrec", "gru4rec")
CPU_BLOCK = 2**19  # (row, item, unit) values per scoring block on a CPU: 2 MiB of float32


@dataclass
class AdaRankerConfig(SASRecConfig):
    """SASRec's settings (the encoder) plus AdaRanker's distribution encoder and scorer."""

    encoder: str = "sasrec"  # sasrec | gru4rec (RecBole's defaults for GRU4Rec's own sizes)
    latent_size: int = 32  # z
    memory_slots: int = 8
    scorer_hidden: int = 64
    kl_weight: float = 0.001
    modulate: bool = True
    score_block: int = 2**25  # (row, item, unit) values computed at once in full ranking

    HARNESS_FIELDS: ClassVar[tuple[str, ...]] = PairwiseConfig.HARNESS_FIELDS + (
        "encoder", "latent_size", "memory_slots", "scorer_hidden", "kl_weight", "modulate",
        "score_block")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if self.memory_slots < 1:
            raise ValueError(f"memory_slots must be >= 1, got {self.memory_slots}")
        for name in ("latent_size", "scorer_hidden", "score_block"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")


class AdaRanker(RecBoleSequential):
    """AdaRanker on RecBole's SASRec (or GRU4Rec); see the module docstring."""

    recbole_name = "SASRec"

    def __init__(self, n_items: int, config: AdaRankerConfig) -> None:
        if config.encoder == "gru4rec":
            self.recbole_name = "GRU4Rec"
        super().__init__(n_items, _encoder_config(config))
        self.config = config
        H = self.net.item_embedding.embedding_dim
        Z, S = config.latent_size, config.scorer_hidden
        self.item_mlp = nn.Sequential(nn.Linear(H, H), nn.ReLU(), nn.Linear(H, H))
        self.to_z = nn.Linear(H, 2 * Z)  # mean and log-variance of q(z | candidates)
        self.film = nn.Linear(Z, 2 * H)  # gamma, beta of the input modulation
        # identity at the start: RecBole's item embeddings are drawn with std 0.02, so a
        # randomly initialised shift would drown them (training then stays at chance)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.slot_keys = nn.Parameter(torch.randn(config.memory_slots, Z) / Z**0.5)
        self.slot_values = nn.Parameter(torch.zeros(config.memory_slots, 2 * S))  # scale, shift
        nn.init.normal_(self.slot_values, std=0.01)
        self.w1_seq = nn.Linear(H, S)
        self.w1_item = nn.Linear(H, S, bias=False)
        self.w2 = nn.Linear(S, 1)
        self._film: tuple[Tensor, Tensor] | None = None
        # SASRec: after its input layer norm (values of order 1); GRU4Rec: on the embeddings
        target = self.net.LayerNorm if config.encoder == "sasrec" else self.net.item_embedding
        target.register_forward_hook(self._modulate_input)

    # -- the distribution encoder -----------------------------------------------------------
    def latent(self, candidates: Tensor, sample: bool,
               gen: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """z [Z] from the candidate items' embeddings [N, H], and KL(q || N(0, I))."""
        pooled = self.item_mlp(candidates).mean(0)
        mu, logvar = self.to_z(pooled).chunk(2)
        logvar = logvar.clamp(-8.0, 8.0)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum()
        if not sample:
            return mu, kl
        eps = torch.randn(mu.shape, generator=gen, device=mu.device)
        return mu + eps * (0.5 * logvar).exp(), kl

    def modulation(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """FiLM (gamma, beta) [H] of the input and (scale, shift) [S] of the scorer's hidden
        layer, generated from z [Z]."""
        gamma, beta = self.film(z).chunk(2)
        attn = torch.softmax(self.slot_keys @ z, dim=0)  # [slots]
        scale, shift = (attn @ self.slot_values).chunk(2)
        return gamma, beta, scale, shift

    def _modulate_input(self, module: nn.Module, args, out: Tensor) -> Tensor | None:
        if self._film is None:
            return None
        gamma, beta = self._film
        return out * (1.0 + gamma) + beta

    def sequence(self, history: Tensor, length: Tensor, film: tuple[Tensor, Tensor] | None) -> Tensor:
        """The encoder's representation [B, H], its input embeddings FiLM-modulated."""
        self._film = film
        try:
            return self.encode(self.interaction(history, length))
        finally:
            self._film = None

    # -- scoring ----------------------------------------------------------------------------
    def _mod(self, z: Tensor | None):
        if z is None or not self.config.modulate:
            return None, None
        gamma, beta, scale, shift = self.modulation(z)
        return (gamma, beta), (scale, shift)

    def pair_scores(self, seq: Tensor, items: Tensor, hidden_mod) -> Tensor:
        """Scores of row ``b`` with its items ``items[b]``: seq [B, H], items [B, k, H] -> [B, k]."""
        pre = self.w1_seq(seq).unsqueeze(1) + self.w1_item(items)  # [B, k, S]
        if hidden_mod is not None:
            pre = pre * (1.0 + hidden_mod[0]) + hidden_mod[1]
        return self.w2(F.relu(pre)).squeeze(-1)

    def calculate_loss(self, batch: Batch) -> Tensor:
        assert batch.negatives is not None, "the trainer draws negatives for this model"
        emb = self.net.item_embedding.weight  # RecBole ids: item i is row i + 1
        cand_ids = torch.cat((batch.target.unsqueeze(1), batch.negatives), dim=1)  # [B, 1 + k]
        kl = torch.zeros((), device=emb.device)
        z = None
        if self.config.modulate:
            z, kl = self.latent(emb[cand_ids.flatten() + 1], sample=True, gen=batch.generator)
        film, hidden_mod = self._mod(z)
        seq = self.sequence(batch.history, batch.length, film)
        logits = self.pair_scores(seq, emb[cand_ids + 1], hidden_mod)
        pos, neg = logits[:, 0], logits[:, 1:]
        loss = (F.softplus(-pos) + F.softplus(neg).sum(-1)).mean()  # BCE, label 1 then 0s
        return loss + self.config.kl_weight * kl

    def full_sort_predict(self, history: Tensor, length: Tensor,
                          generator: torch.Generator | None = None, z: Tensor | None = None) -> Tensor:
        """Scores of every real item [B, n_items]; ``z`` overrides the catalogue's latent."""
        items = self.net.item_embedding.weight[1:self.n_items + 1]  # [n, H], pad row dropped
        if z is None and self.config.modulate:
            z, _ = self.latent(items, sample=False)
        film, hidden_mod = self._mod(z)
        seq = self.sequence(history, length, film)
        row_part = self.w1_seq(seq)  # [B, S]
        item_part = self.w1_item(items)  # [n, S]
        if hidden_mod is not None:  # (r + i) * (1 + scale) + shift, folded into the two parts
            row_part = row_part * (1.0 + hidden_mod[0]) + hidden_mod[1]
            item_part = item_part * (1.0 + hidden_mod[0])
        S = row_part.shape[1]
        values = self.config.score_block
        if not seq.is_cuda:  # blocks that stay in a core's L2
            values = min(values, CPU_BLOCK)
        block = max(1, values // (self.n_items * S))
        out = torch.empty(history.shape[0], self.n_items, device=seq.device)
        w2, b2 = self.w2.weight.squeeze(0), self.w2.bias
        for start in range(0, history.shape[0], block):
            sl = slice(start, start + block)
            pre = row_part[sl].unsqueeze(1) + item_part.unsqueeze(0)  # [b, n, S]
            torch.matmul(pre.relu_(), w2, out=out[sl])
        out += b2
        return out


def _encoder_config(config: AdaRankerConfig):
    """The settings RecBole's encoder constructor reads (SASRec's, or GRU4Rec's defaults)."""
    if config.encoder == "gru4rec":
        return _Shim(GRU4RecConfig(embedding_size=config.hidden_size, loss=config.loss,
                                   n_negatives=config.n_negatives))
    return _Shim(config)


class _Shim:
    """Hands RecBole exactly the encoder's settings (the AdaRanker fields are the harness's)."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.loss = cfg.loss
        self.n_negatives = cfg.n_negatives

    def recbole_params(self):
        return self.cfg.recbole_params()
