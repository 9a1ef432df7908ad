"""Building blocks shared by the cross-domain sequential models (HAF-VT, LLM-EMF, C2DSR).

Per-domain views. A training or evaluation window is ONE left-padded merged sequence
``items [B, L]`` with per-step ``domains [B, L]`` (S^{X+Y+...}). The per-domain sequence S^d is
derived from the same window: :func:`domain_view` moves the domain-``d`` items to the right end
(order kept, left padding), an encoder runs over that compact sequence, and
:func:`align_to_merged` maps its states back to merged positions: at merged step ``t`` the
d-view is the state of the last domain-``d`` item at or before ``t`` (a learned "empty" vector
when the user has not seen any domain-``d`` item yet). So every merged step knows what the user
had seen in every domain up to then, for any number of domains, and nothing after ``t`` leaks.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def domain_view(items: torch.Tensor, domains: torch.Tensor, d: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The domain-``d`` subsequence of each merged window, left-padded, plus the alignment.

    Returns ``compact [B, L]`` (domain-d item ids right-aligned, 0 elsewhere), ``cols [B, L]``
    (the merged column each compact entry came from: encoders use it as the position, so a
    state never depends on how many domain-d items come later), ``index [B, L]`` (column of
    ``compact`` holding the last domain-d item at or before each merged step) and ``seen [B, L]``
    (False where no domain-d item has occurred yet).
    """
    length = items.shape[1]
    is_d = (items != 0) & (domains == d)  # [B, L]
    order = torch.sort(is_d.to(torch.int8), dim=1, stable=True).indices  # [B, L] non-d first
    compact = torch.gather(items * is_d, 1, order)  # [B, L]
    count = is_d.cumsum(1)  # [B, L] domain-d items up to and including t
    n_d = count[:, -1:]  # [B, 1]
    index = (length - n_d + count - 1).clamp(min=0)  # [B, L]
    return compact, order, index, count > 0


def trim_view(compact: torch.Tensor, cols: torch.Tensor, index: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut the leading columns of a :func:`domain_view` that are padding in every row.

    ``compact``/``cols`` lose them (the encoder's positions come from ``cols``, so states do
    not change) and ``index`` is shifted to the shorter sequence. At least one column is kept.
    """
    length = compact.shape[1]
    keep = max(int((compact != 0).sum(1).max()), 1) if compact.numel() else 1
    cut = length - keep
    return compact[:, cut:], cols[:, cut:], (index - cut).clamp(min=0)  # [B, keep] x2, [B, L]


def align_to_merged(states: torch.Tensor, index: torch.Tensor, seen: torch.Tensor,
                    empty: torch.Tensor) -> torch.Tensor:
    """Gather per-domain encoder states ``[..., B, L', D]`` at merged steps -> ``[..., B, L, D]``.

    ``empty`` (``[D]``, or ``[..., D]`` one per leading index) where nothing is seen yet.
    """
    lead = states.shape[:-3]
    idx = index.unsqueeze(-1).expand(*lead, *index.shape, states.shape[-1])  # [..., B, L, D]
    out = torch.gather(states, -2, idx)  # [..., B, L, D]
    fill = (empty if empty.dim() == 1 else empty[..., None, None, :]).to(out.dtype)  # [D] or [..., 1, 1, D]
    return torch.where(seen.unsqueeze(-1), out, fill)  # [..., B, L, D]


class Block(nn.Module):
    """Pre-LN transformer block with torch's fused attention (F.scaled_dot_product_attention)."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden={hidden} must be divisible by heads={heads}")
        self.heads, self.dropout = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(4 * hidden, hidden))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        b, length, hidden = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # 3x[B, H, L, Dh]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)  # [B, H, L, Dh]
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, length, hidden)))  # [B, L, D]
        return x + self.drop(self.ffn(self.ln2(x)))  # [B, L, D]


class CausalEncoder(nn.Module):
    """SASRec-style causal self-attention over a left-padded sequence of item vectors.

    Learned positions are right-aligned (the last column of the window has position max_len-1);
    ``cols [B, L]`` overrides the column of each entry (per-domain views pass the merged column
    of a merged window of length ``span``).
    A query attends to real keys at or before it; padding queries attend only to themselves,
    so no row is fully masked (no NaN) and padding never influences real positions.
    """

    def __init__(self, hidden: int, layers: int, heads: int, dropout: float, max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.pos = nn.Embedding(max_len, hidden)
        self.blocks = nn.ModuleList(Block(hidden, heads, dropout) for _ in range(layers))
        self.drop = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cols: torch.Tensor | None = None,
                span: int | None = None) -> torch.Tensor:
        """``span`` = length of the window ``cols`` index into (default: this sequence's length)."""
        length = x.shape[1]
        span = length if span is None else span
        if max(length, span) > self.max_len:
            raise ValueError(f"sequence length {max(length, span)} exceeds max_len {self.max_len}")
        if cols is None:
            cols = torch.arange(length, device=x.device)  # [L]
        pos = cols + (self.max_len - span)  # [L] or [B, L]
        h = self.drop(x + self.pos(pos)) * mask.unsqueeze(-1)  # [B, L, D]
        allowed = mask.unsqueeze(1) & torch.ones(length, length, dtype=torch.bool, device=x.device).tril()  # [B, L, L]
        allowed = (allowed | torch.eye(length, dtype=torch.bool, device=x.device)).unsqueeze(1)  # [B, 1, L, L]
        for block in self.blocks:
            h = block(h, allowed)  # [B, L, D]
        return self.ln(h) * mask.unsqueeze(-1)  # [B, L, D]


