"""Dropout from 15-bit draws, self-attention at one query position, normal noise in blocks,
and an embedding whose gradient buffer is kept between steps.

Each is the same function as its textbook form with fewer or cheaper operations. On this
project's 2-core reference CPU a model step of the size used here (batch 256, history 10,
hidden 64) is bound by operator count more than arithmetic, so what is saved is kernels and
the memory they touch, not only FLOPs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Dropout(nn.Module):
    """Inverted dropout with a cheaper mask than ``nn.Dropout`` on the CPU.

    ``nn.Dropout`` draws one float per element (about 1 ms per [256, 10, 64] batch on this
    project's 2-core reference machine). Here each 32-bit draw of torch's global generator
    yields two independent 15-bit uniforms, and an element is dropped when its uniform is below
    ``round(p * 2**15)``: drop probability ``round(p * 2**15) / 2**15`` (0.1 -> 0.1000061),
    4-7x faster. Identity in eval mode.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * 32768)
        self.scale = 1.0 / (1.0 - self.threshold / 32768)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    @staticmethod
    def words(n: int) -> int:
        """32-bit draws a mask of ``n`` elements takes."""
        return (n + 1) // 2

    def forward(self, x: Tensor, keep: Tensor | None = None, bits: Tensor | None = None) -> Tensor:
        """Dropout of ``x``, times the 0/1 ``keep`` mask (broadcast to ``x``) when given.

        ``bits`` (int32, :meth:`words` of ``x.numel()``) are the random draws to build the mask
        from; without them they are drawn here from torch's global generator. Drawing a step's
        bits up front in one call leaves the rest of the step free of random operations.
        Folding a padding mask into the dropout mask saves one product over ``x`` and its
        gradient.
        """
        if not self.training or self.threshold == 0:
            return x if keep is None else x * keep
        if bits is None:
            bits = torch.empty(self.words(x.numel()), dtype=torch.int32, device=x.device).random_()
        mask = self.mask_from(bits, x.shape, x.dtype)
        return x * (mask if keep is None else mask * keep)

    def mask_from(self, bits: Tensor, shape: torch.Size | tuple[int, ...],
                  dtype: torch.dtype) -> Tensor:
        """The mask of ``shape`` the int32 ``bits`` give: 0 where dropped, ``1 / (1 - p)`` where
        kept."""
        n = 1
        for s in shape:
            n *= s
        u15 = bits.view(torch.int16)[:n].view(shape) & 0x7FFF  # uniform on [0, 2**15)
        # kept (u15 >= threshold) -> 1, dropped -> 0, in int16: 4x faster on the CPU than a
        # comparison to bool and a bool -> float conversion
        keep = u15.sub_(self.threshold - 1).clamp_(0, 1)
        return keep.to(dtype).mul_(self.scale)


def attend_at_one_position(
    seq: Tensor, query: Tensor, w_q: nn.Linear, w_k: nn.Linear, w_v: nn.Linear,
    score_bias: Tensor, n_heads: int = 1, attn_dropout: nn.Module | None = None,
    query_gate: Tensor | None = None,
) -> Tensor:
    """Scaled dot-product attention of one query per row over the row's keys and values.

    ``seq`` [B, L, H]: keys and values are ``w_k(seq)`` and ``w_v(seq)``; ``query`` [B, H]: the
    query is ``w_q(query)``; heads split the hidden size into ``n_heads`` equal parts of size
    d. ``score_bias`` ([B, 1, L] or [B, n_heads, L]) is added to the scaled scores before the
    softmax (0 for a key that may be attended, a large negative value for one that may not);
    ``query_gate`` [B, 1] multiplies the attention weights (a query mask), and ``attn_dropout``
    drops them. Returns the heads' outputs concatenated, [B, H], before any output projection:
    ``softmax(q_h k_h^T / sqrt(d) + bias) v_h`` for each head h.

    The keys and values are never formed. For head h, ``q_h . k_hl = seq_l . (W_kh^T q_h) +
    b_kh . q_h`` and ``sum_l a_hl v_hl = (sum_l a_hl seq_l) W_vh^T + b_vh sum_l a_hl``: two
    [B, L, H] contractions and [B, H]-sized products replace the two [B*L, H] x [H, H]
    projections and their gradients. It is the same function, equal to the projected form up
    to float rounding (tested, values and gradients).
    """
    B, L, H = seq.shape
    n, d = n_heads, H // n_heads
    q = w_q(query).view(B, n, d)
    wk = w_k.weight.view(n, d, H)
    # [B, n, H]: head h's query through its d rows of W_k (one batched product over heads)
    qk = torch.bmm(q.transpose(0, 1), wk).transpose(0, 1) if n > 1 else q @ w_k.weight
    qb = (q * w_k.bias.view(n, d)).sum(-1, keepdim=True)  # [B, n, 1]
    # scores [B, n, L]: one multiply-and-sum; a bmm with one column is ~4x slower on the CPU
    scores = torch.linalg.vecdot(seq.unsqueeze(1), qk.unsqueeze(2)) + qb
    attn = torch.softmax(scores / math.sqrt(d) + score_bias, dim=-1)
    if query_gate is not None:
        attn = attn * query_gate.unsqueeze(-1)
    if attn_dropout is not None:
        attn = attn_dropout(attn)
    ctx = torch.bmm(attn, seq)  # [B, n, H]: sum_l a_hl seq_l
    if n == 1:
        out = ctx.view(B, H) @ w_v.weight.T
    else:  # head h through its d rows of W_v
        out = torch.bmm(ctx.transpose(0, 1), w_v.weight.view(n, d, H).transpose(1, 2))
        out = out.transpose(0, 1).reshape(B, H)
    return out + (attn.sum(-1, keepdim=True) * w_v.bias.view(n, d)).view(B, H)


