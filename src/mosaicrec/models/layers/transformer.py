"""A pre-norm transformer encoder on torch's fused attention (``F.scaled_dot_product_attention``).

Left padding: real items sit at the right end of each row. Attention masks never leave a query
row without any key (a padding query may always attend to itself), so no NaN appears.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


def attention_mask(pad_mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """[B, 1, L, L] bool: True where query i may attend to key j.

    Keys must be real items (``pad_mask`` True); with ``causal`` also j <= i. Every query
    may attend to itself so that fully padded rows stay finite.
    """
    B, L = pad_mask.shape
    allowed = pad_mask[:, None, None, :].expand(B, 1, L, L)  # [B, 1, L, L] key is real
    if causal:
        tri = torch.ones(L, L, dtype=torch.bool, device=pad_mask.device).tril()  # [L, L]
        allowed = allowed & tri
    eye = torch.eye(L, dtype=torch.bool, device=pad_mask.device)  # [L, L]
    return allowed | eye  # [B, 1, L, L]


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        """``dropout``: on the attention weights (training only)."""
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """[B, L, D] -> [B, L, D]; with ``last_only`` only the last query row: [B, 1, D]."""
        B, L, D = x.shape
        H, Dh = self.heads, D // self.heads
        if last_only:  # keys/values of every position, the query of the last one only
            kv = F.linear(x, self.qkv.weight[D:], self.qkv.bias[D:]).view(B, L, 2, H, Dh)  # [B, L, 2, H, Dh]
            k, v = (t.transpose(1, 2) for t in kv.unbind(2))  # [B, H, L, Dh]
            q = F.linear(x[:, -1:], self.qkv.weight[:D], self.qkv.bias[:D]).view(B, 1, H, Dh).transpose(1, 2)  # [B, H, 1, Dh]
            mask, L = mask[:, :, -1:], 1  # [B, 1, 1, L]
        else:
            q, k, v = self.qkv(x).view(B, L, 3, H, Dh).unbind(2)  # 3 x [B, L, H, Dh]
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, L, Dh]
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # [B, H, L, Dh]
        return self.out(y.transpose(1, 2).reshape(B, L, D))  # [B, L, D]


class Block(nn.Module):
    """Pre-norm block: x + attn(LN(x)); x + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, dropout: float, ffn_mult: int = 1,
                 activation: str = "gelu", attn_dropout: float | None = None) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout if attn_dropout is None else attn_dropout)
        self.ln2 = nn.LayerNorm(dim)
        act: nn.Module = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), act, nn.Dropout(dropout),
                                 nn.Linear(ffn_mult * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """[B, L, D] -> [B, L, D], or [B, 1, D] (the last position) with ``last_only``."""
        h = self.attn(self.ln1(x), mask, last_only)  # [B, L or 1, D]
        x = (x[:, -1:] if last_only else x) + self.drop(h)  # [B, L or 1, D]
        return x + self.drop(self.ffn(self.ln2(x)))  # [B, L or 1, D]

    # ------------------------------------------------------------ inference-only fast paths (serving)
    def forward_causal(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` with a plain causal mask (eval mode), for RIGHT-padded rows: every real
        query sees exactly the real keys up to it, and the fused kernel skips the masked half."""
        B, L, D = x.shape
        q, k, v = self.attn.qkv(self.ln1(x)).view(B, L, 3, self.attn.heads, D // self.attn.heads).unbind(2)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True)  # [B, H, L, Dh]
        x = x + self.attn.out(y.transpose(1, 2).reshape(B, L, D))  # [B, L, D]
        return x + self.ffn(self.ln2(x))  # [B, L, D]

    def forward_one(self, x: torch.Tensor, keys: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        """[B, D]: ``forward``'s output at column ``at[b]`` of each row (eval mode), computing only
        that query; ``keys`` [B, L] bool = the keys it may attend to (its row of the attention mask)."""
        B, L, D = x.shape
        H = self.attn.heads
        rows = torch.arange(B, device=x.device)  # [B]
        h = self.ln1(x)  # [B, L, D]
        w, b = self.attn.qkv.weight, self.attn.qkv.bias  # [3D, D], [3D]: q, k, v stacked
        q = F.linear(h[rows, at], w[:D], b[:D]).view(B, H, 1, D // H)  # [B, H, 1, Dh]
        k, v = F.linear(h, w[D:], b[D:]).view(B, L, 2, H, D // H).unbind(2)  # 2 x [B, L, H, Dh]
        y = F.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=keys[:, None, None, :])  # [B, H, 1, Dh]
        one = x[rows, at] + self.attn.out(y.reshape(B, D))  # [B, D]
        return one + self.ffn(self.ln2(one))  # [B, D]


class Encoder(nn.Module):
    """A stack of blocks with a final layer norm; padding rows are zeroed after each block.

    ``attn_dropout`` (default: ``dropout``) is the dropout on attention weights. On CPU it is
    the most expensive part of a block: with it, ``scaled_dot_product_attention`` falls back
    to its unfused path and draws a [B, H, L, L] Bernoulli mask (about 4x the attention cost
    at L=200, measured in docs/training.md); 0 keeps the fused kernel.
    """

    def __init__(self, dim: int, layers: int, heads: int, dropout: float, causal: bool,
                 ffn_mult: int = 1, activation: str = "gelu", attn_dropout: float | None = None) -> None:
        super().__init__()
        self.causal = causal
        self.blocks = nn.ModuleList(Block(dim, heads, dropout, ffn_mult, activation, attn_dropout)
                                    for _ in range(layers))
        self.ln = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """[B, L, D] states; with ``last_only`` [B, 1, D], the last position's state only.

        ``last_only`` is exact (the same numbers as ``forward(...)[:, -1:]``): every block but the
        last runs in full (its keys/values feed the last query), and the last block computes the
        query, attention and FFN of the last position alone -- the cheap path for scoring.
        """
        mask = attention_mask(pad_mask, self.causal)  # [B, 1, L, L]
        keep = pad_mask.unsqueeze(-1).to(x.dtype)  # [B, L, 1]
        x = x * keep
        for i, block in enumerate(self.blocks):
            last = last_only and i == len(self.blocks) - 1
            x = block(x, mask, last) * (keep[:, -1:] if last else keep)  # [B, L or 1, D]
        return self.ln(x)  # [B, L or 1, D]

    def forward_last_right(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, D]: the final state at each row's last real position, for a causal encoder whose
        rows are RIGHT-padded (row b holds its ``lengths[b]`` items in columns 0..n-1), in eval mode.

        Equal to ``forward`` on the same rows left-padded, at the last column: a real query sees
        the real keys before it either way. Faster for serving: the blocks need no padding mask
        (plain causal attention, whose fused kernel skips the masked half) and the final block
        computes only the last query (:meth:`Block.forward_one`).
        """
        if self.training or not self.causal:
            raise RuntimeError("forward_last_right is for causal encoders in eval mode (serving)")
        blocks = cast(list[Block], list(self.blocks))
        for block in blocks[:-1]:
            x = block.forward_causal(x)  # [B, L, D]; columns >= length hold unused values
        last = (lengths - 1).clamp(min=0)  # [B]
        keys = torch.arange(x.shape[1], device=x.device)[None, :] <= last[:, None]  # [B, L]
        return self.ln(blocks[-1].forward_one(x, keys, last))  # [B, D]