class FrozenFeature(nn.Module):
    """A frozen [N+1, d] feature table projected to ``hidden``; rows without input use a learned vector.

    The raw features are L2-normalised (CLIP/sentence embeddings are compared by cosine), then
    ``Linear -> LayerNorm``. ``present`` is the feature store's mask (True = input present);
    absent rows (e.g. items without an image) get the learned ``missing`` vector instead of a
    projection of their (zero) row.
    """

    table: torch.Tensor
    present: torch.Tensor

    def __init__(self, table: np.ndarray, present: np.ndarray | None, hidden: int, dropout: float) -> None:
        super().__init__()
        t = torch.from_numpy(np.array(table, dtype=np.float32))  # [N+1, d] (a copy: tables may be memory-mapped)
        t = F.normalize(t, dim=-1)
        self.register_buffer("table", t, persistent=False)
        keep = np.ones(len(t), dtype=bool) if present is None else np.asarray(present, dtype=bool).copy()
        if keep.shape != (len(t),):
            raise ValueError(f"feature mask shape {keep.shape} does not match table rows {len(t)}")
        keep[0] = False
        self.register_buffer("present", torch.as_tensor(keep), persistent=False)
        self.proj = nn.Sequential(nn.Linear(t.shape[1], hidden), nn.LayerNorm(hidden), nn.Dropout(dropout))
        self.missing = nn.Parameter(torch.randn(hidden) * 0.02)

    def forward(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """``[*ids.shape, D]`` projected rows of ``ids`` (every row ``[N+1, D]`` when None); id 0 -> zeros.

        Projecting only the rows a step needs (the items of the batch, its targets and sampled
        negatives) instead of the whole catalogue is what keeps a training step cheap.
        """
        if ids is None:
            ids = torch.arange(len(self.table), device=self.table.device)  # [N+1]
        out = self.proj(self.table[ids])  # [*, D]
        out = torch.where(self.present[ids].unsqueeze(-1), out, self.missing)  # [*, D]
        return out * (ids != 0).unsqueeze(-1).to(out.dtype)  # [*, D] padding rows = 0


class AttentionFusion(nn.Module):
    """Additive attention over K candidate vectors, with one learned query per ``group``.

    ``w_k = softmax_k(q_g . tanh(W c_k))``; the weights depend on the candidates (so on the user
    and the step) and on the group (e.g. the target domain).
    """

    def __init__(self, hidden: int, groups: int) -> None:
        super().__init__()
        self.key = nn.Linear(hidden, hidden)
        self.query = nn.Parameter(torch.randn(groups, hidden) * 0.1)

    def forward(self, cands: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.tanh(self.key(cands)) @ self.query[group]  # [..., K]
        w = torch.softmax(scores, dim=-1)  # [..., K]
        return (w.unsqueeze(-1) * cands).sum(-2), w  # [..., D], [..., K]


def local_index(item_domain: np.ndarray, n_domains: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-domain candidate item ids and each item's position within its domain's list."""
    cands, local = [], np.zeros(len(item_domain), dtype=np.int64)
    for d in range(n_domains):
        ids = np.flatnonzero(item_domain == d)
        local[ids] = np.arange(len(ids))
        cands.append(torch.as_tensor(ids, dtype=torch.long))
    return cands, torch.as_tensor(local)


def example_context(n_items: int, max_len: int, features: dict[str, int] | None = None,
                    n_domains: int = 2, n_users: int = 6, seed: int = 0):
    """A toy ModelContext with random item features and training pairs (registry tests hook)."""
    from mosaicrec.models.base import ModelContext

    rng = np.random.default_rng(seed)
    item_domain = np.concatenate([[-1], np.arange(n_items) * n_domains // n_items]).astype(np.int8)
    feats = {}
    for name, dim in (features or {}).items():
        feats[name] = rng.normal(size=(n_items + 1, dim)).astype(np.float32)
        feats[name][0] = 0
    pairs = np.stack([rng.integers(0, n_users, 4 * n_items), rng.integers(1, n_items + 1, 4 * n_items)], 1)
    return ModelContext(n_items=n_items, n_users=n_users, n_domains=n_domains, item_domain=item_domain,
                        max_len=max_len, domains=[f"D{d}" for d in range(n_domains)], features=feats,
                        train_pairs=pairs)
