"""G causal encoders run as one, on the real (non-padding) tokens only.

:class:`PackedEncoders` computes exactly what ``G`` independent
:class:`~mosaicrec.models.cdsr.layers.CausalEncoder` modules compute (same architecture, same
initialisation: it builds ``G`` of them and stacks their parameters) over inputs
``[G, B, L, D]`` that share one mask ``[B, L]`` (e.g. the modalities of one view), with three
savings that change no output:

* the ``G`` encoders' weights are stacked (``[G, in, out]``), so each layer is ONE batched
  matrix product (``baddbmm``) instead of ``G`` small ones (fewer operator calls, each on
  more data);
* every position-wise operation (layer norms, projections, feed-forward, dropout) runs on the
  ``P`` real tokens ``[G, P, D]`` instead of the padded ``[G, B, L, D]`` window (afk windows
  are about 55% padding; the per-domain views more);
* only the attention uses a padded layout, and in length buckets (:func:`bucket_layout`):
  rows sorted by length, each bucket in a window of its longest row, so short rows do not pay
  for the longest row's ``L x L`` scores and dropout mask. Padding keys are masked, padding
  queries attend to themselves (their outputs are discarded), so real tokens get exactly the
  padded result.

With ``groups=1`` and ``G' > 1`` inputs the single encoder is shared by the ``G'`` inputs.
Padding positions of the output are 0, as in ``CausalEncoder``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from mosaicrec.models.cdsr.layers import Block, CausalEncoder


def _lin(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-group linear layer: x [G, P, in], w [G, in, out], b [G, out] -> [G, P, out]."""
    return torch.baddbmm(b.unsqueeze(1), x, w)  # [G, P, out]


