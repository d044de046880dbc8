"""Same functions, cheaper kernels: what the harness swaps into RecBole's models after building them.

Profiling RecBole's SASRec on zhihu (one CPU thread, batch 256) puts a third of a training step in
two places: ``nn.Dropout`` (one float drawn per element, about 1.5 ms per call) and RecBole's
hand-written GELU, ``x * 0.5 * (1 + erf(x / sqrt(2)))``, five elementwise passes forward and more
backward over the [B, 10, 256] feed-forward activations. :func:`accelerate` replaces

- every ``nn.Dropout`` by the harness's :class:`dreamrec.model.Dropout` (same inverted dropout
  from torch's global generator, two 15-bit uniforms per 32-bit draw; drop probability
  ``round(p * 2**15) / 2**15``, exact for RecBole's 0.5, 0.3 and 0.4 up to 2e-5), and
- RecBole's ``FeedForward.gelu`` by ``torch.nn.functional.gelu``, the same exact (erf) GELU as
  one fused kernel.

Parameters, initialisation and every other computation stay RecBole's; in eval mode the model's
outputs are unchanged (a test compares them with the unpatched model).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


def accelerate(net: nn.Module) -> nn.Module:
    """Swap the cheaper equivalents into ``net`` in place; returns ``net``."""
    from dreamrec.model import Dropout  # here: dreamrec.model itself imports baselines

    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout:
                setattr(module, name, Dropout(child.p))
        act = getattr(module, "intermediate_act_fn", None)
        if act is not None and getattr(act, "__func__", None) is getattr(type(module), "gelu", None):
            module.intermediate_act_fn = F.gelu
    return net
