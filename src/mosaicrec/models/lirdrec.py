"""LIRDRec (Zhou, Zhang, Niyato & Shen 2025): item representations learned directly from
multimodal features, with no item ID embedding.

Branches: one per modality (``Linear(d_m, 4d) -> LeakyReLU -> Linear(4d, d)`` over the frozen
features) plus a shared branch fed with the DCT-II of the features (``dct``: ``1d`` per item as
in the official code, ``2d`` over items x features as in the paper, ``none`` for the ablation).
Each branch has a free user embedding; node inputs are the L2-normalised branch blocks,
concatenated, propagated by LightGCN (sum of layers 0..L) on the user-item graph; items also take
``n_mm_layers`` hops over the frozen item-item kNN graph. Users are fused by Progressive Weight
Copying (``pwc``; without it the branches are weighted equally). Loss: BPR with one sampled
negative + ``reg_weight * (mean U^2 + mean I^2)``. ``with_ids`` adds an item ID embedding to the
shared branch (the paper's "with IDs" ablation).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.base import ModelContext
from mosaicrec.models.cf.base import (
    CFConfig,
    CFRecommender,
    bpr_loss,
    graph_cache_dir,
    knn_weights,
    select_features,
)
from mosaicrec.models.cf.dct import multimodal_transform
from mosaicrec.models.cf.graph import SparseOp, item_knn_graph, propagate
from mosaicrec.models.cf.pwc import PWC
from mosaicrec.registry import MODELS


class LIRDRecConfig(CFConfig):
    features: list[str] | None = Field(None, description="modalities to use (default: all features)")
    dct: Literal["1d", "2d", "none"] = Field("1d", description="shared-branch transform")
    pwc: bool = Field(True, description="progressive weight copying (False: equal branch weights)")
    with_ids: bool = Field(False, description="add an item ID embedding to the shared branch")
    n_ui_layers: int = Field(2, ge=0)
    n_mm_layers: int = Field(1, ge=0)
    knn_k: int = Field(10, ge=1)
    knn_weights: dict[str, float] | None = Field(None, description="per-feature graph weights (default equal)")
    edge_drop: float = Field(0.0, ge=0.0, lt=1.0, description="degree-sensitive edge pruning per epoch")
    pwc_w1: float = Field(0.5, gt=0.0, lt=1.0, description="initial weight of the scorer attention")
    pwc_base: float = Field(0.9, gt=0.0, le=1.0, description="per-epoch decay base of w1")
    reg_weight: float = Field(1e-4, ge=0)


def encoder(d_in: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, 4 * dim), nn.LeakyReLU(), nn.Linear(4 * dim, dim, bias=False))


@MODELS.register("lirdrec")
class LIRDRec(CFRecommender):
    Config = LIRDRecConfig
    cfg: LIRDRecConfig
    content_based = True
    shared_in: torch.Tensor  # buffer [N+1, sum d_m]

    def __init__(self, cfg: LIRDRecConfig, ctx: ModelContext) -> None:
        super().__init__(cfg, ctx)
        self.edge_drop = cfg.edge_drop
        self._feats = select_features(ctx, cfg.features, "lirdrec")
        self.names = list(self._feats)
        tensors = [torch.from_numpy(f) for f in self._feats.values()]
        for i, t in enumerate(tensors):
            self.register_buffer(f"feat_{i}", t, persistent=False)  # [N+1, d_m]
        shared = multimodal_transform(tensors, cfg.dct)  # [N+1, sum d_m]
        self.register_buffer("shared_in", shared, persistent=False)
        d = cfg.dim
        self.encoders = nn.ModuleList([encoder(t.shape[1], d) for t in tensors] + [encoder(shared.shape[1], d)])
        n_branches = len(self.encoders)
        self.user_prefs = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_branches, ctx.n_users, d)))
        self.item_ids = nn.Embedding(ctx.n_items + 1, d) if cfg.with_ids else None
        if self.item_ids is not None:
            nn.init.xavier_uniform_(self.item_ids.weight)
        self.pwc = PWC(ctx.n_users, n_branches, d, cfg.pwc_w1, cfg.pwc_base) if cfg.pwc else None
        self._mm_adj: SparseOp | None = None

    # ----- pieces -----------------------------------------------------------------------------
    def item_blocks(self) -> list[torch.Tensor]:
        """Per-branch item vectors [N+1, D] from the features alone (+ IDs when ``with_ids``)."""
        inputs = [getattr(self, f"feat_{i}") for i in range(len(self.names))] + [self.shared_in]
        blocks = [enc(x) for enc, x in zip(self.encoders, inputs, strict=True)]  # [N+1, D] each
        if self.item_ids is not None:
            blocks[-1] = blocks[-1] + self.item_ids.weight
        return blocks

    def mm_adj(self) -> SparseOp:
        if self._mm_adj is None:
            w = knn_weights(self.names, self.cfg.knn_weights)
            self._mm_adj = SparseOp(item_knn_graph(self._feats, self.cfg.knn_k, w, graph_cache_dir(self.ctx)))
        self._mm_adj = self._mm_adj.to(self.shared_in.device)
        return self._mm_adj

    def _fuse_users(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        if self.pwc is not None:
            return self.pwc(blocks)  # [U, B*D]
        return torch.cat(blocks, dim=1) / len(blocks)  # [U, B*D]

    def forward_all(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        items = self.item_blocks()
        x = torch.cat([F.normalize(torch.cat([self.user_prefs[b], items[b]]), dim=-1)
                       for b in range(len(items))], dim=1)  # [U+N+1, B*D]
        rep = propagate(self.train_adj() if train else self.full_adj, x, self.cfg.n_ui_layers, reduce="sum")
        users, item_rep = rep[: self.n_users], rep[self.n_users:]  # [U, B*D], [N+1, B*D]
        h = item_rep
        for _ in range(self.cfg.n_mm_layers):
            h = self.mm_adj() @ h  # [N+1, B*D]
        d = self.cfg.dim
        user_blocks = [users[:, b * d:(b + 1) * d] for b in range(len(items))]  # [U, D] each
        return self._fuse_users(user_blocks), item_rep + h

    # ----- training ---------------------------------------------------------------------------
    def bpr_terms(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        u_all, i_all = self.forward_all(train=True)
        u = u_all[users]  # [B, B*D]
        loss = bpr_loss((u * i_all[pos]).sum(-1), (u * i_all[neg]).sum(-1))
        return loss + self.cfg.reg_weight * (u_all.pow(2).mean() + i_all.pow(2).mean())

    def on_epoch_start(self, epoch: int) -> None:
        """``epoch`` is 0-based (the engine's); the PWC schedule uses the official 1-based count."""
        super().on_epoch_start(epoch)
        if self.pwc is not None:
            self.pwc.step_epoch(epoch + 1)

    def explain(self, batch: SeqBatch) -> dict[str, torch.Tensor]:
        """Per-user branch attention [B, M+1] (modalities in order, then the shared DCT branch)."""
        if self.pwc is None:
            return {}
        with torch.no_grad():
            x = torch.cat([F.normalize(torch.cat([self.user_prefs[b], blk]), dim=-1)
                           for b, blk in enumerate(self.item_blocks())], dim=1)
            rep = propagate(self.full_adj, x, self.cfg.n_ui_layers, reduce="sum")[: self.n_users]
            d = self.cfg.dim
            att = self.pwc.attention([rep[:, b * d:(b + 1) * d] for b in range(len(self.encoders))])
        return {"branch_attention": att[batch.users]}  # [B, M+1]