def _ln(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-group layer norm: x [G, P, D], w/b [G, D]."""
    return torch.addcmul(b.unsqueeze(1), F.layer_norm(x, x.shape[-1:]), w.unsqueeze(1))  # [G, P, D]


def _stack(tensors: list[torch.Tensor], transpose: bool = False) -> nn.Parameter:
    return nn.Parameter(torch.stack([t.detach().T if transpose else t.detach() for t in tensors]).contiguous())


@dataclass
class Bucket:
    """Rows of similar length attended together in a window of their longest length.

    Tokens ``start:end`` of the packed order; ``dest [Pk]`` their flat positions in the
    bucket's ``[rows, length]`` window; ``allowed [G*rows, 1, length, length]`` the attention mask.
    """

    start: int
    end: int
    rows: int
    length: int
    dest: torch.Tensor
    allowed: torch.Tensor


def bucket_layout(mask: torch.Tensor, groups: int, buckets: int) -> tuple[torch.Tensor, list[Bucket]]:
    """Packed token order and attention buckets of a window ``mask [B, L]``.

    Rows are sorted by the span they need (from their first real column to the end) and split
    into ``buckets`` groups of equal size; each group attends within the last ``Lk`` columns,
    ``Lk`` = its longest need, so short rows do not pay for the longest row's ``L x L``
    attention. Every real token still sees exactly its real keys. Returns ``sel [P]`` (the
    tokens' flat positions in the ``[B, L]`` window, bucket by bucket) and the buckets.
    """
    rows, length = mask.shape
    first = torch.where(mask.any(1), mask.to(torch.int8).argmax(1), length)  # [B] first real column
    order = torch.argsort(length - first, stable=True)  # [B] shortest need first
    sels, layout, start = [], [], 0
    eye = torch.eye(length, dtype=torch.bool, device=mask.device)
    tril = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    for chunk in torch.tensor_split(order, max(1, min(buckets, rows))):
        span = int(length - first[chunk].min()) if len(chunk) else 0
        if span == 0:  # no real token in these rows
            continue
        sub = mask[chunk, length - span:]  # [Bk, Lk]
        dest = sub.reshape(-1).nonzero().squeeze(1)  # [Pk]
        sels.append(chunk[dest // span] * length + dest % span + (length - span))  # [Pk]
        allowed = (sub.unsqueeze(1) & tril[:span, :span]) | eye[:span, :span]  # [Bk, Lk, Lk]
        layout.append(Bucket(start, start + len(dest), len(chunk), span, dest,
                             allowed.unsqueeze(1).repeat(groups, 1, 1, 1)))  # [G*Bk, 1, Lk, Lk]
        start += len(dest)
    sel = torch.cat(sels) if sels else mask.new_zeros(0, dtype=torch.long)  # [P]
    return sel, layout


def _ffn(block: Block) -> tuple[nn.Linear, nn.Linear]:
    """The two linear layers of a Block's feed-forward (Linear, GELU, Dropout, Linear)."""
    return cast(nn.Linear, block.ffn[0]), cast(nn.Linear, block.ffn[3])


class PackedBlock(nn.Module):
    """G pre-LN transformer blocks (:class:`~mosaicrec.models.cdsr.layers.Block`) with stacked weights."""

    def __init__(self, blocks: list[Block]) -> None:
        super().__init__()
        first = blocks[0]
        self.heads, self.dropout = first.heads, first.dropout
        self.ln1_w, self.ln1_b = _stack([b.ln1.weight for b in blocks]), _stack([b.ln1.bias for b in blocks])
        self.qkv_w, self.qkv_b = _stack([b.qkv.weight for b in blocks], True), _stack([b.qkv.bias for b in blocks])
        self.proj_w, self.proj_b = _stack([b.proj.weight for b in blocks], True), _stack([b.proj.bias for b in blocks])
        self.ln2_w, self.ln2_b = _stack([b.ln2.weight for b in blocks]), _stack([b.ln2.bias for b in blocks])
        ff1, ff2 = [_ffn(b)[0] for b in blocks], [_ffn(b)[1] for b in blocks]
        self.ff1_w, self.ff1_b = _stack([f.weight for f in ff1], True), _stack([f.bias for f in ff1])
        self.ff2_w, self.ff2_b = _stack([f.weight for f in ff2], True), _stack([f.bias for f in ff2])
        self.drop = nn.Dropout(first.dropout)

    def forward(self, h: torch.Tensor, layout: list[Bucket]) -> torch.Tensor:
        """h [G, P, D] real tokens, in the order of ``layout``'s buckets."""
        g, _, hidden = h.shape
        qkv = _lin(_ln(h, self.ln1_w, self.ln1_b), self.qkv_w, self.qkv_b)  # [G, P, 3D]
        parts = []
        for bk in layout:
            full = qkv.new_zeros(g, bk.rows * bk.length, 3 * hidden).index_copy(
                1, bk.dest, qkv[:, bk.start:bk.end])  # [G, Bk*Lk, 3D]
            q, k, v = full.view(g * bk.rows, bk.length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # 3x[G*Bk, H, Lk, Dh]
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=bk.allowed,
                                               dropout_p=self.dropout if self.training else 0.0)  # [G*Bk, H, Lk, Dh]
            parts.append(a.transpose(1, 2).reshape(g, bk.rows * bk.length, hidden)[:, bk.dest])  # [G, Pk, D]
        a = torch.cat(parts, 1) if parts else torch.zeros_like(h)  # [G, P, D]
        h = h + self.drop(_lin(a, self.proj_w, self.proj_b))  # [G, P, D]
        f = self.drop(F.gelu(_lin(_ln(h, self.ln2_w, self.ln2_b), self.ff1_w, self.ff1_b)))  # [G, P, 4D]
        return h + self.drop(_lin(f, self.ff2_w, self.ff2_b))  # [G, P, D]


class PackedEncoders(nn.Module):
    """``groups`` :class:`~mosaicrec.models.cdsr.layers.CausalEncoder` s run together on real tokens."""

    def __init__(self, groups: int, hidden: int, layers: int, heads: int, dropout: float, max_len: int,
                 buckets: int = 4) -> None:
        super().__init__()
        if buckets < 1:
            raise ValueError(f"buckets must be >= 1, got {buckets}")
        self.buckets = buckets
        members = [CausalEncoder(hidden, layers, heads, dropout, max_len) for _ in range(groups)]
        self.groups, self.max_len = groups, max_len
        self.pos = _stack([m.pos.weight for m in members])  # [G, max_len, D]
        self.blocks = nn.ModuleList(PackedBlock([cast(Block, m.blocks[i]) for m in members])
                                    for i in range(layers))
        self.ln_w, self.ln_b = _stack([m.ln.weight for m in members]), _stack([m.ln.bias for m in members])
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cols: torch.Tensor | None = None,
                span: int | None = None) -> torch.Tensor:
        """x [G', B, L, D] (G' = groups, or any G' when groups = 1), mask [B, L] -> [G', B, L, D].

        ``cols [B, L]`` / ``span`` as in :meth:`CausalEncoder.forward` (positions of the entries
        in a window of length ``span``).
        """
        n_in, rows, length, hidden = x.shape
        span = length if span is None else span
        if max(length, span) > self.max_len:
            raise ValueError(f"sequence length {max(length, span)} exceeds max_len {self.max_len}")
        if n_in != self.groups and self.groups != 1:
            raise ValueError(f"{n_in} inputs for {self.groups} encoders")
        if cols is None:
            cols = torch.arange(length, device=x.device).expand(rows, length)  # [B, L]
        if self.groups == 1 and n_in > 1:  # one shared encoder: the inputs are more rows
            x = x.reshape(1, n_in * rows, length, hidden)  # [1, G'*B, L, D]
            mask, cols = mask.repeat(n_in, 1), cols.repeat(n_in, 1)  # [G'*B, L]
        g, b = x.shape[0], x.shape[1]
        sel, layout = bucket_layout(mask, g, self.buckets)  # [P] real tokens, bucket by bucket
        pos = cols.reshape(-1)[sel] + (self.max_len - span)  # [P]
        h = self.drop(x.reshape(g, b * length, hidden)[:, sel] + self.pos[:, pos])  # [G, P, D]
        for block in self.blocks:
            h = block(h, layout)  # [G, P, D]
        h = _ln(h, self.ln_w, self.ln_b)  # [G, P, D]
        out = h.new_zeros(g, b * length, hidden).index_copy(1, sel, h)  # [G, B*L, D] padding = 0
        return out.view(n_in, rows, length, hidden)  # [G', B, L, D]

    def member(self, g: int) -> CausalEncoder:
        """A plain :class:`CausalEncoder` holding encoder ``g``'s weights (reference / export)."""
        blocks = [cast(PackedBlock, b) for b in self.blocks]
        enc = CausalEncoder(self.pos.shape[-1], len(blocks), blocks[0].heads, blocks[0].dropout, self.max_len)
        with torch.no_grad():
            enc.pos.weight.copy_(self.pos[g])
            enc.ln.weight.copy_(self.ln_w[g])
            enc.ln.bias.copy_(self.ln_b[g])
            for s, d in zip(blocks, [cast(Block, b) for b in enc.blocks], strict=True):
                ff1, ff2 = _ffn(d)
                for lin, w, bias in ((d.qkv, s.qkv_w, s.qkv_b), (d.proj, s.proj_w, s.proj_b),
                                     (ff1, s.ff1_w, s.ff1_b), (ff2, s.ff2_w, s.ff2_b)):
                    lin.weight.copy_(w[g].T)
                    lin.bias.copy_(bias[g])
                for ln, w, bias in ((d.ln1, s.ln1_w, s.ln1_b), (d.ln2, s.ln2_w, s.ln2_b)):
                    ln.weight.copy_(w[g])
                    ln.bias.copy_(bias[g])
        return enc.train(self.training)


_LEGACY = (("ln1_w", "ln1.weight", False), ("ln1_b", "ln1.bias", False), ("qkv_w", "qkv.weight", True),
           ("qkv_b", "qkv.bias", False), ("proj_w", "proj.weight", True), ("proj_b", "proj.bias", False),
           ("ln2_w", "ln2.weight", False), ("ln2_b", "ln2.bias", False), ("ff1_w", "ffn.0.weight", True),
           ("ff1_b", "ffn.0.bias", False), ("ff2_w", "ffn.3.weight", True), ("ff2_b", "ffn.3.bias", False))


def stack_legacy_state(state: dict[str, torch.Tensor], old: list[str], new: str) -> None:
    """Rewrite, in place, the weights of separate ``CausalEncoder`` s (key prefixes ``old``, in
    group order) as one :class:`PackedEncoders` under prefix ``new``.

    Run directories written before the encoders were packed keep loading. Does nothing unless
    every old encoder is present.
    """
    if not old or not all(p + "pos.weight" in state for p in old):
        return

    def take(name: str, transpose: bool = False) -> torch.Tensor:
        return torch.stack([state.pop(p + name).T if transpose else state.pop(p + name) for p in old])

    state[new + "pos"] = take("pos.weight")
    state[new + "ln_w"], state[new + "ln_b"] = take("ln.weight"), take("ln.bias")
    i = 0
    while old[0] + f"blocks.{i}.qkv.weight" in state:
        for dst, src, transpose in _LEGACY:
            state[new + f"blocks.{i}.{dst}"] = take(f"blocks.{i}.{src}", transpose)
        i += 1
