"""Same functions, cheaper kernels: what the harness swaps into RecBole's models after building them.

Profiling RecBole's SASRec on zhihu (one CPU thread, batch 256) puts a third of a training step in
two places: ``nn.Dropout`` (one float drawn per element, about 1.5 ms per call) and RecBole's
hand-written GELU, ``x * 0.5 * (1 + erf(x / sqrt(2)))``, five elementwise passes forward and more
backward over the [B, 10, 256] feed-forward activations. :func:`accelerate` replaces

- every ``nn.Dropout`` by the harness's :class:`kernels.ops.Dropout` (same inverted dropout
  from torch's global generator, two 15-bit uniforms per 32-bit draw; drop probability
  ``round(p * 2**15) / 2**15``, exact for RecBole's 0.5, 0.3 and 0.4 up to 2e-5), and
- RecBole's ``FeedForward.gelu`` by ``torch.nn.functional.gelu``, the same exact (erf) GELU as
  one fused kernel.

- RecBole's ``SASRec.forward`` (used by SASRec, CL4SRec, IPS and AdaRanker on SASRec) by
  :func:`sasrec_forward`, which evaluates the last transformer layer at the one position that
  is read out.

Parameters, initialisation and every other computation stay RecBole's; in eval mode the model's
outputs are unchanged, and with dropout 0 so are the training loss and every gradient (tests
compare them with the unpatched model).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kernels.ops import Dropout, attend_at_one_position


def accelerate(net: nn.Module) -> nn.Module:
    """Swap the cheaper equivalents into ``net`` in place; returns ``net``."""
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout:
                setattr(module, name, Dropout(child.p))
        act = getattr(module, "intermediate_act_fn", None)
        if act is not None and getattr(act, "__func__", None) is getattr(type(module), "gelu", None):
            module.intermediate_act_fn = F.gelu
    if type(net).__name__ == "SASRec" and hasattr(net, "trm_encoder"):
        net.forward = types.MethodType(sasrec_forward, net)
    return net


def sasrec_forward(net: nn.Module, item_seq: Tensor, item_seq_len: Tensor) -> Tensor:
    """RecBole 1.2.1's ``SASRec.forward`` with its last layer at the read-out position only.

    RecBole runs every transformer layer at all L positions and then reads position
    ``length - 1`` (``gather_indexes``). Everything in a layer after its key and value
    projections is position-wise, so the last layer is evaluated for the one query that is
    read: its keys and values come from all positions of the previous layer's output (through
    :func:`kernels.ops.attend_at_one_position`, which never forms them), and the query, the
    attention output, its dense layer, dropout and layer norm, and the feed-forward block are
    computed at one position instead of L. The layers before it, the embeddings, the input
    layer norm (with any forward hook on it: AdaRanker's modulation) and the attention mask are
    RecBole's own. Same parameters, same function: in eval mode, and in training with dropout
    0, outputs and gradients equal RecBole's to float tolerance (tested). With dropout on, the
    positions that are read draw their masks from the same distribution (dropout is
    elementwise and independent); masks of the positions not computed are not drawn, so the
    random stream differs from RecBole's.
    """
    L = item_seq.size(1)
    x = net.item_embedding(item_seq) + net.position_embedding.weight[:L]
    x = net.dropout(net.LayerNorm(x))
    mask = net.get_attention_mask(item_seq)  # [B, 1, L, L]: 0 or -10000
    layers = net.trm_encoder.layer
    for layer in layers[:-1]:
        x = layer(x, mask)
    rows = torch.arange(item_seq.size(0), device=item_seq.device)
    last = item_seq_len - 1
    mha = layers[-1].multi_head_attention
    query = x[rows, last]  # [B, H]
    ctx = attend_at_one_position(x, query, mha.query, mha.key, mha.value, mask[rows, :, last],
                                 n_heads=mha.num_attention_heads, attn_dropout=mha.attn_dropout)
    h = mha.LayerNorm(mha.out_dropout(mha.dense(ctx)) + query)
    return layers[-1].feed_forward(h)  # [B, H]
