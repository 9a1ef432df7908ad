"""LightGCN (He et al. 2020): ID embeddings propagated over the normalised user-item graph, mean
of layers 0..L, BPR loss with L2 on the layer-0 embeddings of the batch."""

from __future__ import annotations

import torch
from pydantic import Field

from mosaicrec.models.base import ModelContext
from mosaicrec.models.cf.base import CFConfig, CFRecommender, bpr_loss, id_embeddings, l2_reg
from mosaicrec.models.cf.graph import propagate
from mosaicrec.registry import MODELS


class LightGCNConfig(CFConfig):
    n_layers: int = Field(2, ge=0, description="propagation layers L")


@MODELS.register("lightgcn")
class LightGCN(CFRecommender):
    Config = LightGCNConfig
    cfg: LightGCNConfig

    def __init__(self, cfg: LightGCNConfig, ctx: ModelContext) -> None:
        super().__init__(cfg, ctx)
        self.user_emb, self.item_emb = id_embeddings(ctx.n_users, ctx.n_items, cfg.dim)

    def forward_all(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])  # [U+N+1, D]
        out = propagate(self.train_adj() if train else self.full_adj, ego, self.cfg.n_layers)  # [U+N+1, D]
        return out[: self.n_users], out[self.n_users:]

    def bpr_terms(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        u_all, i_all = self.forward_all(train=True)
        u, p, n = u_all[users], i_all[pos], i_all[neg]  # [B, D] each
        reg = l2_reg(self.user_emb(users), self.item_emb(pos), self.item_emb(neg))
        return bpr_loss((u * p).sum(-1), (u * n).sum(-1)) + self.cfg.reg_weight * reg
