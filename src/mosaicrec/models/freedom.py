"""FREEDOM (Zhou & Shen, ACM MM 2023): a frozen item-item kNN graph built from the modality
features and a denoised (degree-sensitive pruned) user-item graph.

Item vectors: LightGCN over the pruned user-item graph on ID embeddings, plus the item ID
embeddings propagated ``n_mm_layers`` hops over the frozen kNN graph. Loss: BPR on the fused
vectors plus ``modal_weight`` x a BPR loss per modality that scores the users' vectors against a
linear projection of that modality's features."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from mosaicrec.models.base import ModelContext
from mosaicrec.models.cf.base import (
    CFConfig,
    CFRecommender,
    bpr_loss,
    graph_cache_dir,
    knn_weights,
    select_features,
)
from mosaicrec.models.cf.graph import SparseOp, item_knn_graph, propagate
from mosaicrec.registry import MODELS


class FREEDOMConfig(CFConfig):
    features: list[str] | None = Field(None, description="feature names to use (default: all)")
    n_ui_layers: int = Field(2, ge=0)
    n_mm_layers: int = Field(1, ge=0)
    knn_k: int = Field(10, ge=1)
    knn_weights: dict[str, float] | None = Field(None, description="per-feature graph weights (default equal)")
    edge_drop: float = Field(0.8, ge=0.0, lt=1.0, description="share of user-item edges pruned each epoch")
    modal_weight: float = Field(1e-4, ge=0.0, description="weight of the per-modality BPR losses")


@MODELS.register("freedom")
class FREEDOM(CFRecommender):
    Config = FREEDOMConfig
    cfg: FREEDOMConfig

    def __init__(self, cfg: FREEDOMConfig, ctx: ModelContext) -> None:
        super().__init__(cfg, ctx)
        self.edge_drop = cfg.edge_drop
        self._feats = select_features(ctx, cfg.features, "freedom")
        self.names = list(self._feats)
        for i, f in enumerate(self._feats.values()):
            self.register_buffer(f"feat_{i}", torch.from_numpy(f), persistent=False)  # [N+1, d_m]
        self.user_emb = nn.Embedding(ctx.n_users, cfg.dim)
        self.item_emb = nn.Embedding(ctx.n_items + 1, cfg.dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        self.proj = nn.ModuleList(nn.Linear(f.shape[1], cfg.dim) for f in self._feats.values())
        self._mm_adj: SparseOp | None = None

    def mm_adj(self) -> SparseOp:
        """The frozen item-item graph (built lazily on first use, cached by content hash)."""
        if self._mm_adj is None:
            w = knn_weights(self.names, self.cfg.knn_weights)
            self._mm_adj = SparseOp(item_knn_graph(self._feats, self.cfg.knn_k, w, graph_cache_dir(self.ctx)))
        self._mm_adj = self._mm_adj.to(self.item_emb.weight.device)
        return self._mm_adj

    def forward_all(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.item_emb.weight  # [N+1, D]
        for _ in range(self.cfg.n_mm_layers):
            h = self.mm_adj() @ h  # [N+1, D]
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])  # [U+N+1, D]
        out = propagate(self.train_adj() if train else self.full_adj, ego, self.cfg.n_ui_layers)
        return out[: self.n_users], out[self.n_users:] + h

    def bpr_terms(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        u_all, i_all = self.forward_all(train=True)
        u = u_all[users]  # [B, D]
        loss = bpr_loss((u * i_all[pos]).sum(-1), (u * i_all[neg]).sum(-1))
        for i, proj in enumerate(self.proj):
            feat = getattr(self, f"feat_{i}")
            fp, fn = proj(feat[pos]), proj(feat[neg])  # [B, D]
            loss = loss + self.cfg.modal_weight * bpr_loss((u * fp).sum(-1), (u * fn).sum(-1))
        return loss
