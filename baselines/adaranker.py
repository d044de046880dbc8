"""AdaRanker (Fan et al., "Ada-Ranker: A Data Distribution Adaptive Ranking Paradigm for
Sequential Recommendation", SIGIR 2022) on RecBole 1.2.1's encoders, built on the structure of
the authors' modules.

Where the structure comes from:

- The DreamRec release's ``utility.py`` (github.com/YangZhengyi98/DreamRec) holds AdaRanker's
  two modules: ``NeuProcessEncoder`` and ``MemoryUnit``. The DreamRec release runs neither (no
  training script of it uses them), and it has no AdaRanker model.
- The official Ada-Ranker code (github.com/BELIEVEfxy/Ada-Ranker, ``Model/recommender.py``,
  ``Model/model.py``, ``Model/modules.py``) shows how they enter a ranker: the latent ``z`` of
  a row's candidate set FiLM-modulates the encoder's item embeddings and, through four memory
  units, generates the weights of the scoring MLP; ``z`` is sampled at prediction too.

What this module computes (written here, on that structure):

- **Distribution encoder** (``NeuProcessEncoder``): each candidate item's embedding goes through
  Linear(H, H) -> Dropout(0.4) -> ReLU -> Linear(H, H); the results are mean-pooled; then
  ``h = relu(Linear(H, H)(pool))``, ``mu = Linear(h)``, ``log_sigma = Linear(h)`` and
  ``z = mu + eps * exp(0.5 * log_sigma)``, with ``eps ~ N(0, I)`` drawn per row, in training
  and at prediction (from the evaluation's generator, so an evaluation is reproducible).
- **Input modulation** (the official ``add_bias_type = film``): ``gamma = Linear(H, 1)(z)``,
  ``beta = Linear(H, 1)(z)``, one scalar each per row, and the encoder's item embeddings become
  ``gamma * e + beta`` before the position embeddings are added (SASRec) or the GRU reads them
  (GRU4Rec).
- **Parameter modulation** (the official ``change_para_type = mem_net``): the scorer is
  Dropout -> Linear(2H, H) -> Tanh -> Linear(H, 1) over ``[sequence; item]``. Four
  ``MemoryUnit`` s of ``memory_slots`` (10) slots each generate, per row, a full matrix the size
  of each layer's weight and a vector the size of its bias: attention
  ``softmax(z . keys)`` over the slots mixes the slots' arrays. As in the official
  ``AdaptLinear.memory_parameters``, a layer's weight becomes ``generated * W`` (elementwise)
  and its bias ``generated + b``.
- Training: binary cross-entropy on the positive and its uniform negative(s), the 1:1 protocol
  of the other baselines (the official code ranks 1 positive against 19 sampled negatives).

What differs from the official code, and why:

- **Candidate set.** Officially a row's candidate set is its own 20 items (positive included).
  Under this harness's 1:1 protocol a row has two, one of them the target: a ``z`` pooled over
  them would carry the target itself. The candidate set of a training batch is therefore every
  target and negative in the batch (``mu`` and ``sigma`` shared by the batch, ``eps`` per row),
  and under full ranking it is every real item (the whole catalogue: ``mu`` and ``sigma`` the
  same for every row, ``eps`` per row).
- **Full ranking** instead of ranking a sampled candidate list: every real item is scored. The
  per-row first layer splits into a row part and an item part, ``W1' [s; e] = W1s' s + W1e' e``.
  A row's generated weight is a mix of the slots, ``W1' = sum_s attn_s (array_s * W1)``, so
  each slot is applied to the catalogue once and a row's item part is the mix of those by its
  attention (``memory_slots`` products a row where the matrix would take ``H``); it is computed
  over blocks of rows so that at most ``score_block`` (row, item, unit) values exist at once
  (``CPU_BLOCK`` on a CPU, which stays in cache). Training scores its candidates the same way
  and never builds the per-row matrices either (the same function up to float rounding, tested
  against the generated matrices).
- **Initialisation of the weight memories.** Officially a memory's arrays are xavier noise, so a
  generated multiplier is about 1 % in size at the start and the scorer's weights ``generated *
  W`` start near zero: on the contract's learnable task the scores stayed constant (the loss at
  2 ln 2 for 12 epochs at lr 1e-2). Here the arrays of the two weight memories start at 1 plus
  that noise, so the scorer starts as its base MLP and the adaptation grows from there; the
  bias memories keep the official initialisation.
- No pre-trained item embeddings, no category features, no user embedding (the paper's rows
  have none), no ``reg_loss`` of the memory units (the official ranker does not add it).
- ``modulate = false`` switches both modulations off: the model is then its base scorer (the
  MLP over the plain encoder output, the official ``train_type = base``), which a test checks.
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
    memory_slots: int = 10  # the official MemoryUnit's clusters_k
    np_dropout: float = 0.4  # NeuProcessEncoder's dropout_prob (DreamRec release's default)
    scorer_dropout: float = 0.4  # before the scorer MLP (official run_train_adaranker.sh: 0.4)
    modulate: bool = True
    score_block: int = 2**25  # (row, item, unit) values computed at once in full ranking

    POSITIVES_ONLY: ClassVar[bool] = False  # its loss is over its candidates
    HARNESS_FIELDS: ClassVar[tuple[str, ...]] = PairwiseConfig.HARNESS_FIELDS + (
        "encoder", "memory_slots", "np_dropout", "scorer_dropout", "modulate", "score_block")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        for name in ("memory_slots", "score_block"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("np_dropout", "scorer_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}")


class NeuProcessEncoder(nn.Module):
    """The latent of a candidate set: per-item MLP, mean pool, reparameterised Gaussian."""

    def __init__(self, size: int, dropout: float) -> None:
        super().__init__()
        self.input_to_hidden = nn.Sequential(nn.Linear(size, size), nn.Dropout(dropout),
                                             nn.ReLU(), nn.Linear(size, size))
        self.z_to_hidden = nn.Linear(size, size)
        self.hidden_to_mu = nn.Linear(size, size)
        self.hidden_to_logsigma = nn.Linear(size, size)

    def forward(self, candidates: Tensor, rows: int, generator: torch.Generator | None) -> Tensor:
        """``z`` [rows, H] from the candidate items' embeddings [N, H]: ``mu`` and ``sigma``
        from the pooled set, ``eps`` drawn per row."""
        pooled = self.input_to_hidden(candidates).mean(0)
        hidden = torch.relu(self.z_to_hidden(pooled))
        mu, log_sigma = self.hidden_to_mu(hidden), self.hidden_to_logsigma(hidden)
        eps = torch.randn((rows, mu.shape[0]), generator=generator, device=mu.device)
        return mu + eps * torch.exp(0.5 * log_sigma)


class MemoryUnit(nn.Module):
    """``slots`` keys and arrays; a row's latent attends over the keys and mixes the arrays
    into a generated ``[out, in]`` parameter."""

    def __init__(self, in_size: int, out_size: int, latent: int, slots: int,
                 start: float = 0.0) -> None:
        super().__init__()
        self.in_size, self.out_size = in_size, out_size
        array = nn.init.xavier_uniform_(torch.empty(slots, in_size * out_size)) + start
        self.array = nn.Parameter(array)
        self.index = nn.Parameter(nn.init.xavier_uniform_(torch.empty(slots, latent)))

    def attention(self, z: Tensor) -> Tensor:
        """The rows' weights over the slots, ``softmax(z . keys)`` [B, slots]."""
        return torch.softmax(z @ self.index.T, dim=-1)

    def slots(self) -> Tensor:
        """The slots' arrays as parameters, [slots, out, in]."""
        return self.array.view(-1, self.out_size, self.in_size)

    def forward(self, z: Tensor) -> Tensor:
        """The generated parameter of each row, [B, out, in]."""
        return (self.attention(z) @ self.array).view(-1, self.out_size, self.in_size)


