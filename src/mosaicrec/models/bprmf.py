"""BPR-MF (Rendle et al. 2009): user and item ID embeddings scored by dot product, BPR loss."""

from __future__ import annotations

import torch

from mosaicrec.models.base import ModelContext
from mosaicrec.models.cf.base import CFConfig, CFRecommender, bpr_loss, id_embeddings, l2_reg
from mosaicrec.registry import MODELS


class BPRMFConfig(CFConfig):
    pass


@MODELS.register("bprmf")
class BPRMF(CFRecommender):
    Config = BPRMFConfig

    def __init__(self, cfg: BPRMFConfig, ctx: ModelContext) -> None:
        super().__init__(cfg, ctx)
        self.user_emb, self.item_emb = id_embeddings(ctx.n_users, ctx.n_items, cfg.dim)

    def forward_all(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_emb.weight, self.item_emb.weight  # [U, D], [N+1, D]

    def bpr_terms(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        u, p, n = self.user_emb(users), self.item_emb(pos), self.item_emb(neg)  # [B, D] each
        return bpr_loss((u * p).sum(-1), (u * n).sum(-1)) + self.cfg.reg_weight * l2_reg(u, p, n)
