"""LLM-EMF: LLM-enhanced multimodal fusion for cross-domain sequential recommendation (Wu et al., 2025).

Same family as HAF-VT (:mod:`mosaicrec.models.haf_vt`): the text modality is the frozen
embedding of the LLM-augmented item text written by ``mosaicrec augment`` (any text encoder of
the feature store; the CLIP text tower in the paper), optionally next to the raw title and the
image. Level 1: causal attention over the per-domain views and the merged view ("multi-attention
over the three sequences"), per modality. Level 2 and prediction follow the predecessor IFCDSR:
an ID branch (attention over the views of the ID modality) and a content branch (attention over
views, then over the content modalities) give two scores for each candidate item, fused as

* ``prediction: prob`` (default): ``p = (1 - beta) softmax(s_id) + beta softmax(s_content)``
  over the candidates (the target domain's items); the loss is the NLL of ``p``;
* ``prediction: logit``: ``s = (1 - beta) s_id + beta s_content`` (a dot product, ANN-servable).

``beta`` = ``content_weight`` (learned when ``learn_content_weight``). With ``prob``,
:meth:`user_repr`/:meth:`item_vectors` expose the ``logit`` form (serving approximation); the
evaluator uses :meth:`score`, which is exact. Choices the paper leaves open are these options
and those of :class:`~mosaicrec.models.cdsr.base.CrossDomainConfig`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.base import ModelContext
from mosaicrec.models.cdsr.base import CrossDomainConfig, CrossDomainRecommender, ItemLookup, Views
from mosaicrec.models.cdsr.layers import AttentionFusion
from mosaicrec.registry import MODELS


class LLMEMFConfig(CrossDomainConfig):
    text_features: list[str] = Field(default_factory=lambda: ["aug"],
                                     description="features of the LLM-augmented text (and optionally raw titles)")
    prediction: Literal["prob", "logit"] = Field("prob", description="how ID and content predictions fuse")
    content_weight: float = Field(0.5, gt=0.0, lt=1.0, description="beta: weight of the content prediction")
    learn_content_weight: bool = Field(True, description="learn beta (initialised at content_weight)")


@MODELS.register("llm_emf")
class LLMEMF(CrossDomainRecommender):
    cfg: LLMEMFConfig
    Config = LLMEMFConfig

    def __init__(self, cfg: LLMEMFConfig, ctx: ModelContext) -> None:
        super().__init__(cfg, ctx)
        self.content_idx = [i for i, m in enumerate(self.modalities) if m != "id"]
        self.id_view_fusion = AttentionFusion(cfg.hidden, self.n_domains)
        self.view_fusion = AttentionFusion(cfg.hidden, self.n_domains)
        self.modality_fusion = AttentionFusion(cfg.hidden, self.n_domains)
        logit = math.log(cfg.content_weight / (1 - cfg.content_weight))
        self.beta_logit = nn.Parameter(torch.tensor(logit), requires_grad=cfg.learn_content_weight)

    @property
    def beta(self) -> torch.Tensor:
        if not self.cfg.use_id:
            return torch.ones((), device=self.beta_logit.device)
        if not self.content_idx:
            return torch.zeros((), device=self.beta_logit.device)
        return torch.sigmoid(self.beta_logit)

    def branches(self, views: Views, d: int, b: torch.Tensor, t: torch.Tensor
                 ) -> list[tuple[torch.Tensor, ItemLookup]]:
        """[(user [n, K], item lookup ids -> [*, K]) for the ID branch and the content branch]."""
        stacked = views.at(d, b, t)  # [M, n, V, D]
        out = []
        if self.cfg.use_id:
            u_id, _ = self.id_view_fusion(stacked[0], d)  # [n, D]
            out.append((u_id, views.tables.select([0])))  # ids -> [*, D]
        if self.content_idx:
            idx = torch.as_tensor(self.content_idx, device=stacked.device)
            g, _ = self.view_fusion(stacked[idx], d)  # [C, n, D]
            _, alpha = self.modality_fusion(g.transpose(0, 1), d)  # [n, C]
            u_c = (alpha.unsqueeze(-1) * g.transpose(0, 1)).flatten(1)  # [n, C*D]
            out.append((u_c, views.tables.select(self.content_idx)))  # ids -> [*, C*D]
        return out

    def head_parts(self, views: Views, d: int, b: torch.Tensor, t: torch.Tensor
                   ) -> list[tuple[torch.Tensor, ItemLookup]]:
        return self.branches(views, d, b, t)

    def combine(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """ID and content logits [n, C] -> fused log-score [n, C] (``prediction``)."""
        if len(logits) == 1:
            return logits[0]
        beta = self.beta
        if self.cfg.prediction == "logit":
            return (1 - beta) * logits[0] + beta * logits[1]  # [n, C]
        return torch.logaddexp(torch.log1p(-beta) + F.log_softmax(logits[0], -1),
                               torch.log(beta) + F.log_softmax(logits[1], -1))  # [n, C] log p

    def user_repr(self, batch: SeqBatch) -> torch.Tensor:
        """[B, K] the logit-fusion query vector for each query's target domain."""
        views = self.encode(batch)
        bsz, length = batch.items.shape
        last = torch.full((bsz,), length - 1, dtype=torch.long, device=batch.items.device)
        out: torch.Tensor | None = None
        for d in range(self.n_domains):
            b = (batch.target_domains == d).nonzero(as_tuple=True)[0]
            if not len(b):
                continue
            u = torch.cat([w * u for w, (u, _) in zip(self._weights(), self.branches(views, d, b, last[b]),
                                                       strict=True)], -1)  # [n, K]
            if out is None:
                out = u.new_zeros(bsz, u.shape[1])
            out[b] = u
        assert out is not None, "empty batch"
        return out

    def _weights(self) -> list[torch.Tensor]:
        beta = self.beta
        return [w for w, on in ((1 - beta, self.cfg.use_id), (beta, bool(self.content_idx))) if on]

    def item_vectors(self) -> torch.Tensor:
        tables = self.item_tables()  # [M, N+1, D]
        parts = [tables[0]] if self.cfg.use_id else []
        if self.content_idx:
            parts.append(tables[self.content_idx].transpose(0, 1).flatten(1))  # [N+1, C*D]
        return torch.cat(parts, -1)  # [N+1, K]
