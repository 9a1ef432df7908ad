"""Base class of ID-embedding sequential models (SASRec, GRU4Rec, BERT4Rec).

Subclasses implement :meth:`sequence_states` ([B, L, D] hidden state at every position);
the user vector is the state at the last (most recent, rightmost) position and items are
scored against the item embedding table (tied input/output embeddings).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from mosaicrec.config import StrictModel
from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.base import ModelContext, Recommender
from mosaicrec.models.layers.losses import full_ce, sampled_bce, sampled_ce


def rows_by_length(items: torch.Tensor, n: torch.Tensor, cells: int, dim: int,
                   fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """[B, dim] = ``fn(items, n)`` for left-padded ``items`` [B, L] with ``n`` [B] tokens per row,
    computed in chunks of at most ``cells`` (rows x columns) when the batch is larger: rows sorted
    by length (shortest first), each chunk cut to its longest row, results put back in the
    original order. ``fn`` must treat rows independently; then only the float summation order
    differs from one pass, while the activations of a chunk stay in the CPU caches and less
    padding is computed (docs/evaluation.md)."""
    B, L = items.shape
    per = max(1, cells // max(L, 1))  # rows per chunk
    if per >= B:
        return fn(items, n)
    order = torch.argsort(n, stable=True)  # [B] shortest first
    out = torch.empty(B, dim, device=items.device)  # [B, D]
    for s in range(0, B, per):
        rows = order[s:s + per]  # [b]
        w = max(1, int(n[rows].max()))  # the chunk's longest row
        out[rows] = fn(items[rows, L - w:], n[rows]).to(out.dtype)  # [b, D]
    return out


#: ``ce``: softmax over all items; ``sampled_ce``: softmax over the target and shared uniform
#: negatives; ``bce``: one sampled negative per position.
LOSSES: dict[str, Any] = {"ce": full_ce, "bce": sampled_bce, "sampled_ce": sampled_ce}


class SequentialIDModel(Recommender):
    #: True when the state at position t depends only on items up to t.
    causal: ClassVar[bool] = True

    def __init__(self, cfg: StrictModel, ctx: ModelContext, dim: int, extra_items: int = 0) -> None:
        super().__init__(cfg, ctx)
        self.item_emb = nn.Embedding(ctx.n_items + 1 + extra_items, dim, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=dim ** -0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def sequence_states(self, batch: SeqBatch) -> torch.Tensor:
        raise NotImplementedError

    def item_vectors(self) -> torch.Tensor:
        return self.item_emb.weight[: self.ctx.n_items + 1]  # [N+1, D]

    def user_repr(self, batch: SeqBatch) -> torch.Tensor:
        return self.sequence_states(batch)[:, -1]  # [B, D]

    def logit_states(self, h: torch.Tensor) -> torch.Tensor:
        """States as multiplied with :meth:`item_vectors` by the training loss (identity here;
        a model scoring by temperature-scaled cosine normalises and scales them)."""
        return h

    def next_item_loss(self, batch: SeqBatch, kind: str, **kwargs: Any) -> torch.Tensor:
        """Loss of predicting ``batch.targets`` [B, L] (0 = no target) from the states."""
        h = self.sequence_states(batch)  # [B, L, D]
        sel = batch.targets > 0  # [B, L]
        return LOSSES[kind](self.logit_states(h[sel]), self.item_vectors(), batch.targets[sel],
                            **kwargs)  # [P, D] -> scalar
