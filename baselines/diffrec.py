"""DiffRec (Wang et al., SIGIR 2023): RecBole 1.2.1's own model, fed each row as a multi-hot vector.

DiffRec is not sequential: it denoises a user's whole interaction vector with an MLP and ranks
items by the reconstruction. It draws no negatives, so the paper's 1:1 protocol does not apply
to it (``n_negatives = 0``); it is trained by its own diffusion loss (MSE of the predicted x_0,
SNR-reweighted, with importance-sampled steps, all RecBole's code).

What the harness feeds it, per row (order within the history is lost, as in DiffRec itself):

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
hyper-parameters are RecBole's DiffRec.yaml defaults (``embedding_size`` is the size of the step
embedding, not an item embedding; DiffRec has no item embeddings). ``time-aware`` (T-DiffRec)
needs timestamps that the paper's data does not have and stays off.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch
from torch import Tensor

from baselines.compat import ModelConfig, ModelDataset, recbole_models
from baselines.contract import Batch, SequentialRecommender
from baselines.fast import accelerate
from baselines.ids import real_item_columns, to_recbole
from harness.data import SEQ_LEN

TRAIN_VECTORS = ("history+target", "history")


@dataclass
class DiffRecConfig:
    """RecBole's DiffRec.yaml defaults, plus what the training vector holds."""

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

    def recbole_params(self) -> dict:
        params = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "train_vector"}
        params["dims_dnn"] = list(self.dims_dnn)
        return {**params, "time-aware": False, "w_max": 1.0, "w_min": 0.1}


class _NoStoredHistories(ModelDataset):
    """DiffRec's constructor asks for the user-item matrix; rows bring their own vectors."""

    def history_item_matrix(self) -> tuple[Tensor, Tensor, Tensor]:
        return (torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1), torch.zeros(1))


def _rows_are_vectors(vectors: Tensor) -> Tensor:
    return vectors


def update_lt_history(net: torch.nn.Module, ts: Tensor, reloss: Tensor) -> None:
    """RecBole's ``DiffRec.update_Lt_history`` with the same result, in one host round trip.

    RecBole walks the batch element by element with tensor indexing: about 4 ms per 256-row step
    on the CPU, and on a GPU a device synchronisation per element (DiffRec made no visible
    progress on a shared GPU). The per-step loss history is tiny ([steps, history_num_per_term]),
    so it is updated here as Python lists, element by element in batch order as RecBole does
    (a step's history is a FIFO of the last ``history_num_per_term`` losses), and copied back.
    """
    size = net.history_num_per_term
    hist = net.Lt_history.tolist()
    count = net.Lt_count.tolist()
    for t, loss in zip(ts.tolist(), reloss.detach().to(net.Lt_history.dtype).tolist()):
        if count[t] == size:
            hist[t] = hist[t][1:] + [loss]
        else:
            hist[t][count[t]] = loss
            count[t] += 1
    net.Lt_history.copy_(torch.tensor(hist, dtype=net.Lt_history.dtype))
    net.Lt_count.copy_(torch.tensor(count, dtype=net.Lt_count.dtype))


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
        for name, value in list(vars(net).items()):
            if isinstance(value, Tensor):  # plain tensors: make Module.to() move them
                delattr(net, name)
                net.register_buffer(name, value)
        self.net = accelerate(net)

    def multi_hot(self, history: Tensor, target: Tensor | None = None) -> Tensor:
        """[B, n_items + 1] in RecBole's columns (column 0, the pad, stays 0)."""
        ids = to_recbole(history, self.n_items)
        if target is not None:
            ids = torch.cat([ids, to_recbole(target, self.n_items).unsqueeze(1)], dim=1)
        x = torch.zeros(ids.shape[0], self.n_items + 1, device=ids.device)
        x.scatter_(1, ids, 1.0)
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
