"""Molar (Luo et al. 2024): LM item encoder, LM user encoder, post-alignment with an ID model.

Item embedding: the backbone reads "<prompt with the item text> [ITEM]" (and the image, for
vision-language backbones); the final hidden state at [ITEM] is the item's content embedding
(frozen and cached, or re-encoded with LoRA / full fine-tuning). A LayerNorm + linear adapter
maps it into the scoring space.

User embedding: the same backbone (its first ``user_encoder.layers`` layers) reads the adapted
item embeddings as ``inputs_embeds`` after a learned [USER] token; the causal mask makes the
final hidden state at every position t the content user embedding E_con after items 1..t, so
every target of a window trains in one pass and the last position is served.

Post-alignment: a trained ID model (``align.id_run``, any registered sequential model) gives
E_id at the same positions; a symmetric InfoNCE (cosine / tau, in-batch negatives) between a
projection of E_con and E_id is added with weight ``align.alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.base import ModelContext, Recommender
from mosaicrec.models.molar import align as A
from mosaicrec.models.molar import items as I
from mosaicrec.models.molar.backbone import Backbone, enable_checkpointing, load_backbone, set_trainable
from mosaicrec.models.molar.config import MolarConfig
from mosaicrec.registry import MODELS


def normaliser(x: torch.Tensor, how: str, eps: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[H, H] matrix W such that ``(x - x.mean(0)) @ W`` is whitened (identity covariance) or standardised.

    Whitening: ``W = V diag(1 / sqrt(lambda + eps * mean(lambda)))`` from the eigen-decomposition
    of the covariance of ``x`` [N, H] (computed in float64, returned as ``dtype``); the floor keeps
    rank-deficient tables (N < H) finite.
    """
    x = x.double()
    xc = x - x.mean(0)  # [N, H]
    if how == "standardise":
        return torch.diag(1.0 / (xc.std(0) + 1e-6)).to(dtype)  # [H, H]
    cov = xc.T @ xc / max(len(x) - 1, 1)  # [H, H]
    lam, vec = torch.linalg.eigh(cov)  # [H], [H, H]
    lam = lam.clamp(min=0.0)
    return (vec / torch.sqrt(lam + eps * lam.mean() + 1e-12)).to(dtype)  # [H, H]


