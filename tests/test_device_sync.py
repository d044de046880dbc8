"""Every model's training step is free of host synchronisation, so a GPU runs it unwaited.

On a GPU an operation whose result the host must read (``.item()``, ``bool()`` of a tensor, a
data-dependent output shape such as ``nonzero`` or boolean indexing, a copy to the host) stops
the queue until the device has finished everything before it. The audit runs the trainer's own
step (:func:`harness.train.train_step`) for every registered model on the CPU under a dispatch
mode that records each such operation, and with the host-copying tensor methods counted.
"""

import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from harness.models import MODELS, get_model
from harness.train import train_step

# aten operations that make the host wait for a CUDA device
SYNCHRONISING = {"_local_scalar_dense", "nonzero", "masked_select", "unique_dim", "_unique2",
                 "unique_consecutive", "repeat_interleave"}


class SyncAudit(TorchDispatchMode):
    """Counts synchronising aten operations, boolean-mask indexing and host copies."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in SYNCHRONISING:
            self.calls[name] += 1
        if name in ("index", "index_put", "index_put_") and any(
                isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
                for i in (args[1] if len(args) > 1 else []) if i is not None):
            self.calls[f"{name} with a boolean mask"] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture
def host_copies(monkeypatch):
    """Counts Tensor.tolist / numpy / cpu calls (no aten operation on a CPU tensor)."""
    calls: collections.Counter = collections.Counter()
    for method in ("tolist", "numpy", "cpu"):
        original = getattr(torch.Tensor, method)

        def counted(self, *a, _name=method, _orig=original, **kw):
            calls[_name] += 1
            return _orig(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, method, counted)
    return calls


@pytest.mark.parametrize("name", list(MODELS))
def test_a_training_step_makes_no_host_synchronisation(name, host_copies):
    n_items, B = 40, 32
    spec = get_model(name)
    model_cfg, _ = spec.configs("ml-100k")
    torch.manual_seed(0)
    model = spec.build(n_items, model_cfg).train()
    opt = torch.optim.AdamW(model.param_groups(1e-3, 0.0), fused=True)
    g = torch.Generator().manual_seed(0)
    length = torch.randint(1, 11, (B,), generator=g)
    history = torch.randint(0, n_items, (B, 10), generator=g)
    history[torch.arange(10) >= length[:, None]] = n_items
    target = torch.randint(0, n_items, (B,), generator=g)
    model.observe_training_rows(history, length, target)  # as the trainer does, before training
    model.set_epoch(100)  # past any warm-up phase (IPS trains its propensity model first)
    idx = torch.arange(B)
    train_step(model, opt, history, length, target, idx, n_items, g)  # state made, then audited
    host_copies.clear()
    with SyncAudit() as audit:
        for _ in range(3):
            train_step(model, opt, history, length, target, idx, n_items, g)
    assert dict(audit.calls) == {} and dict(host_copies) == {}
