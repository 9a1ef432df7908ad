"""The multimodal cross-domain backbone shared by HAF-VT and LLM-EMF.

Level 1 (preference encoders): for every modality ``m`` (learnable ID embedding, projected
frozen text features, projected frozen image features) a causal attention encoder runs over
each per-domain view S^d (intra-domain, one per domain, any number of domains) and over the
merged sequence S^{X+Y+...} (inter-domain). See :mod:`mosaicrec.models.cdsr.layers` for how
the per-domain views are aligned to merged steps.

Level 2 (fusion) and the prediction are model-specific: subclasses implement
:meth:`CrossDomainRecommender.head_logits`.

Loss (choices the papers leave open are config options): for every training position whose
target lies in domain d, a softmax cross-entropy of the fused domain-d prediction over the
domain-d items (``loss_scope: domain``; ``all`` = over every item; ``sampled`` = the target
against ``n_negatives`` uniform domain-d items shared by the batch, as the baselines'
``sampled_ce``), weighted per domain
(``domain_loss_weights``, the paper's L_X + lambda1 L_Y); plus ``inter_loss_weight`` (lambda2)
times the same loss from the merged (inter-domain) view alone (L_{X+Y}) and optionally
``intra_loss_weight`` times the loss from the target domain's own view alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mosaicrec.config import StrictModel
from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.base import ModelContext, Recommender
from mosaicrec.models.cdsr.layers import (
    FrozenFeature,
    align_to_merged,
    domain_view,
    example_context,
    local_index,
    trim_view,
)
from mosaicrec.models.cdsr.packed import PackedEncoders, stack_legacy_state

#: item ids [*] -> item vectors [*, K] (one prediction branch's item side)
ItemLookup = Callable[[torch.Tensor], torch.Tensor]


class CrossDomainConfig(StrictModel):
    hidden: int = Field(64, ge=2, description="width of every modality and view")
    layers: int = Field(2, ge=1, description="transformer blocks per level-1 encoder")
    heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    use_id: bool = Field(True, description="learnable item-ID embedding modality")
    text_features: list[str] = Field(default_factory=lambda: ["text"],
                                     description="ModelContext.features names used as text modalities")
    image_features: list[str] = Field(default_factory=lambda: ["image"],
                                      description="ModelContext.features names used as image modalities")
    use_intra: bool = Field(True, description="per-domain (intra-domain) views S^d")
    use_inter: bool = Field(True, description="merged (inter-domain) view S^{X+Y}")
    share_modality_encoders: bool = Field(
        False, description="one level-1 encoder per view shared by all modalities (faster) "
                           "instead of one per (view, modality)")
    domain_loss_weights: list[float] | None = Field(
        None, description="weight of each target domain's loss (L_X + lambda1 L_Y); default all 1")
    inter_loss_weight: float = Field(1.0, ge=0.0, description="lambda2: loss of the merged view alone")
    intra_loss_weight: float = Field(0.0, ge=0.0, description="loss of the target domain's own view alone")
    loss_scope: Literal["domain", "all", "sampled"] = Field(
        "domain", description="softmax over the target domain's items, over all items, or over the "
                              "target and n_negatives uniform items of its domain shared by the batch")
    n_negatives: int = Field(256, ge=1, description="negatives for loss_scope: sampled")


class ItemRows:
    """The item vectors of every modality for the items one step needs (or for all items).

    ``vecs [M, R, D]`` holds the rows of ``ids`` (sorted unique item ids, ``None`` = all rows
    0..N). Training steps with sampled negatives project only the batch's items, targets and
    negatives; full-catalogue scoring projects every row once.
    """

    def __init__(self, ids: torch.Tensor | None, vecs: torch.Tensor) -> None:
        self.ids, self.vecs = ids, vecs  # [R] or None, [M, R, D]

    def _pos(self, ids: torch.Tensor) -> torch.Tensor:
        return ids if self.ids is None else torch.searchsorted(self.ids, ids.contiguous())

    def stacked(self, ids: torch.Tensor) -> torch.Tensor:
        """[M, *ids.shape, D] per-modality vectors."""
        return self.vecs[:, self._pos(ids)]

    def __call__(self, ids: torch.Tensor, mods: Sequence[int] | None = None) -> torch.Tensor:
        """[*ids.shape, M'*D] the modalities ``mods`` (default all) concatenated per item."""
        vecs = self.vecs if mods is None else self.vecs[list(mods)]  # [M', R, D]
        return vecs[:, self._pos(ids)].movedim(0, -2).flatten(-2)  # [*, M'*D]

    def select(self, mods: Sequence[int]) -> ItemLookup:
        return lambda ids: self(ids, mods)


@dataclass
class Views:
    """Level-1 states aligned to merged steps."""

    intra: torch.Tensor | None  # [nD, M, B, L, D] per-domain views
    inter: torch.Tensor | None  # [M, B, L, D] merged view
    tables: ItemRows  # item vectors of every modality

    def at(self, d: int, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """[M, n, V, D] the available views for target domain d at merged positions (b, t)."""
        parts = []
        if self.intra is not None:
            parts.append(self.intra[d][:, b, t])  # [M, n, D]
        if self.inter is not None:
            parts.append(self.inter[:, b, t])  # [M, n, D]
        return torch.stack(parts, dim=2)  # [M, n, V, D]


class CrossDomainRecommender(Recommender):
    """Base of HAF-VT and LLM-EMF: modalities, level-1 encoders, per-domain losses and scoring."""

    cfg: CrossDomainConfig
    local: torch.Tensor
    all_items: torch.Tensor

    content_based = True

    @classmethod
    def example_context(cls, n_items: int, max_len: int) -> ModelContext:
        """Toy context with random features under the default feature names (registry tests)."""
        defaults = cast(CrossDomainConfig, cls.Config())
        names = [*defaults.text_features, *defaults.image_features]
        return example_context(n_items, max_len, {n: 12 for n in names})

    def __init__(self, cfg: CrossDomainConfig, ctx: ModelContext) -> None:
        super().__init__(cfg, ctx)
        if not (cfg.use_intra or cfg.use_inter):
            raise ValueError("use_intra and use_inter cannot both be false")
        if cfg.domain_loss_weights is not None and len(cfg.domain_loss_weights) != ctx.n_domains:
            raise ValueError(f"domain_loss_weights has {len(cfg.domain_loss_weights)} values; "
                             f"the data has {ctx.n_domains} domains {ctx.domains}")
        self.n_domains = max(ctx.n_domains, 1)
        self.modalities = (["id"] if cfg.use_id else []) + list(cfg.text_features) + list(cfg.image_features)
        if not self.modalities:
            raise ValueError("no modality left: set use_id or list text_features/image_features")
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"a modality is listed twice: {self.modalities}")
        self._build_modalities(cfg, ctx)
        self.encoders = nn.ModuleDict()
        views = ([f"intra{d}" for d in range(self.n_domains)] if cfg.use_intra else []) + (
            ["inter"] if cfg.use_inter else [])
        groups = 1 if cfg.share_modality_encoders else len(self.modalities)
        for v in views:  # one encoder per (view, modality), run together (same init as separate ones)
            self.encoders[v] = PackedEncoders(groups, cfg.hidden, cfg.layers, cfg.heads, cfg.dropout, ctx.max_len)
        self.empty = nn.Parameter(torch.zeros(self.n_domains, len(self.modalities), cfg.hidden))
        cands, local = local_index(ctx.item_domain, self.n_domains)
        for d, c in enumerate(cands):
            self.register_buffer(f"cands{d}", c, persistent=False)
        self.register_buffer("local", local, persistent=False)
        self.register_buffer("all_items", torch.arange(1, ctx.n_items + 1), persistent=False)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # weights saved before the per-modality encoders were packed: encoders.{view}_{modality}.*
        names = ["all"] if self.cfg.share_modality_encoders else self.modalities
        for view in self.encoders:
            stack_legacy_state(state_dict, [f"{prefix}encoders.{view}_{m}." for m in names], f"{prefix}encoders.{view}.")
        super()._load_from_state_dict(state_dict, prefix, *args)

    # ---- modalities -------------------------------------------------------------------
    def _build_modalities(self, cfg: CrossDomainConfig, ctx: ModelContext) -> None:
        self.id_emb = nn.Embedding(ctx.n_items + 1, cfg.hidden, padding_idx=0) if cfg.use_id else None
        if self.id_emb is not None:
            nn.init.normal_(self.id_emb.weight, std=0.02)
            with torch.no_grad():
                self.id_emb.weight[0].zero_()
        self.content = nn.ModuleDict()
        for name in [*cfg.text_features, *cfg.image_features]:
            if name not in ctx.features:
                raise ValueError(f"{type(self).__name__}: feature {name!r} is not in the experiment's "
                                 f"features (available: {sorted(ctx.features) or 'none'}); add it to the "
                                 "`features:` section or remove it from text_features/image_features")
            table = ctx.features[name]
            if table.shape[0] != ctx.n_items + 1:
                raise ValueError(f"feature {name!r} has {table.shape[0]} rows, expected n_items+1 = {ctx.n_items + 1}")
            self.content[name] = FrozenFeature(table, ctx.feature_masks.get(name), cfg.hidden, cfg.dropout)

    def item_tables(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """[M, R, D] the item vector of every modality for ``ids [R]`` (None = all N+1 rows; id 0 = zeros)."""
        if ids is None:
            tabs = [self.id_emb.weight] if self.id_emb is not None else []
        else:
            tabs = [self.id_emb(ids)] if self.id_emb is not None else []
        tabs += [self.content[m](ids) for m in self.modalities if m != "id"]
        return torch.stack(tabs)  # [M, R, D]

    def item_rows(self, ids: torch.Tensor | None = None) -> ItemRows:
        """Projected vectors of the items ``ids`` (any shape, repeats allowed; None = all items)."""
        if ids is None:
            return ItemRows(None, self.item_tables())
        uniq = torch.unique(ids)  # [R] sorted
        return ItemRows(uniq, self.item_tables(uniq))  # [M, R, D]

    # ---- level 1 ----------------------------------------------------------------------
    def _encode(self, view: str, xs: torch.Tensor, mask: torch.Tensor,
                cols: torch.Tensor | None = None, span: int | None = None) -> torch.Tensor:
        """xs [M, B, L, D] -> [M, B, L, D] through the view's encoder(s) (one per modality, or shared)."""
        out: torch.Tensor = self.encoders[view](xs, mask, cols, span)  # [M, B, L, D]
        return out

    def encode(self, batch: SeqBatch, extra_ids: torch.Tensor | None = None, full: bool = True) -> Views:
        """Level-1 views of ``batch``.

        ``full`` projects every item (full-catalogue scoring); otherwise only the batch's items
        and ``extra_ids`` (targets, sampled negatives) are projected, once for all views.
        """
        if full:
            tables = self.item_rows()
        else:
            need = batch.items.flatten() if extra_ids is None else torch.cat([batch.items.flatten(), extra_ids])
            tables = self.item_rows(need)
        intra = inter = None
        if self.cfg.use_inter:
            inter = self._encode("inter", tables.stacked(batch.items), batch.mask)  # [M, B, L, D]
        if self.cfg.use_intra:
            per = []
            span = batch.items.shape[1]
            for d in range(self.n_domains):
                compact, cols, index, seen = domain_view(batch.items, batch.domains, d)  # [B, L] x4
                compact, cols, index = trim_view(compact, cols, index)  # [B, L'] x2, [B, L]
                states = self._encode(f"intra{d}", tables.stacked(compact), compact != 0, cols, span)  # [M, B, L', D]
                per.append(align_to_merged(states, index, seen, self.empty[d]))  # [M, B, L, D]
            intra = torch.stack(per)  # [nD, M, B, L, D]
        return Views(intra, inter, tables)

    # ---- level 2 + prediction (model-specific) ----------------------------------------
    def head_parts(self, views: Views, d: int, b: torch.Tensor, t: torch.Tensor
                   ) -> list[tuple[torch.Tensor, ItemLookup]]:
        """[(user vectors [n, K], item lookup ids -> [*, K]), ...]: one pair per prediction branch."""
        raise NotImplementedError

    def combine(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """Fuse the branches' [n, C] candidate logits into one [n, C] log-score (default: one branch)."""
        return logits[0]

    def head_logits(self, views: Views, d: int, b: torch.Tensor, t: torch.Tensor,
                    cand: torch.Tensor) -> torch.Tensor:
        """[n, |cand|] log-scores of the candidates for target domain d at positions (b, t)."""
        return self.combine([u @ table(cand).T for u, table in self.head_parts(views, d, b, t)])

    def uniform_parts(self, states: torch.Tensor, tables: ItemRows) -> list[tuple[torch.Tensor, ItemLookup]]:
        """One view alone, modalities weighted uniformly: states [M, n, D] -> [(user, lookup)]."""
        user = states.transpose(0, 1).flatten(1) / states.shape[0]  # [n, M*D]
        return [(user, tables)]  # ids -> [*, M*D]

    def domain_cands(self, d: int) -> torch.Tensor:
        cands: torch.Tensor = getattr(self, f"cands{d}")
        return cands

    def _ce(self, parts: list[tuple[torch.Tensor, ItemLookup]], d: int, target: torch.Tensor,
            neg: torch.Tensor | None, combine: bool = True, memo: dict[int, Any] | None = None) -> torch.Tensor:
        """Cross-entropy of the targets [n] against the loss_scope's candidates.

        ``memo`` (one per target domain and step) shares, between the loss terms, the item
        vectors of the targets and negatives looked up by the same lookup, and the
        target-among-negatives mask.
        """
        fuse = self.combine if combine else (lambda xs: xs[0])
        if neg is not None:  # sampled: target vs K shared negatives of domain d
            memo = {} if memo is None else memo
            if -1 not in memo:
                memo[-1] = neg[None] == target[:, None]  # [n, K] a negative that is the target
            logits = []
            for u, table in parts:
                if id(table) not in memo:  # the lookup is kept in the entry, so its id stays unique
                    memo[id(table)] = (table, table(target), table(neg))  # [n, K'], [K, K']
                _, pos, negv = memo[id(table)]
                logits.append(torch.cat([(u * pos).sum(-1, keepdim=True),
                                         (u @ negv.T).masked_fill(memo[-1], -1e9)], 1))  # [n, 1+K]
            return F.cross_entropy(fuse(logits), torch.zeros_like(target))
        if self.cfg.loss_scope == "domain":
            cand, label = self.domain_cands(d), self.local[target]  # [Nd], [n]
        else:
            cand, label = self.all_items, target - 1
        return F.cross_entropy(fuse([u @ table(cand).T for u, table in parts]), label)

    # ---- Recommender interface -------------------------------------------------------------
    def loss(self, batch: SeqBatch) -> torch.Tensor:
        cfg = self.cfg
        negs: list[torch.Tensor | None] = [None] * self.n_domains
        if cfg.loss_scope == "sampled":  # K shared negatives per domain, drawn before the projection
            for d in range(self.n_domains):
                pool = self.domain_cands(d)
                negs[d] = pool[torch.randint(len(pool), (cfg.n_negatives,), device=pool.device)]  # [K]
            extra = torch.cat([batch.targets.flatten(), *[n for n in negs if n is not None]])
            views = self.encode(batch, extra, full=False)
        else:  # the loss needs every item of the domain (or catalogue): project all rows once
            views = self.encode(batch)
        weights = cfg.domain_loss_weights or [1.0] * self.n_domains
        total = views.tables.vecs.new_zeros(())
        for d in range(self.n_domains):
            b, t = ((batch.targets > 0) & (batch.target_domains == d)).nonzero(as_tuple=True)  # [n] x2
            if len(b) == 0:
                continue
            target = batch.targets[b, t]  # [n]
            neg = negs[d]
            memo: dict[int, Any] = {}
            total = total + weights[d] * self._ce(self.head_parts(views, d, b, t), d, target, neg, memo=memo)
            if views.inter is not None and cfg.inter_loss_weight > 0:
                parts = self.uniform_parts(views.inter[:, b, t], views.tables)
                total = total + cfg.inter_loss_weight * self._ce(parts, d, target, neg, combine=False, memo=memo)
            if views.intra is not None and cfg.intra_loss_weight > 0:
                parts = self.uniform_parts(views.intra[d][:, b, t], views.tables)
                total = total + cfg.intra_loss_weight * self._ce(parts, d, target, neg, combine=False, memo=memo)
        return total

    def score(self, batch: SeqBatch) -> torch.Tensor:
        """[B, N+1] scores with the head of each query's target domain (last position).

        Column 0 is unused (0). With a non-linear branch fusion the target domain's items are
        scored with the fusion normalised over that domain, as in training.
        """
        views = self.encode(batch)
        bsz, length = batch.items.shape
        out = views.tables.vecs.new_zeros(bsz, self.ctx.n_items + 1)  # [B, N+1] column 0 unused
        last = torch.full((bsz,), length - 1, dtype=torch.long, device=out.device)  # [B]
        for d in range(self.n_domains):
            b = (batch.target_domains == d).nonzero(as_tuple=True)[0]  # [n]
            if not len(b):
                continue
            out[b, 1:] = self.head_logits(views, d, b, last[b], self.all_items)  # [n, N]
            if type(self).combine is not CrossDomainRecommender.combine:
                # a non-linear fusion (mixture of softmaxes) is normalised over the domain's items,
                # as in training; other domains' items keep the all-item scores
                cand = self.domain_cands(d)
                out[b[:, None], cand[None, :]] = self.head_logits(views, d, b, last[b], cand)  # [n, Nd]
        return out