@MODELS.register("molar")
class Molar(Recommender):
    Config = MolarConfig
    causal: ClassVar[bool] = True
    #: build_context puts ItemContent (texts, image paths) in ctx.extra["item_content"].
    needs_item_content: ClassVar[bool] = True
    # buffers
    item_mean: torch.Tensor  # [H]
    item_white: torch.Tensor  # [H, H]
    item_stats_ready: torch.Tensor  # [] bool
    item_table: torch.Tensor  # [N+1, H] (frozen item encoder)

    def __init__(self, cfg: MolarConfig, ctx: ModelContext) -> None:
        super().__init__(cfg, ctx)
        self.cfg: MolarConfig = cfg
        content = ctx.extra.get("item_content")
        if not isinstance(content, I.ItemContent) or len(content.texts) != ctx.n_items + 1:
            raise ValueError("molar: ModelContext.extra['item_content'] must hold the text of items 0..N "
                             "(training.run.build_context provides it)")
        self.content = content
        ub = load_backbone(cfg.backbone, cfg.user_encoder.layers)
        H = ub.hidden
        self.user_lm = ub.decoder  # reads inputs_embeds only: drop the word embeddings
        self.user_lm.embed_tokens = nn.Embedding(1, H)
        set_trainable(self.user_lm, cfg.user_encoder.mode, cfg.lora)
        if cfg.grad_checkpointing and cfg.user_encoder.mode != "frozen":
            enable_checkpointing(self.user_lm)
        self.user_token = nn.Parameter(torch.randn(H) * 0.02)  # [H]
        self.item_norm = nn.LayerNorm(H)
        self.item_proj = nn.Linear(H, H)
        self.in_proj = nn.Linear(H, H)
        self.out_proj = nn.Linear(H, H)
        with torch.no_grad():  # start the user encoder's inputs at the scale of its word embeddings
            self.in_proj.weight.mul_(0.1)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature)))
        self.item_lm: nn.Module | None = None
        self._item_bb: Backbone | None = None
        # Normalisation of the item states over all items, from the initial encoder: LM states
        # concentrate in a few directions (SmolLM2 on Scientific: 4 principal components carry 80%
        # of the variance even after per-dimension standardisation), which leaves the adapter
        # badly conditioned. `whiten` maps them to (h - mean) @ W with identity covariance
        # (`standardise`: W = diag(1 / std)). Frozen mode also keeps the whole table.
        self.register_buffer("item_mean", torch.zeros(H))  # [H]
        self.register_buffer("item_white", torch.eye(H))  # [H, H]
        self.register_buffer("item_stats_ready", torch.zeros((), dtype=torch.bool))
        if cfg.item_encoder.mode == "frozen":
            self.register_buffer("item_table", torch.zeros(ctx.n_items + 1, H))  # [N+1, H]
        else:
            bb = self._item_backbone()
            self.item_lm = bb.base
            set_trainable(self.item_lm, cfg.item_encoder.mode, cfg.lora)
            if cfg.grad_checkpointing:
                enable_checkpointing(self.item_lm)
        # saved weights always carry the statistics (and table), computed on first use otherwise
        self.register_state_dict_pre_hook(lambda module, *args, **kwargs: module._ensure_table())
        self._eval_items: torch.Tensor | None = None
        self._teacher: list[Recommender] = []  # kept out of the state dict
        self.align_proj: nn.Linear | None = None
        if cfg.align.alpha > 0:
            teacher = A.load_teacher(cfg.align, ctx)
            self._teacher.append(teacher)
            self.align_proj = nn.Linear(H, int(teacher.item_vectors().shape[1]))
        self.train()  # transformers loads its models in eval mode; a new module starts in train mode

    # ---- construction helpers ---------------------------------------------------------------
    @classmethod
    def example_context(cls, n_items: int, max_len: int) -> ModelContext:
        """A toy context with item texts (model tests)."""
        words = ["red", "blue", "pan", "knife", "tea", "lamp", "cable", "glove"]
        texts = [""] + [f"item {i}: {words[i % 8]} {words[(i * 3) % 8]}" for i in range(1, n_items + 1)]
        dom = np.zeros(n_items + 1, dtype=np.int8)
        dom[0] = -1
        return ModelContext(n_items=n_items, n_users=8, n_domains=1, item_domain=dom, max_len=max_len,
                            domains=["A"], extra={"item_content": I.ItemContent(texts)})

    @classmethod
    def example_config(cls, **overrides: Any) -> MolarConfig:
        """A 2-layer, 32-d random Llama backbone (model tests)."""
        tiny = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 256}
        base: dict[str, Any] = {"backbone": {"random_init": tiny}, "bf16": False, "n_negatives": 16,
                                "item_encoder": {"cache": False}}
        return MolarConfig(**{**base, **overrides})

    @classmethod
    def prepare_bench(cls, cfg: Any, run_dependency: Callable[[str, list[str]], str]) -> Any:
        """``mosaicrec bench``: train (or reuse) the ID benchmark named by ``align.id_bench``."""
        return A.prepare_bench(cfg, run_dependency)

    def select_windows(self, windows: Any) -> Any:
        """History cap: each user's most recent ``windows_per_user`` windows."""
        return A.cap_windows(windows, self.cfg.windows_per_user)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Backbone weights at ``lr``; the newly initialised layers at ``head_lr``."""
        back: list[nn.Parameter] = []
        head: list[nn.Parameter] = []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (back if name.startswith(("user_lm.", "item_lm.")) else head).append(p)
        return [{"params": back, "lr": lr}, {"params": head, "lr": self.cfg.head_lr or lr}]

    def _item_backbone(self) -> Backbone:
        if self._item_bb is None:
            ic = self.cfg.item_encoder
            self._item_bb = load_backbone(self.cfg.backbone, ic.layers, ic.pretrained)
        return self._item_bb

    # ---- items -------------------------------------------------------------------------------
    def ensure_item_table(self) -> str | None:
        """Compute (or load from the disk cache) the initial item table; the cache file or None."""
        self._ensure_table()
        return self._cache_file

    _cache_file: str | None = None

    def _initial_table(self) -> np.ndarray:
        """[N+1, H] states of every item from the (initial) item encoder, via the disk cache."""
        ic, arr, key = self.cfg.item_encoder, None, None
        if ic.cache and self.cfg.backbone.random_init is None:
            from mosaicrec.models.molar.backbone import backbone_identity

            key = I.cache_key(backbone_identity(self.cfg.backbone, ic.layers, ic.pretrained), ic, self.content,
                              self.cfg.bf16)
            arr = I.load_cached(key, self.ctx.n_items, int(self.item_mean.shape[0]))
            self._cache_file = str(I.cache_dir() / f"{key}.npy")
        if arr is None:
            arr = I.encode_all(self._item_backbone(), ic, self.content, self.cfg.bf16, progress=ic.cache)
            if key is not None:
                I.save_cached(key, arr)
        return arr

    def _ensure_table(self) -> None:
        if bool(self.item_stats_ready):
            return
        arr = self._initial_table()
        real = torch.from_numpy(arr[1:])  # [N, H]
        with torch.no_grad():
            self.item_mean.copy_(real.mean(0))
            self.item_white.copy_(normaliser(real, self.cfg.item_encoder.normalise, self.cfg.item_encoder.whiten_eps))
            if self.cfg.item_encoder.mode == "frozen":
                self.item_table.copy_(torch.from_numpy(arr))
                self._item_bb = None  # the frozen item LM is not needed any more
            self.item_stats_ready.fill_(True)

    def _raw_items(self, ids: torch.Tensor) -> torch.Tensor:
        """[..., H] normalised (whitened) content embeddings of item ids (any shape)."""
        self._ensure_table()
        if self.cfg.item_encoder.mode == "frozen":
            return (self.item_table[ids] - self.item_mean) @ self.item_white  # [..., H]
        uniq, inv = torch.unique(ids, return_inverse=True)  # [M], ids.shape
        bb = self._item_backbone()
        real = uniq[uniq > 0]
        h = torch.zeros(len(uniq), bb.hidden, device=ids.device)  # [M, H]
        if len(real):
            enc = I.item_inputs(bb, self.cfg.item_encoder, self.content, real.tolist())
            h[uniq > 0] = I.encode(bb, enc, self.cfg.bf16)  # [M', H]
        return (h[inv] - self.item_mean) @ self.item_white  # [..., H]

    def _adapt(self, raw: torch.Tensor) -> torch.Tensor:
        return self.item_proj(self.item_norm(raw))  # [..., H]

    def item_vectors(self) -> torch.Tensor:
        if self.cfg.item_encoder.mode == "frozen":
            vecs = self._adapt(self._raw_items(torch.arange(self.ctx.n_items + 1, device=self.item_mean.device)))
        elif not self.training and self._eval_items is not None:
            vecs = self._eval_items
        else:
            self._ensure_table()
            with torch.no_grad():
                raw = torch.from_numpy(I.encode_all(self._item_backbone(), self.cfg.item_encoder, self.content,
                                                    self.cfg.bf16)).to(self.item_mean.device)  # [N+1, H]
                vecs = self._adapt((raw - self.item_mean) @ self.item_white)  # [N+1, H]
            if not self.training:
                self._eval_items = vecs
        return F.normalize(vecs, dim=-1) if self.cfg.loss == "sampled_softmax" else vecs

    def train(self, mode: bool = True) -> Molar:
        self._eval_items = None  # item vectors re-encoded after any training
        super().train(mode)
        return self

    # ---- users -------------------------------------------------------------------------------
    def _run_user_lm(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pos = (mask.long().cumsum(1) - 1).clamp(min=0)  # [B, T]
        with I.autocast(self.cfg.bf16, x.device):
            h = self.user_lm(inputs_embeds=x, attention_mask=mask.long(), position_ids=pos).last_hidden_state
        return h.float()  # [B, T, H]

    def sequence_states(self, batch: SeqBatch) -> torch.Tensor:
        """[B, L, H] content user embedding after each position (causal)."""
        items = batch.items[:, -self.ctx.max_len:]  # [B, L]
        B, L = items.shape
        mask = items != 0  # [B, L]
        x = self.in_proj(self._adapt(self._raw_items(items)))  # [B, L, H]
        u = self.user_token.to(x.dtype).expand(B, 1, -1)  # [B, 1, H]
        one = torch.ones(B, 1, dtype=torch.bool, device=items.device)  # [B, 1]
        if self.cfg.user_encoder.user_token == "prefix":
            seq, m = torch.cat([u, x], 1), torch.cat([one, mask], 1)  # [B, 1+L, H], [B, 1+L]
            h = self._run_user_lm(seq, m)[:, 1:]  # [B, L, H]
        else:  # [USER] i1 [USER] i2 [USER] ...: read at the [USER] after each item
            inter = torch.stack([x, u.expand(B, L, -1)], 2).reshape(B, 2 * L, -1)  # [B, 2L, H]
            seq = torch.cat([u, inter], 1)  # [B, 1+2L, H]
            m = torch.cat([one, mask.repeat_interleave(2, 1)], 1)  # [B, 1+2L]
            h = self._run_user_lm(seq, m)[:, 2::2]  # [B, L, H]
        return self.out_proj(h)  # [B, L, H]

    def user_repr(self, batch: SeqBatch) -> torch.Tensor:
        h = self.sequence_states(batch)[:, -1]  # [B, H]
        return F.normalize(h, dim=-1) if self.cfg.loss == "sampled_softmax" else h

    # ---- training ------------------------------------------------------------------------------
    def loss(self, batch: SeqBatch) -> torch.Tensor:
        states = self.sequence_states(batch)  # [B, L, H]
        sel = batch.targets[:, -states.shape[1]:] > 0  # [B, L]
        h, t = states[sel], batch.targets[:, -states.shape[1]:][sel]  # [P, H], [P]
        n = self.ctx.n_items
        if self.cfg.loss == "bce":
            neg = torch.randint(1, n + 1, t.shape, device=t.device)  # [P]
            neg = torch.where(neg == t, neg % n + 1, neg)  # [P]
            v = self._adapt(self._raw_items(torch.stack([t, neg])))  # [2, P, H]
            pos_l, neg_l = (h * v[0]).sum(-1), (h * v[1]).sum(-1)  # [P], [P]
            rec = (F.binary_cross_entropy_with_logits(pos_l, torch.ones_like(pos_l))
                   + F.binary_cross_entropy_with_logits(neg_l, torch.zeros_like(neg_l)))
        else:
            neg = torch.randint(1, n + 1, (self.cfg.n_negatives,), device=t.device)  # [K]
            v = F.normalize(self._adapt(self._raw_items(torch.cat([t, neg]))), dim=-1)  # [P+K, H]
            hn = F.normalize(h, dim=-1)  # [P, H]
            scale = self.logit_scale.exp().clamp(max=100.0)  # learnable 1 / temperature
            pos_l = (hn * v[: len(t)]).sum(-1, keepdim=True) * scale  # [P, 1]
            neg_l = ((hn @ v[len(t):].T) * scale).masked_fill(neg[None, :] == t[:, None], float("-inf"))  # [P, K]
            rec = F.cross_entropy(torch.cat([pos_l, neg_l], 1), torch.zeros_like(t))
        if self.align_proj is None:
            return rec
        return rec + self.cfg.align.alpha * self.align_loss(batch, states)

    def align_loss(self, batch: SeqBatch, states: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE between projected E_con and the ID model's E_id at target positions."""
        assert self.align_proj is not None
        e_id = A.teacher_states(self._teacher[0], batch)  # [B, Lt, D]
        Lt = min(e_id.shape[1], states.shape[1])
        e_con = self.align_proj(states[:, -Lt:])  # [B, Lt, D]
        sel = A.align_positions(batch.targets[:, -Lt:] > 0, self.cfg.align.positions, self.cfg.align.max_pairs)
        return A.info_nce(e_con[sel], e_id[:, -Lt:].to(e_con.device)[sel], self.cfg.align.tau)
