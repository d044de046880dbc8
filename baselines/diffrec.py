"""DiffRec (Wang et al., SIGIR 2023): RecBole 1.2.1's own model, fed each row as a multi-hot vector.

DiffRec is not sequential: it denoises a user's whole interaction vector with an MLP and ranks
items by the reconstruction. It draws no negatives, so the paper's 1:1 protocol does not apply
to it (``n_negatives = 0``); it is trained by its own diffusion loss (MSE of the predicted x_0,
SNR-reweighted, with importance-sampled steps, all RecBole's code).

What the harness feeds it, per row (order within the history is lost, as in DiffRec itself,
unless ``time_aware``, below):

- training, ``train_vector = "history+target"`` (default): x_0 is the multi-hot vector of the
  row's history items *and* its target -- everything known about that row, as DiffRec's own
  training vector holds every training interaction of a user. ``"history"`` leaves the target
  out (the model then learns the targets only through the later rows whose history holds them).
- scoring: the multi-hot vector of the history alone; the scores are RecBole's
  ``full_sort_predict`` (the reverse process from that vector, ``sampling_steps`` noising steps
  first), real items only. History items are not removed here (the evaluator's
  ``mask_history`` does that for every model at once).

RecBole's DiffRec reads user vectors from a stored user-item matrix; here rows carry their own,
so the adapter replaces that lookup (``get_rating_matrix``) by the identity on the vector it is
handed. RecBole keeps its diffusion tables and importance-sampling history as plain tensor
attributes, which ``Module.to`` would not move; the adapter registers them as buffers. The
denoiser's first layer runs without concatenating its input (:func:`dnn_forward`: the same
function, without the gradient of the [B, n_items] input that autograd would compute). The
hyper-parameters are RecBole's DiffRec.yaml defaults (``embedding_size`` is the size of the step
embedding, not an item embedding; DiffRec has no item embeddings).

``time_aware`` (T-DiffRec, off by default): the vector's entries are weights instead of ones.

- RecBole's part (``DiffRec.build_histroy_items`` with ``time-aware``): a user's training
  interactions are sorted by time and weighted ``np.linspace(w_min, w_max, n)`` in that order,
  ``n`` their number (oldest ``w_min``, newest ``w_max``; a single interaction ``w_min``); the
  weight is the entry of the user's vector (``get_rating_matrix``'s ``index_put_``: for an item
  met twice the entry written last, the newer one's, on a CPU; PyTorch leaves repeated indices
  unspecified). Only the order of the interactions enters, not the time between them, so
  timestamps are not needed: a row's history is already in time order, oldest first.
- The harness's mapping: the user's interactions are a row's items. Training: its history then,
  with ``train_vector = "history+target"``, its target as the newest (so the target weighs
  ``w_max``, or ``w_min`` when it is the row's only item); ``"history"``: the history alone.
  Scoring: the history alone (its newest item weighs ``w_max``). The weights are
  ``np.linspace`` itself, tabulated once per length (:func:`recency_weights`); an item met twice
  takes the larger weight, which is the newer one's since ``w_min <= w_max``.

RecBole's own ``time-aware`` path reads a time column from its Dataset, which rows do not have,
so RecBole's flag stays off and the adapter builds the weighted vector itself.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from baselines.compat import ModelConfig, ModelDataset, recbole_models
from baselines.contract import Batch, SequentialRecommender
from baselines.fast import accelerate
from baselines.ids import real_item_columns, to_recbole
from harness.data import SEQ_LEN
from kernels.ops import Dropout

TRAIN_VECTORS = ("history+target", "history")


@dataclass
class DiffRecConfig:
    """RecBole's DiffRec.yaml defaults, plus what the training vector holds and whether its
    entries are T-DiffRec's recency weights."""

    noise_schedule: str = "linear"
    noise_scale: float = 0.001
    noise_min: float = 0.0005
    noise_max: float = 0.005
    sampling_noise: bool = False
    sampling_steps: int = 0
    reweight: bool = True
    mean_type: str = "x0"
    steps: int = 5
    history_num_per_term: int = 10
    beta_fixed: bool = True
    dims_dnn: tuple[int, ...] = (300,)
    embedding_size: int = 10
    mlp_act_func: str = "tanh"
    norm: bool = False
    train_vector: str = "history+target"
    time_aware: bool = False  # RecBole's "time-aware" (T-DiffRec), the weights built here
    w_min: float = 0.1  # weight of the oldest item (DiffRec.yaml)
    w_max: float = 1.0  # weight of the newest item (DiffRec.yaml)

    #: options added after records existed: out of the config hash while at their defaults
    HASHED_IF_SET: ClassVar[tuple[str, ...]] = ("time_aware", "w_min", "w_max")
    #: fields of the harness's, not passed to RecBole as they are
    HARNESS_FIELDS: ClassVar[tuple[str, ...]] = ("train_vector", "time_aware", "w_min", "w_max")

    def __post_init__(self) -> None:
        self.dims_dnn = tuple(int(d) for d in self.dims_dnn)
        if self.train_vector not in TRAIN_VECTORS:
            raise ValueError(f"train_vector must be one of {', '.join(TRAIN_VECTORS)}, "
                             f"got {self.train_vector!r}")
        if self.mean_type not in ("x0", "eps"):
            raise ValueError(f"mean_type must be x0 or eps, got {self.mean_type!r}")
        if not 0 <= self.sampling_steps <= self.steps:
            raise ValueError(f"sampling_steps must be in [0, steps={self.steps}], "
                             f"got {self.sampling_steps}")
        if not self.dims_dnn or min(self.dims_dnn) < 1:
            raise ValueError(f"dims_dnn must be positive layer sizes, got {self.dims_dnn}")
        if not 0.0 <= self.w_min <= self.w_max:
            raise ValueError(f"need 0 <= w_min <= w_max, got w_min={self.w_min}, "
                             f"w_max={self.w_max}")

    def recbole_params(self) -> dict:
        """RecBole's DiffRec parameters; its ``time-aware`` stays off (see the module docstring)."""
        params = {k: getattr(self, k) for k in self.__dataclass_fields__
                  if k not in self.HARNESS_FIELDS}
        params["dims_dnn"] = list(self.dims_dnn)
        return {**params, "time-aware": False, "w_max": self.w_max, "w_min": self.w_min}