@dataclass
class Adaptation:
    """What ``z`` generates for a block of rows: the input FiLM and the scorer's weights.

    A row's first scorer weight, ``generated * W1`` with ``generated = sum_s attn_s array_s``,
    is kept as its two factors: ``attn1`` (the row's weights over the slots) and ``slots1``
    (each slot's array times W1, shared by the rows), since
    ``(sum_s attn_s array_s) * W1 = sum_s attn_s (array_s * W1)``. The scorer applies the
    slots to its input and mixes the results (:meth:`AdaRanker.pair_scores`), which never
    builds the [B, H, 2H] matrices; :attr:`w1` builds them."""

    gamma: Tensor  # [B, 1, 1]
    beta: Tensor  # [B, 1, 1]
    attn1: Tensor  # [B, S]
    slots1: Tensor  # [S, H, 2H]: each slot's array * W1
    b1: Tensor  # [B, H]
    w2: Tensor  # [B, H]
    b2: Tensor  # [B]

    @property
    def w1(self) -> Tensor:
        """The rows' first scorer weights, ``generated * W1`` [B, H, 2H]."""
        S = self.slots1.shape[0]
        return (self.attn1 @ self.slots1.reshape(S, -1)).view(-1, *self.slots1.shape[1:])


class AdaRanker(RecBoleSequential):
    """AdaRanker on RecBole's SASRec (or GRU4Rec); see the module docstring."""

    recbole_name = "SASRec"

    def __init__(self, n_items: int, config: AdaRankerConfig) -> None:
        if config.encoder == "gru4rec":
            self.recbole_name = "GRU4Rec"
        super().__init__(n_items, _encoder_config(config))
        self.config = config
        H = self.net.item_embedding.embedding_dim
        self.hidden = H
        self.extractor = NeuProcessEncoder(H, config.np_dropout)
        self.film_scale = nn.Linear(H, 1)
        self.film_shift = nn.Linear(H, 1)
        # the weight multipliers start at 1 (+ the official xavier noise): see the module doc
        self.mem_w1 = MemoryUnit(2 * H, H, H, config.memory_slots, start=1.0)
        self.mem_b1 = MemoryUnit(1, H, H, config.memory_slots)
        self.mem_w2 = MemoryUnit(H, 1, H, config.memory_slots, start=1.0)
        self.mem_b2 = MemoryUnit(1, 1, H, config.memory_slots)
        self.scorer_dropout = nn.Dropout(config.scorer_dropout)
        self.layer1 = nn.Linear(2 * H, H)
        self.layer2 = nn.Linear(H, 1)
        self._film: tuple[Tensor, Tensor] | None = None
        # the official SASRec and GRU4Rec modulate the item embeddings of the sequence
        self.net.item_embedding.register_forward_hook(self._modulate_input)

    # -- the adaptation ---------------------------------------------------------------------
    def adapt(self, z: Tensor) -> Adaptation:
        """The FiLM scalars and the scorer's weights generated from ``z`` [B, H]."""
        return Adaptation(
            gamma=self.film_scale(z).view(-1, 1, 1), beta=self.film_shift(z).view(-1, 1, 1),
            attn1=self.mem_w1.attention(z), slots1=self.mem_w1.slots() * self.layer1.weight,
            b1=self.mem_b1(z).view(-1, self.hidden) + self.layer1.bias,
            w2=self.mem_w2(z).view(-1, self.hidden) * self.layer2.weight,
            b2=self.mem_b2(z).view(-1) + self.layer2.bias)

    def base(self, rows: int) -> Adaptation:
        """The unmodulated scorer, expanded to ``rows`` (``modulate = false``): one slot, W1."""
        H = self.hidden
        one = self.layer1.weight.new_ones(())
        return Adaptation(gamma=one.expand(rows, 1, 1), beta=one.new_zeros(()).expand(rows, 1, 1),
                          attn1=one.expand(rows, 1), slots1=self.layer1.weight.unsqueeze(0),
                          b1=self.layer1.bias.expand(rows, H),
                          w2=self.layer2.weight.expand(rows, H),
                          b2=self.layer2.bias.expand(rows))

    def adaptation(self, candidates: Tensor, rows: int,
                   generator: torch.Generator | None) -> Adaptation:
        if not self.config.modulate:
            return self.base(rows)
        return self.adapt(self.extractor(candidates, rows, generator))

    def _modulate_input(self, module: nn.Module, args, out: Tensor) -> Tensor | None:
        if self._film is None:
            return None
        gamma, beta = self._film
        return gamma * out + beta

    def sequence(self, history: Tensor, length: Tensor, ada: Adaptation) -> Tensor:
        """The encoder's representation [B, H], its item embeddings FiLM-modulated."""
        self._film = (ada.gamma, ada.beta) if self.config.modulate else None
        try:
            return self.encode(self.interaction(history, length))
        finally:
            self._film = None

    # -- scoring ----------------------------------------------------------------------------
    def pair_scores(self, seq: Tensor, items: Tensor, ada: Adaptation) -> Tensor:
        """Scores of row ``b`` with its items ``items[b]``: seq [B, H], items [B, k, H] -> [B, k]."""
        pairs = torch.cat((seq.unsqueeze(1).expand(-1, items.shape[1], -1), items), dim=-1)
        pairs = self.scorer_dropout(pairs)
        hidden = torch.tanh(_mix(pairs, ada) + ada.b1.unsqueeze(1))
        return (hidden * ada.w2.unsqueeze(1)).sum(-1) + ada.b2.unsqueeze(1)

    def calculate_loss(self, batch: Batch) -> Tensor:
        assert batch.negatives is not None, "the trainer draws negatives for this model"
        emb = self.net.item_embedding.weight  # RecBole ids: item i is row i + 1
        cand_ids = torch.cat((batch.target.unsqueeze(1), batch.negatives), dim=1)  # [B, 1 + k]
        ada = self.adaptation(emb[cand_ids.flatten() + 1], len(cand_ids), batch.generator)
        seq = self.sequence(batch.history, batch.length, ada)
        logits = self.pair_scores(seq, emb[cand_ids + 1], ada)
        pos, neg = logits[:, 0], logits[:, 1:]
        return (F.softplus(-pos) + F.softplus(neg).sum(-1)).mean()  # BCE, label 1 then 0s

    def full_sort_predict(self, history: Tensor, length: Tensor,
                          generator: torch.Generator | None = None,
                          z: Tensor | None = None) -> Tensor:
        """Scores of every real item [B, n_items]; ``z`` [B, H] overrides the sampled latent."""
        items = self.net.item_embedding.weight[1:self.n_items + 1]  # [n, H], pad row dropped
        B, H = history.shape[0], self.hidden
        if z is not None and self.config.modulate:
            ada = self.adapt(z)
        else:
            ada = self.adaptation(items, B, generator)
        seq = self.sequence(history, length, ada)
        # W1' [s; e] + b1' = (W1s' s + b1') + W1e' e, per row, with W1' = sum_s attn_s slot_s:
        # the row part mixes the slots applied to s; the item part applies each slot to the
        # catalogue once, [S, n, H], and a row's is the mix of those by its attention. tanh(x) is
        # computed as 2 sigmoid(2x) - 1 (PyTorch's CPU tanh is about 9x slower than its sigmoid),
        # the 2s folded into both parts and the -1 into the second layer: sum_o w2_o tanh(x_o) =
        # 2 sum_o w2_o sigmoid(2 x_o) - sum_o w2_o
        n, S = self.n_items, ada.slots1.shape[0]
        row_part = _mix(seq.unsqueeze(1), ada, ada.slots1[:, :, :H]).squeeze(1) + ada.b1  # [B, H]
        row_part *= 2
        per_slot = (items @ (2 * ada.slots1[:, :, H:]).reshape(S * H, H).T)  # [n, S * H]
        per_slot = per_slot.view(n, S, H).transpose(0, 1).reshape(S, n * H)
        values = self.config.score_block
        if not seq.is_cuda:  # blocks that stay in a core's L2
            values = min(values, CPU_BLOCK)
        block = max(1, values // (n * H))
        out = torch.empty(B, n, device=seq.device)
        for start in range(0, B, block):
            sl = slice(start, start + block)
            pre = (ada.attn1[sl] @ per_slot).view(-1, n, H)  # [b, n, H]
            pre += row_part[sl].unsqueeze(1)
            torch.matmul(pre.sigmoid_(), ada.w2[sl].unsqueeze(-1), out=out[sl].unsqueeze(-1))
        out *= 2
        out += (ada.b2 - ada.w2.sum(-1)).unsqueeze(1)
        return out


def _mix(x: Tensor, ada: Adaptation, slots: Tensor | None = None) -> Tensor:
    """``x [B, k, in] @ W1'_b^T`` for each row b, with ``W1'_b = sum_s attn1[b, s] slots[s]``
    (``slots`` [S, H, in], default ``ada.slots1``): every slot applied to x in one product,
    [B, k, S, H], then mixed by the row's attention -> [B, k, H]."""
    slots = ada.slots1 if slots is None else slots
    S, H = slots.shape[:2]
    B, k = x.shape[:2]
    y = (x.reshape(B * k, -1) @ slots.reshape(S * H, -1).T).view(B, k, S, H)
    return torch.matmul(ada.attn1.reshape(B, 1, 1, S), y).view(B, k, H)


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
