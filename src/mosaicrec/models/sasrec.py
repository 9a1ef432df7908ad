"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item sequence.

Item embeddings (scaled by sqrt(D)) plus learned absolute positions (indexed from the right,
so the most recent item always has the same position under left padding), embedding dropout,
``layers`` pre-norm transformer blocks with a causal mask, a final layer norm; item scores are
dot products with the (tied) item embeddings. Loss ``ce``: softmax over all items at every
position; ``sampled_ce``: softmax over the target and ``n_negatives`` uniform negatives shared by
the batch (the HSTU reproduction's choice; much cheaper on CPU); ``bce``: one uniformly sampled
negative per position, as in the paper. ``similarity: cosine`` scores by the cosine of the
L2-normalised sequence state and output item embedding divided by ``temperature`` in the loss
(the HSTU reproduction's SASRec on MovieLens; rankings use the plain cosine); ``dot`` (default)
is the paper's inner product.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mosaicrec.config import StrictModel
from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.base import ModelContext
from mosaicrec.models.layers.seq_base import SequentialIDModel, rows_by_length
from mosaicrec.models.layers.transformer import Encoder
from mosaicrec.registry import MODELS


class SASRecConfig(StrictModel):
    hidden: int = Field(64, ge=1)
    layers: int = Field(2, ge=1)
    heads: int = Field(1, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    attn_dropout: float | None = Field(None, ge=0.0, lt=1.0, description=(
        "dropout on attention weights (default: dropout); 0 is ~4x cheaper attention on CPU"))
    ffn_mult: int = Field(1, ge=1, description="FFN width = ffn_mult * hidden (the paper uses 1)")
    activation: Literal["gelu", "relu"] = "gelu"
    loss: Literal["ce", "sampled_ce", "bce"] = "ce"
    n_negatives: int = Field(256, ge=1, description="shared negatives per batch for loss sampled_ce")
    similarity: Literal["dot", "cosine"] = Field("dot", description=(
        "dot: inner product with the tied item embedding; cosine: both L2-normalised, logits / temperature"))
    temperature: float = Field(0.05, gt=0.0, description="softmax temperature of similarity cosine")


@MODELS.register("sasrec")
class SASRec(SequentialIDModel):
    Config = SASRecConfig
    causal = True
    serve_chunk_tokens = 4096  # serve_repr: cells (rows x columns) per chunk of rows

    def __init__(self, cfg: SASRecConfig, ctx: ModelContext) -> None:
        super().__init__(cfg, ctx, cfg.hidden)
        self.cfg: SASRecConfig = cfg
        self.pos_emb = nn.Embedding(ctx.max_len, cfg.hidden)
        self.emb_drop = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(cfg.hidden, cfg.layers, cfg.heads, cfg.dropout, causal=True,
                               ffn_mult=cfg.ffn_mult, activation=cfg.activation,
                               attn_dropout=cfg.attn_dropout)

    def sequence_states(self, batch: SeqBatch, last_only: bool = False) -> torch.Tensor:
        items = batch.items[:, -self.ctx.max_len:]  # [B, L]
        L = items.shape[1]
        pos = torch.arange(self.ctx.max_len - L, self.ctx.max_len, device=items.device)  # [L]
        x = self.item_emb(items) * math.sqrt(self.cfg.hidden) + self.pos_emb(pos)  # [B, L, D]
        return self.encoder(self.emb_drop(x), items != 0, last_only)  # [B, L or 1, D]

    def _unit(self, v: torch.Tensor) -> torch.Tensor:
        """``v`` [..., D] L2-normalised under ``similarity: cosine`` (a zero row stays 0), else as is."""
        return F.normalize(v, dim=-1) if self.cfg.similarity == "cosine" else v

    def item_vectors(self) -> torch.Tensor:
        return self._unit(super().item_vectors())  # [N+1, D]

    def logit_states(self, h: torch.Tensor) -> torch.Tensor:
        return self._unit(h) / self.cfg.temperature if self.cfg.similarity == "cosine" else h  # [P, D]

    def user_repr(self, batch: SeqBatch) -> torch.Tensor:
        return self._unit(self.sequence_states(batch, last_only=True)[:, -1])  # [B, D] (last block: last position only)

    def score(self, batch: SeqBatch) -> torch.Tensor:
        """[B, N+1] scores. In eval mode through :meth:`serve_repr` (equal to ``user_repr``,
        faster); the final product is float32 even under bf16 autocast (no bf16 score ties)."""
        h = self.user_repr(batch) if self.training else self.serve_repr(batch)  # [B, D]
        with torch.autocast(h.device.type, enabled=False):
            return h.float() @ self.item_vectors().float().T  # [B, N+1]

    def serve_repr(self, batch: SeqBatch) -> torch.Tensor:
        """[B, D] equal to ``user_repr(batch)`` in eval mode, computed faster for serving and
        evaluation: each left-padded row is moved to the left (same items, same positions counted
        from the right) so plain causal attention needs no padding mask, and the final block
        computes only the last position (:meth:`Encoder.forward_last_right`).

        Batches of more than ``serve_chunk_tokens`` cells run in chunks of rows of similar
        length (sorted by history length), each cut to its longest history: the activations of
        a chunk stay in the CPU caches (one [943, 50] batch: ~1.7x less time on one thread,
        docs/evaluation.md) and less padding is computed. Rows are independent, so only the
        float summation order can differ from one pass (differences ~1e-6, tested)."""
        items = batch.items[:, -self.ctx.max_len:]  # [B, L], left-padded
        n = (items != 0).sum(1)  # [B] history lengths
        return rows_by_length(items, n, self.serve_chunk_tokens, self.cfg.hidden, self._serve_rows)  # [B, D]

    def _serve_rows(self, items: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """:meth:`serve_repr` of left-padded ``items`` [B, L] with history lengths ``n`` [B]."""
        L = items.shape[1]
        col = torch.arange(L, device=items.device)  # [L]
        src = (col[None, :] + (L - n)[:, None]).clamp(max=L - 1)  # [B, L] left-padded column of each slot
        right = torch.where(col[None, :] < n[:, None], items.gather(1, src), 0)  # [B, L], right-padded
        pos = (col[None, :] + (self.ctx.max_len - n)[:, None]).clamp(max=self.ctx.max_len - 1)  # [B, L]
        x = self.item_emb(right) * math.sqrt(self.cfg.hidden) + self.pos_emb(pos)  # [B, L, D]
        return self._unit(self.encoder.forward_last_right(x, n))  # [B, D]

    def loss(self, batch: SeqBatch) -> torch.Tensor:
        if self.cfg.loss == "sampled_ce":
            return self.next_item_loss(batch, "sampled_ce", n_negatives=self.cfg.n_negatives)
        return self.next_item_loss(batch, self.cfg.loss)
