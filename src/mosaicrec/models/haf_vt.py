"""HAF-VT: hierarchical attention fusion of visual and textual representations (Wu et al., 2025).

Item = learnable ID embedding + projected frozen text embedding + projected frozen image
embedding (any encoder of the feature store; CLIP in the paper). Level 1 (see
:mod:`mosaicrec.models.cdsr.base`): causal attention encoders over each per-domain view S^d
and over the merged view S^{X+Y}, per modality. Level 2, for target domain d at each step:
(a) view fusion: additive attention over {S^d state, merged state} of each modality, with a
learned query per target domain; (b) modality fusion: additive attention over the fused
modality states, again per target domain. Both weight sets depend on the user's states at that
step. The prediction is ``sum_m alpha_m <g_m, e_m(item)>``, i.e. the dot product of
``concat_m(alpha_m g_m)`` with ``concat_m(e_m)``: the model leans on the modality that matters
for this user and step, and scoring stays a dot product (ANN-servable).

Choices the paper leaves open (config options): additive attention for both fusion levels
(``fusion: attention``; ``mean`` = fixed uniform weights, an ablation), per-domain heads
through the per-domain fusion queries, the loss weights of the base config, and whether
level-1 encoders are shared across modalities.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.base import ModelContext
from mosaicrec.models.cdsr.base import CrossDomainConfig, CrossDomainRecommender, ItemLookup, Views
from mosaicrec.models.cdsr.layers import AttentionFusion
from mosaicrec.registry import MODELS


class HAFVTConfig(CrossDomainConfig):
    fusion: Literal["attention", "mean"] = Field(
        "attention", description="level-2 weights: learned attention, or uniform (ablation)")


@MODELS.register("haf_vt")
class HAFVT(CrossDomainRecommender):
    cfg: HAFVTConfig
    Config = HAFVTConfig

    def __init__(self, cfg: HAFVTConfig, ctx: ModelContext) -> None:
        super().__init__(cfg, ctx)
        self.view_fusion = AttentionFusion(cfg.hidden, self.n_domains)
        self.modality_fusion = AttentionFusion(cfg.hidden, self.n_domains)

    def fuse(self, views: Views, d: int, b: torch.Tensor, t: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """User vectors [n, M*D] for domain d, with view weights [n, M, V] and modality weights [n, M]."""
        stacked = views.at(d, b, t)  # [M, n, V, D]
        if self.cfg.fusion == "mean":
            g = stacked.mean(2)  # [M, n, D]
            beta = torch.full(stacked.shape[:3], 1 / stacked.shape[2], device=g.device)  # [M, n, V]
            alpha = torch.full((g.shape[1], g.shape[0]), 1 / g.shape[0], device=g.device)  # [n, M]
        else:
            g, beta = self.view_fusion(stacked, d)  # [M, n, D], [M, n, V]
            _, alpha = self.modality_fusion(g.transpose(0, 1), d)  # [n, M]
        user = (alpha.unsqueeze(-1) * g.transpose(0, 1)).flatten(1)  # [n, M*D]
        return user, beta.transpose(0, 1), alpha

    def head_parts(self, views: Views, d: int, b: torch.Tensor, t: torch.Tensor
                   ) -> list[tuple[torch.Tensor, ItemLookup]]:
        user, _, _ = self.fuse(views, d, b, t)  # [n, M*D]
        return [(user, views.tables)]  # ids -> [*, M*D]

    def user_repr(self, batch: SeqBatch) -> torch.Tensor:
        """[B, M*D] fused vector for each query's target domain (batch.target_domains [B])."""
        views = self.encode(batch)
        bsz, length = batch.items.shape
        vecs = views.tables.vecs  # [M, N+1, D]
        out = vecs.new_zeros(bsz, vecs.shape[0] * vecs.shape[2])  # [B, M*D]
        last = torch.full((bsz,), length - 1, dtype=torch.long, device=out.device)
        for d in range(self.n_domains):
            b = (batch.target_domains == d).nonzero(as_tuple=True)[0]
            if len(b):
                out[b] = self.fuse(views, d, b, last[b])[0]
        return out

    def item_vectors(self) -> torch.Tensor:
        tables = self.item_tables()  # [M, N+1, D]
        return tables.transpose(0, 1).flatten(1)  # [N+1, M*D]

    def explain(self, batch: SeqBatch) -> dict[str, torch.Tensor]:
        """Level-2 weights at the last step: ``modality`` [B, M] and ``view`` [B, M, V]."""
        views = self.encode(batch)
        bsz, length = batch.items.shape
        n_m, n_v = len(self.modalities), int(views.intra is not None) + int(views.inter is not None)
        alpha, beta = torch.zeros(bsz, n_m), torch.zeros(bsz, n_m, n_v)
        last = torch.full((bsz,), length - 1, dtype=torch.long)
        for d in range(self.n_domains):
            b = (batch.target_domains == d).nonzero(as_tuple=True)[0]
            if len(b):
                _, beta[b], alpha[b] = self.fuse(views, d, b, last[b])
        return {"modality": alpha, "view": beta}
