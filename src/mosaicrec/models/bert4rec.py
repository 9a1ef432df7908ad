"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional transformer trained with the cloze task.

The item table has one extra row, the [MASK] token with id N+1. Training: the window's
sequence (the history shifted by one so that it ends with the last target) has every
position that holds a training target replaced by [MASK] with probability ``mask_prob`` (at
least one per row); the loss is cross-entropy over all items 1..N at the masked positions.
Evaluation: [MASK] is appended after the history (the oldest item drops out to keep
``max_len``) and its output state scores the items.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from mosaicrec.config import StrictModel
from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.base import ModelContext
from mosaicrec.models.layers.losses import full_ce
from mosaicrec.models.layers.seq_base import SequentialIDModel, rows_by_length
from mosaicrec.models.layers.transformer import Encoder
from mosaicrec.registry import MODELS


class BERT4RecConfig(StrictModel):
    hidden: int = Field(64, ge=1)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    attn_dropout: float | None = Field(None, ge=0.0, lt=1.0, description=(
        "dropout on attention weights (default: dropout); 0 is ~4x cheaper attention on CPU"))
    ffn_mult: int = Field(4, ge=1)
    mask_prob: float = Field(0.2, gt=0.0, le=1.0)


@MODELS.register("bert4rec")
class BERT4Rec(SequentialIDModel):
    Config = BERT4RecConfig
    causal = False

    def __init__(self, cfg: BERT4RecConfig, ctx: ModelContext) -> None:
        super().__init__(cfg, ctx, cfg.hidden, extra_items=1)
        self.cfg: BERT4RecConfig = cfg
        self.mask_id = ctx.n_items + 1
        self.pos_emb = nn.Embedding(ctx.max_len, cfg.hidden)
        self.emb_drop = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(cfg.hidden, cfg.layers, cfg.heads, cfg.dropout, causal=False,
                               ffn_mult=cfg.ffn_mult, activation="gelu",
                               attn_dropout=cfg.attn_dropout)
        self.head = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(), nn.LayerNorm(cfg.hidden))

    eval_chunk_tokens = 8192  # user_repr in eval mode: cells (rows x columns) per chunk of rows

    def encode(self, items: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """[B, L, D] output states, or [B, 1, D] of the last position with ``last_only`` (exact:
        the last block computes the last query only, :meth:`Encoder.forward`)."""
        items = items[:, -self.ctx.max_len:]  # [B, L]
        L = items.shape[1]
        pos = torch.arange(self.ctx.max_len - L, self.ctx.max_len, device=items.device)  # [L]
        x = self.item_emb(items) * math.sqrt(self.cfg.hidden) + self.pos_emb(pos)  # [B, L, D]
        return self.head(self.encoder(self.emb_drop(x), items != 0, last_only))  # [B, L or 1, D]

    def sequence_states(self, batch: SeqBatch) -> torch.Tensor:
        return self.encode(batch.items)  # [B, L, D]

    def user_repr(self, batch: SeqBatch) -> torch.Tensor:
        """[B, D]: the state of [MASK] appended after the history. In eval mode, batches of more
        than ``eval_chunk_tokens`` cells run in chunks of rows of similar length, each cut to its
        longest sequence (left padding only: the same numbers up to float summation order), so
        that the activations stay in the CPU caches."""
        mask_col = torch.full_like(batch.items[:, :1], self.mask_id)  # [B, 1]
        seq = torch.cat([batch.items[:, 1:], mask_col], dim=1)[:, -self.ctx.max_len:]  # [B, L]
        if self.training:
            return self.encode(seq, last_only=True)[:, -1]  # [B, D]
        n = (seq != 0).sum(1)  # [B] tokens per row ([MASK] included)
        return rows_by_length(seq, n, self.eval_chunk_tokens, self.cfg.hidden,
                              lambda rows, _: self.encode(rows, last_only=True)[:, -1])  # [B, D]

    def loss(self, batch: SeqBatch) -> torch.Tensor:
        seq = torch.cat([batch.items[:, 1:], batch.targets[:, -1:]], dim=1)  # [B, L] history + last target
        maskable = batch.targets > 0  # [B, L] positions holding a training target
        chosen = (torch.rand(seq.shape, device=seq.device) < self.cfg.mask_prob) & maskable  # [B, L]
        # Rows with no masked position mask their last maskable one (right-most, most recent).
        none = ~chosen.any(1) & maskable.any(1)  # [B]
        last = (maskable.long() * torch.arange(seq.shape[1], device=seq.device)).argmax(1)  # [B]
        chosen[none, last[none]] = True
        inputs = torch.where(chosen, torch.full_like(seq, self.mask_id), seq)  # [B, L]
        h = self.encode(inputs)  # [B, L, D]
        return full_ce(h[chosen], self.item_vectors(), seq[chosen])  # [P, D] -> scalar
