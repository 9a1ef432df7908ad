"""Shared parts of the text-based sequential recommenders ``lm_seqrec`` and ``xcross``.

History tower: the user's items as text (the chosen item fields joined, titles oldest ->
newest separated by ``separator``, the oldest tokens cut to ``history_tokens``) -> hidden states
of the language model -> pooled -> optional head -> L2-normalised query vector. Item tower:
each item's text (``item_tokens``) through the same base model -> pooled -> normalised.
``item_tower: frozen`` encodes items with the base model WITHOUT adapters and without
gradients (vectors computed once and cached for the life of the model: the CPU-friendly
choice); ``shared`` uses the adapted model (gradients flow through the batch's items; the full
table is cached between training steps and recomputed after the next step).

Score = cosine similarity / ``temperature``. Losses: ``in_batch`` (softmax over the batch's
distinct target items), ``sampled`` (plus ``n_negatives`` uniform items of the target's domain),
``full`` (softmax over every item of the target's domain; needs cached item vectors, i.e. a
frozen item tower or a frozen model). A training window contributes its LAST target only
(one LM forward per example: the per-position targets of ID models would cost a forward per
prefix); the benchmark builds one example per user.

Item text comes from ``ctx.extra["item_fields"]`` (``{field: [N+1] strings}``, filled by
``training.run.build_context`` for models with ``needs_item_text = True``).
``ctx.extra["backbone"]`` (a folder), when present, replaces ``cfg.backbone`` (used by
``example_context`` so registry-wide tests run on a tiny random model).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mosaicrec.config import StrictModel
from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.base import ModelContext, Recommender
from mosaicrec.models.xcross.backbone import TextTable, is_decoder, load_backbone, pool


class TextSeqConfig(StrictModel):
    backbone: str = Field("minilm", description="'minilm', 'smollm2' (offline) or any HF model name/folder")
    revision: str | None = None
    pooling: Literal["auto", "mean", "last", "cls"] = Field("auto", description="auto: mean (encoder), last (decoder)")
    fields: list[str] = Field(default_factory=lambda: ["title"], description="item fields joined as item text")
    history_tokens: int = Field(128, ge=4, description="token budget of the history text (oldest cut)")
    item_tokens: int = Field(32, ge=1, description="tokens kept per item text")
    separator: str = " ; "
    head: Literal["auto", "none", "linear"] = Field("auto", description="auto: linear when the LM is frozen")
    item_tower: Literal["shared", "frozen"] = "shared"
    loss: Literal["in_batch", "sampled", "full"] = "in_batch"
    n_negatives: int = Field(64, ge=1, description="uniform negatives of loss 'sampled'")
    temperature: float = Field(0.05, gt=0.0)
    item_batch: int = Field(256, ge=1, description="items per forward when encoding the catalogue")
    lm_dropout: bool = Field(False, description="keep the language model's own dropout active in training")


def example_fields(n_items: int) -> dict[str, list[str]]:
    words = ["coffee", "tea", "knife", "pan"]
    titles = [""] + [f"{words[i % 4]} {words[(i // 4) % 4]} {i}" for i in range(1, n_items + 1)]
    return {"title": titles, "text": [t + " kitchen" if t else "" for t in titles]}


class TextSeqRec(Recommender):
    """Base class; subclasses build ``self.lm`` and implement the two forwards."""

    content_based: ClassVar[bool] = False
    needs_item_text: ClassVar[bool] = True
    item_domain: torch.Tensor  # [N+1] buffer

    def __init__(self, cfg: TextSeqConfig, ctx: ModelContext) -> None:
        super().__init__(cfg, ctx)
        self.cfg: TextSeqConfig = cfg
        fields = ctx.extra.get("item_fields")
        if not fields:
            raise ValueError(f"{type(self).__name__} needs item text: ctx.extra['item_fields'] is empty "
                             "(build the context with training.run.build_context)")
        missing = [f for f in cfg.fields if f not in fields]
        if missing:
            raise ValueError(f"item fields {missing} not available (have {sorted(fields)})")
        texts = [". ".join(t for t in (fields[f][i] or "" for f in cfg.fields) if t) for i in range(ctx.n_items + 1)]
        if len(texts) != ctx.n_items + 1:
            raise ValueError(f"item_fields hold {len(texts)} rows, expected N+1 = {ctx.n_items + 1}")
        base, self.tokenizer = load_backbone(str(ctx.extra.get("backbone", cfg.backbone)), cfg.revision)
        self.decoder = is_decoder(base)
        self.pooling = cfg.pooling if cfg.pooling != "auto" else ("last" if self.decoder else "mean")
        self.table = TextTable.build(self.tokenizer, texts, cfg.item_tokens, cfg.separator, left_pad=self.decoder)
        bcfg: Any = base.config
        self.dim = int(bcfg.hidden_size)
        self._base = [base]  # the plain backbone (not registered twice; subclasses own it)
        self._item_cache: torch.Tensor | None = None
        self.register_buffer("item_domain", torch.as_tensor(ctx.item_domain, dtype=torch.long), persistent=False)

    # ------------------------------------------------------------------ subclass hooks
    def history_forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, T] -> [B, T, D] hidden states of the (adapted) model."""
        raise NotImplementedError

    def item_forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, T] -> [B, T, D] for the item tower (subclasses honour ``item_tower``)."""
        raise NotImplementedError

    def items_trainable(self) -> bool:
        """True when item vectors change with training (no caching across steps)."""
        return self.cfg.item_tower == "shared" and any(p.requires_grad for p in self.parameters())

    def make_head(self, frozen_lm: bool) -> nn.Module:
        want = self.cfg.head if self.cfg.head != "auto" else ("linear" if frozen_lm else "none")
        if want == "none":
            return nn.Identity()
        head = nn.Linear(self.dim, self.dim)
        with torch.no_grad():
            head.weight.copy_(torch.eye(self.dim))
            head.bias.zero_()
        return head

    # ------------------------------------------------------------------ text
    @staticmethod
    def histories(batch: SeqBatch, training: bool) -> tuple[list[list[int]], torch.Tensor, torch.Tensor]:
        """Per row: history item ids (oldest first), target [B] and its domain [B].

        Training: the last position with a target; evaluation: the whole row."""
        items = batch.items.cpu().numpy()
        if training and batch.targets.dim() == 2:
            has = (batch.targets != 0).cpu().numpy()  # [B, L]
            if not has.any(1).all():
                raise ValueError("a training row has no target")
            last = has.shape[1] - 1 - np.argmax(has[:, ::-1], axis=1)  # [B]
            rows = torch.arange(len(batch))
            tgt, tdom = batch.targets[rows, last], batch.target_domains[rows, last]  # [B]
            hist = [[int(x) for x in items[b, : last[b] + 1] if x != 0] for b in range(len(batch))]
            return hist, tgt, tdom
        return [[int(x) for x in row if x != 0] for row in items], batch.targets, batch.target_domains

    def encode_histories(self, hist: list[list[int]]) -> torch.Tensor:
        """[B, D] L2-normalised query vectors."""
        ids, mask = self.table.collate([self.table.history_ids(h, self.cfg.history_tokens) for h in hist])
        dev = self.item_domain.device
        ids, mask = ids.to(dev), mask.to(dev)
        h = pool(self.history_forward(ids, mask), mask, self.pooling)  # [B, D]
        return F.normalize(self.head(h), dim=-1)  # type: ignore[operator]

    def encode_items(self, items: list[int]) -> torch.Tensor:
        """[M, D] L2-normalised item vectors (with gradients when the item tower trains)."""
        ids, mask = self.table.collate([self.table.item_ids(i) for i in items])
        dev = self.item_domain.device
        ids, mask = ids.to(dev), mask.to(dev)
        return F.normalize(pool(self.item_forward(ids, mask), mask, self.pooling), dim=-1)  # [M, D]

    # ------------------------------------------------------------------ contract
    def set_item_cache(self, vectors: torch.Tensor) -> None:
        """Install precomputed ``[N+1, D]`` item vectors (e.g. a benchmark's on-disk cache)."""
        if vectors.shape != (self.ctx.n_items + 1, self.dim):
            raise ValueError(f"item cache shape {tuple(vectors.shape)} != {(self.ctx.n_items + 1, self.dim)}")
        self._item_cache = vectors.detach().to(self.item_domain.device)

    def item_vectors(self) -> torch.Tensor:
        if self._item_cache is not None:
            return self._item_cache
        bs = self.cfg.item_batch
        with torch.no_grad(), self.eval_mode():
            chunks = [self.encode_items(list(range(s, min(s + bs, self.ctx.n_items + 1))))
                      for s in range(1, self.ctx.n_items + 1, bs)]
        vecs = torch.cat([torch.zeros(1, self.dim, device=self.item_domain.device), *chunks])  # [N+1, D]
        self._item_cache = vecs
        return vecs

    @contextlib.contextmanager
    def eval_mode(self) -> Iterator[None]:
        was = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was)

    def user_repr(self, batch: SeqBatch) -> torch.Tensor:
        hist, _, _ = self.histories(batch, training=False)
        return self.encode_histories(hist)  # [B, D]

    def score(self, batch: SeqBatch) -> torch.Tensor:
        return self.user_repr(batch) @ self.item_vectors().T / self.cfg.temperature  # [B, N+1]

    def loss(self, batch: SeqBatch) -> torch.Tensor:
        hist, tgt, tdom = self.histories(batch, training=True)
        trainable_items = self.items_trainable()
        if trainable_items:
            self._item_cache = None  # the weights are about to change
        u = self.encode_histories(hist)  # [B, D]
        tgt = tgt.to(u.device)
        if self.cfg.loss == "full":
            if trainable_items:
                raise ValueError("loss 'full' needs fixed item vectors: use item_tower 'frozen' or loss 'in_batch'")
            V = self.item_vectors()  # [N+1, D]
            logits = u @ V.T / self.cfg.temperature  # [B, N+1]
            same = self.item_domain[None, :] == self.item_domain[tgt][:, None]  # [B, N+1]
            same[:, 0] = False
            return F.cross_entropy(logits.masked_fill(~same, float("-inf")), tgt)
        cand = torch.unique(tgt)  # [C]
        if self.cfg.loss == "sampled":
            doms = torch.unique(tdom.to(u.device))
            pool_items = torch.nonzero(torch.isin(self.item_domain, doms)).flatten()  # [P]
            pick = pool_items[torch.randint(len(pool_items), (self.cfg.n_negatives,), device=u.device)]
            cand = torch.unique(torch.cat([cand, pick]))  # [C']
        if trainable_items:
            V = self.encode_items(cand.tolist())  # [C, D]
        elif self._item_cache is None:  # fixed items, no catalogue cache yet: encode just these
            with torch.no_grad():
                V = self.encode_items(cand.tolist())  # [C, D]
        else:
            V = self._item_cache[cand]  # [C, D]
        logits = u @ V.T / self.cfg.temperature  # [B, C]
        label = torch.searchsorted(cand, tgt)  # [B] cand is sorted
        return F.cross_entropy(logits, label)

    def train(self, mode: bool = True) -> TextSeqRec:
        super().train(mode)
        if mode and not self.cfg.lm_dropout:  # the LM's dropout stays off (LoRA dropout is separate)
            for name, m in self._base[0].named_modules():
                if isinstance(m, nn.Dropout) and "lora_dropout" not in name:
                    m.eval()
        return self

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        self._item_cache = None  # cached item vectors belong to the old weights
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def describe(self) -> dict[str, Any]:
        return {"backbone": self.cfg.backbone, "pooling": self.pooling, "dim": self.dim,
                "trainable_parameters": self.n_trainable(),
                "parameters": sum(p.numel() for p in self.parameters())}