class NoiseBlocks:
    """Standard normal draws for a chain of steps, ``count`` draws of ``shape``, in blocks.

    Iterating yields blocks ``[k, *shape]`` (``k <= block``, together ``count`` draws) whose
    values equal ``count`` successive ``torch.randn(shape, generator=generator)`` calls: the
    CPU generator fills a tensor of ``n`` normals exactly as it fills its pieces one after
    another when each piece is a multiple of 16 numbers (it transforms uniforms 16 at a time;
    tested), so with ``prod(shape) % 16 == 0`` the chain sees the same noise with ``count /
    block`` calls instead of ``count`` (the caller's condition: pass ``block=1`` otherwise).

    With ``background=True`` the blocks are drawn by one worker thread, one block ahead of the
    consumer: on a machine with a second core the draws (torch's CPU normal generator is
    serial, about 3.6 ns a number on this project's reference CPU) overlap the consumer's
    work. The generator is used by the worker alone while the iteration runs; the values are
    the same either way.
    """

    def __init__(self, generator: torch.Generator | None, shape: tuple[int, ...], count: int,
                 block: int, device: torch.device, background: bool = False) -> None:
        self.generator, self.shape, self.count, self.block = generator, tuple(shape), count, block
        self.device, self.background = device, background

    def _draw(self, first: int) -> Tensor:
        k = min(self.block, self.count - first)
        return torch.randn((k, *self.shape), generator=self.generator, device=self.device)

    def __iter__(self):
        starts = range(0, self.count, self.block)
        if not self.background:
            for first in starts:
                yield self._draw(first)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = None
            for first in starts:
                nxt = pool.submit(self._draw, first)  # one worker: drawn in order
                if pending is not None:
                    yield pending.result()
                pending = nxt
            if pending is not None:
                yield pending.result()


class _LookupInto(torch.autograd.Function):
    """``weight[idx]``, its gradient accumulated in place into a buffer kept between steps."""

    @staticmethod
    def forward(ctx, weight: Tensor, idx: Tensor, owner: "Embedding") -> Tensor:
        ctx.save_for_backward(idx)
        ctx.owner = owner
        return weight[idx]

    @staticmethod
    def backward(ctx, grad: Tensor):
        (idx,) = ctx.saved_tensors
        weight = ctx.owner.weight
        rows = grad.reshape(-1, grad.shape[-1])
        if weight.grad is None:  # the usual case: the optimizer set it to None
            buf = ctx.owner._grad_buffer
            if buf is None or buf.shape != weight.shape or buf.device != weight.device:
                buf = ctx.owner._grad_buffer = torch.zeros_like(weight)
            else:
                buf.zero_()
            weight.grad = buf.index_add_(0, idx.reshape(-1), rows)
        else:
            weight.grad.index_add_(0, idx.reshape(-1), rows)
        return None, None, None


class Embedding(nn.Embedding):
    """``nn.Embedding`` whose training gradient goes into one buffer kept between steps.

    The dense gradient of an embedding table is a fresh [n, H] tensor every step, zero-filled
    and then accumulated into by a sort-based kernel (about 0.5 ms a DreamRec step on zhihu on
    this project's reference CPU, most of it writing memory the step has not touched yet).
    Here the backward zeroes the table's own buffer and adds the rows' gradients into it with
    ``index_add_``, then hands it to ``weight.grad`` (or adds into ``weight.grad`` where another
    use of the weight put one there first). Same values; same parameters and state dict as
    ``nn.Embedding``. Plain ``F.embedding`` when no gradient is needed, or with ``padding_idx``,
    ``max_norm`` or sparse gradients (not supported here).
    """

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self._grad_buffer: Tensor | None = None

    def forward(self, idx: Tensor) -> Tensor:
        if (not torch.is_grad_enabled() or not self.weight.requires_grad
                or self.padding_idx is not None or self.max_norm is not None or self.sparse):
            return super().forward(idx)
        return _LookupInto.apply(self.weight, idx, self)