def recency_weights(max_len: int, w_min: float, w_max: float) -> Tensor:
    """T-DiffRec's weights by length: [max_len + 1, max_len] float32, row ``n`` holding
    ``np.linspace(w_min, w_max, n)`` (RecBole's weights of ``n`` interactions, oldest first) in
    its first ``n`` columns and zeros after."""
    table = np.zeros((max_len + 1, max_len))
    for n in range(1, max_len + 1):
        table[n, :n] = np.linspace(w_min, w_max, n)
    return torch.from_numpy(table).float()  # float64 -> float32, as RecBole's FloatTensor


class _NoStoredHistories(ModelDataset):
    """DiffRec's constructor asks for the user-item matrix; rows bring their own vectors."""

    def history_item_matrix(self) -> tuple[Tensor, Tensor, Tensor]:
        return (torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1), torch.zeros(1))


def _rows_are_vectors(vectors: Tensor) -> Tensor:
    return vectors


class _ConcatLinear(torch.autograd.Function):
    """``F.linear(torch.cat([x, e], -1), weight, bias)`` without the concatenation.

    DiffRec's first layer reads ``[x_t, step embedding]``; autograd then computes the gradient of
    the whole concatenated input ([B, n_items + 10]) to pass the step embedding its 10 columns,
    a product as large as the layer itself. Here the step embedding's gradient is computed
    alone, x's only when x needs one (never in DiffRec: x_t is data and noise), and the weight's
    is written into its two column blocks directly.
    """

    @staticmethod
    def forward(ctx, x: Tensor, e: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        n = x.shape[-1]
        ctx.save_for_backward(x, e, weight)
        return torch.addmm(bias, x, weight[:, :n].T).addmm_(e, weight[:, n:].T)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, e, weight = ctx.saved_tensors
        n = x.shape[-1]
        gx = grad @ weight[:, :n] if ctx.needs_input_grad[0] else None
        ge = grad @ weight[:, n:] if ctx.needs_input_grad[1] else None
        gw = gb = None
        if ctx.needs_input_grad[2]:
            gw = torch.empty_like(weight)
            gt = grad.T.contiguous()
            torch.mm(gt, x, out=gw[:, :n])
            torch.mm(gt, e, out=gw[:, n:])
        if ctx.needs_input_grad[3]:
            gb = grad.sum(0)
        return gx, ge, gw, gb


def dnn_forward(self, x: Tensor, timesteps: Tensor) -> Tensor:
    """RecBole 1.2.1's ``DNN.forward`` (DiffRec's denoiser), its first layer through
    :class:`_ConcatLinear`: same parameters, same function and gradients (tested)."""
    from recbole.model.general_recommender.diffrec import timestep_embedding

    emb = self.emb_layer(timestep_embedding(timesteps, self.time_emb_dim).to(x.device))
    if self.norm:
        x = torch.nn.functional.normalize(x)
    x = self.drop(x)
    layers = list(self.mlp_layers.mlp_layers)
    first = next(i for i, m in enumerate(layers) if isinstance(m, torch.nn.Linear))
    if any(not isinstance(m, Dropout) or m.threshold for m in layers[:first]):
        return self.mlp_layers(torch.cat([x, emb], dim=-1))  # a dropout before it: as RecBole
    lin = layers[first]
    h = _ConcatLinear.apply(x, emb, lin.weight, lin.bias)
    for m in layers[first + 1:]:
        h = m(h)
    return h


def update_lt_history(net: torch.nn.Module, ts: Tensor, reloss: Tensor) -> None:
    """RecBole's ``DiffRec.update_Lt_history`` with the same result, without leaving the device.

    RecBole walks the batch element by element with tensor indexing: about 4 ms per 256-row
    step on the CPU, and on a GPU a device synchronisation per element. A step's history is a
    FIFO of its last ``history_num_per_term`` losses, oldest first; here each step's FIFO is
    rebuilt at once: its stored entries followed by the batch's losses for that step, in batch
    order, of which the last ``size`` are kept (tested against RecBole's loop). Fixed shapes
    only, so nothing waits for the device.
    """
    size = net.history_num_per_term
    hist, count = net.Lt_history, net.Lt_count  # [steps, size], [steps]
    steps, B = hist.shape[0], ts.shape[0]
    loss = reloss.detach().to(hist.dtype)
    slots = torch.arange(size, device=hist.device)
    # every step's candidates: its stored entries, then every loss of the batch ([steps, size + B])
    values = torch.cat((hist, loss.expand(steps, B)), dim=1)
    valid = torch.cat((slots < count[:, None],
                       ts[None, :] == torch.arange(steps, device=ts.device)[:, None]), dim=1)
    n = valid.sum(1, keepdim=True)  # [steps, 1]
    pos = valid.cumsum(1) - 1 - (n - size).clamp(min=0)  # place in the new FIFO; < 0: dropped
    keep = valid & (pos >= 0)
    out = torch.cat((hist, hist.new_zeros(steps, 1)), dim=1)  # unfilled slots keep their value
    out.scatter_(1, torch.where(keep, pos, size), values)  # column `size` takes the rest
    hist.copy_(out[:, :size])
    count.copy_(n.squeeze(1).clamp(max=size).to(count.dtype))


def sample_timesteps(net: torch.nn.Module, batch_size: int, device, method: str = "uniform",
                     uniform_prob: float = 0.001) -> tuple[Tensor, Tensor]:
    """RecBole's ``DiffRec.sample_timesteps`` without its Python branch on device values.

    RecBole samples steps uniformly until every step's loss history is full, then by
    importance (probabilities from the histories' root mean squares, mixed with
    ``uniform_prob``). Whether the histories are full is a device value; RecBole's ``if`` on
    it (and an ``assert`` on the probabilities) makes the host wait for the device every step.
    Here one multinomial draw serves both phases, with uniform probabilities until the
    histories are full and the importance probabilities after: the same distribution of steps
    and the same ``pt`` (1 while uniform). Once the histories are full (after the first step or
    two) it is the very draw RecBole makes, same probabilities, same generator (tested); before
    that, a multinomial over equal probabilities stands for RecBole's ``randint``.
    """
    if method != "importance":
        return type(net).sample_timesteps(net, batch_size, device, method, uniform_prob)
    full = (net.Lt_count == net.history_num_per_term).all()
    lt = torch.sqrt(torch.mean(net.Lt_history ** 2, dim=-1))
    p_imp = lt / lt.sum().clamp(min=torch.finfo(lt.dtype).tiny)
    p_imp = p_imp * (1 - uniform_prob) + uniform_prob / len(p_imp)
    p = torch.where(full, p_imp, torch.full_like(p_imp, 1.0 / len(p_imp)))
    t = torch.multinomial(p, num_samples=batch_size, replacement=True)
    pt = torch.where(full, p_imp.gather(0, t) * len(p_imp), torch.ones_like(p_imp[t]))
    return t, pt.float()


class DiffRec(SequentialRecommender):
    """RecBole's DiffRec on per-row multi-hot vectors; see the module docstring."""

    n_negatives = 0

    def __init__(self, n_items: int, config: DiffRecConfig) -> None:
        super().__init__(n_items)
        self.config = config
        net = recbole_models().DiffRec(
            ModelConfig("DiffRec", config.recbole_params(), SEQ_LEN),
            _NoStoredHistories(n_items + 1))
        net.get_rating_matrix = _rows_are_vectors
        net.update_Lt_history = types.MethodType(update_lt_history, net)
        net.sample_timesteps = types.MethodType(sample_timesteps, net)
        for name, value in list(vars(net).items()):
            if isinstance(value, Tensor):  # plain tensors: make Module.to() move them
                delattr(net, name)
                net.register_buffer(name, value)
        self.net = accelerate(net)
        self.net.mlp.forward = types.MethodType(dnn_forward, self.net.mlp)
        if config.time_aware:  # not in the state dict: a function of the config
            self.register_buffer("recency", recency_weights(SEQ_LEN + 1, config.w_min,
                                                            config.w_max), persistent=False)

    def multi_hot(self, history: Tensor, target: Tensor | None = None) -> Tensor:
        """[B, n_items + 1] in RecBole's columns (column 0, the pad, stays 0): ones, or with
        ``time_aware`` each item's recency weight, the target (when given) the newest item."""
        ids = to_recbole(history, self.n_items)
        if target is not None:
            ids = torch.cat([ids, to_recbole(target, self.n_items).unsqueeze(1)], dim=1)
        x = torch.zeros(ids.shape[0], self.n_items + 1, device=ids.device)
        if not self.config.time_aware:
            x.scatter_(1, ids, 1.0)
        else:
            if ids.shape[1] > self.recency.shape[1]:
                raise ValueError(f"time_aware DiffRec takes rows of at most {SEQ_LEN} history "
                                 f"items, got {history.shape[1]}")
            real = ids != 0  # [B, L]
            pos = real.cumsum(1) - 1  # place among the row's items, oldest 0
            n = real.sum(1, keepdim=True)  # [B, 1]
            w = self.recency[n, pos.clamp(min=0)]  # [B, L]; pads land in column 0
            x.scatter_reduce_(1, ids, w, reduce="amax")
        x[:, 0] = 0.0
        return x

    def calculate_loss(self, batch: Batch) -> Tensor:
        with_target = self.config.train_vector == "history+target"
        x = self.multi_hot(batch.history, batch.target if with_target else None)
        return self.net.calculate_loss({self.net.USER_ID: x})

    def full_sort_predict(self, history: Tensor, length: Tensor,
                          generator: torch.Generator | None = None) -> Tensor:
        scores = self.net.full_sort_predict({self.net.USER_ID: self.multi_hot(history)})
        return real_item_columns(scores, self.n_items)
