"""C2DSR: contrastive cross-domain sequential recommendation (Cao et al., CIKM 2022), the baseline.

* Graph-enhanced item embeddings: one user-item interaction graph over all domains (the
  cross-domain graph) and one per domain, built from the training interactions
  (``ModelContext.train_pairs``). Each graph has its own base item/user embedding tables,
  propagated by ``gnn_layers`` rounds of symmetric-normalised message passing (LightGCN-style,
  the mean of the layer outputs).
* Sequence encoders: a causal attention encoder over each per-domain view S^d (items embedded
  by the domain-d graph) and one over the merged sequence S^{X+Y} (cross-domain graph
  embeddings); per-domain views are aligned to merged steps as in
  :mod:`mosaicrec.models.cdsr.layers`.
* Prediction for target domain d at step t: ``(h^d_t + h^{XY}_t) . w_i + b_i`` over the
  domain-d items (a per-item output layer, as the paper's linear heads); ``mixed_loss_weight``
  adds the same loss from the merged view alone.
* Contrastive infomax (weight ``infomax_weight``, the paper's lambda): a bilinear
  discriminator must tell the user's pooled single-domain representation paired with its own
  merged-sequence representation (positive) from the pair with a corrupted merged sequence in
  which the items of the other domains are replaced by random items of the same domains (negative).

Where the paper is silent or not confirmed here (marked [?] in the docs): LightGCN-style
propagation instead of the paper's GCN layers [?], mean pooling for the infomax
representations [?], default lambda 0.3 [?].
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mosaicrec.config import StrictModel
from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.base import ModelContext, Recommender
from mosaicrec.models.cdsr.layers import (
    align_to_merged,
    domain_view,
    example_context,
    local_index,
    trim_view,
)
from mosaicrec.models.cdsr.packed import PackedEncoders, stack_legacy_state
from mosaicrec.registry import MODELS


class C2DSRConfig(StrictModel):
    hidden: int = Field(64, ge=2)
    layers: int = Field(2, ge=1, description="attention blocks per sequence encoder")
    heads: int = Field(1, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    gnn_layers: int = Field(1, ge=0, description="graph propagation rounds (0 = plain embeddings)")
    infomax_weight: float = Field(0.3, ge=0.0, description="lambda: weight of the contrastive infomax loss")
    mixed_loss_weight: float = Field(1.0, ge=0.0, description="loss of the merged view alone")
    infomax_corruption: Literal["sampled_domain", "every_domain"] = Field(
        "sampled_domain", description="infomax negatives: per user, one domain (drawn among its "
        "sequence's domains) kept and the others corrupted (one encoder pass), or one corrupted "
        "sequence per domain (nD encoder passes)")
    loss_scope: Literal["domain", "all", "sampled"] = Field(
        "domain", description="softmax over the domain's items, all items, or the target and "
                              "n_negatives shared uniform items of its domain")
    n_negatives: int = Field(256, ge=1)


def bipartite_blocks(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The two off-diagonal blocks of the symmetric-normalised user-item adjacency.

    The graph's adjacency is ``[[0, R], [R^T, 0]]`` with ``R[u, i] = 1 / sqrt(deg(u) deg(i))``
    for every distinct (user, item) pair; returns ``R [U, N+1]`` and ``R^T [N+1, U]`` (sparse
    CSR; item 0 = padding, no edges). Propagating with the blocks gives exactly the full
    adjacency's result without touching the zero blocks.
    """
    pairs = np.unique(np.stack([users.astype(np.int64), items.astype(np.int64)], 1), axis=0)
    u, i = pairs[:, 0], pairs[:, 1]
    deg_u = np.bincount(u, minlength=n_users).astype(np.float32)
    deg_i = np.bincount(i, minlength=n_items + 1).astype(np.float32)
    vals = torch.as_tensor(1.0 / np.sqrt(deg_u[u] * deg_i[i]), dtype=torch.float32)
    idx = torch.as_tensor(np.stack([u, i]))
    r = torch.sparse_coo_tensor(idx, vals, (n_users, n_items + 1), check_invariants=False).coalesce()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": CSR @ dense is what we use
        warnings.simplefilter("ignore", UserWarning)
        return r.to_sparse_csr(), r.t().coalesce().to_sparse_csr()


def csr_rows_matmul(csr: torch.Tensor, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """``(csr @ dense)[ids]`` [R, D] computed from the rows ``ids`` [R] of ``csr`` only.

    One ``embedding_bag`` (weighted sum of the ``dense`` rows each selected row of ``csr``
    points to); its gradient reaches ``dense`` (only the rows those edges touch are non-zero).
    """
    crow, col, val = csr.crow_indices(), csr.col_indices(), csr.values()
    start = crow[ids]  # [R]
    count = crow[ids + 1] - start  # [R] edges per selected row
    offsets = torch.cumsum(count, 0) - count  # [R]
    total = int(count.sum())
    pos = torch.repeat_interleave(start - offsets, count, output_size=total) + torch.arange(
        total, device=ids.device)  # [E] edge positions in the CSR arrays
    return F.embedding_bag(col[pos], dense, offsets, mode="sum", per_sample_weights=val[pos])  # [R, D]


class GraphEmbedding(nn.Module):
    """Item embeddings [N+1, D] propagated over one user-item graph (LightGCN-style layer mean)."""

    r_ui: torch.Tensor
    r_iu: torch.Tensor

    def __init__(self, blocks: tuple[torch.Tensor, torch.Tensor], n_users: int, n_items: int,
                 hidden: int, layers: int) -> None:
        super().__init__()
        self.register_buffer("r_ui", blocks[0], persistent=False)  # [U, N+1]
        self.register_buffer("r_iu", blocks[1], persistent=False)  # [N+1, U]
        self.n_users, self.layers = n_users, layers
        self.users = nn.Parameter(torch.randn(n_users, hidden) * 0.02)
        self.items = nn.Parameter(torch.randn(n_items + 1, hidden) * 0.02)

    def forward(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """The propagated rows of ``ids [R]`` -> [R, D] (None = every item, [N+1, D]; id 0 = zeros).

        Every round but the last needs every item (the next round's users read them); the last
        round is computed for the requested rows only (a training step needs the items of its
        batch, a few percent of the catalogue).
        """
        users: torch.Tensor = self.users  # [U, D]
        items: torch.Tensor = self.items  # [N+1, D]
        parts = [items if ids is None else items[ids]]  # per-round item states of the rows
        for k in range(self.layers):
            last = k + 1 == self.layers
            if last and ids is not None:
                new_items = csr_rows_matmul(self.r_iu, ids, users)  # [R, D]
            else:
                new_items = self.r_iu @ users  # [N+1, D]
            if not last:  # the last round's user states are not used
                users = self.r_ui @ items  # [U, D]
            items = new_items
            parts.append(items if ids is None or last else items[ids])
        out = sum(parts[1:], parts[0]) / (self.layers + 1)  # [R or N+1, D]
        if ids is None:
            return torch.cat([torch.zeros_like(out[:1]), out[1:]])  # [N+1, D] row 0 = padding
        return out * (ids != 0).unsqueeze(-1).to(out.dtype)  # [R, D] padding rows = 0


def lookup(graph: nn.Module, items: torch.Tensor) -> torch.Tensor:
    """``graph()[items]`` [*items.shape, D], propagating only the distinct ids of ``items``."""
    ids, inverse = torch.unique(items, return_inverse=True)  # [R], [*]
    rows: torch.Tensor = graph(ids)  # [R, D]
    return rows[inverse]  # [*, D]


#: item ids [*] -> the output layer's (weights [*, D], bias [*]) for them
OutRows = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@MODELS.register("c2dsr")
class C2DSR(Recommender):
    cfg: C2DSRConfig
    local: torch.Tensor
    all_items: torch.Tensor
    Config = C2DSRConfig
    #: build_context fills ModelContext.train_pairs for models that set this.
    needs_train_pairs = True

    @classmethod
    def example_context(cls, n_items: int, max_len: int) -> ModelContext:
        return example_context(n_items, max_len)

    def __init__(self, cfg: C2DSRConfig, ctx: ModelContext) -> None:
        super().__init__(cfg, ctx)
        if ctx.train_pairs is None:
            raise ValueError("c2dsr needs ModelContext.train_pairs (training user-item pairs) for its graphs")
        self.n_domains = max(ctx.n_domains, 1)
        users, items = ctx.train_pairs[:, 0], ctx.train_pairs[:, 1]
        item_dom = np.asarray(ctx.item_domain)[items]
        graphs = [bipartite_blocks(users, items, ctx.n_users, ctx.n_items)]
        graphs += [bipartite_blocks(users[item_dom == d], items[item_dom == d], ctx.n_users, ctx.n_items)
                   for d in range(self.n_domains)]
        self.graphs = nn.ModuleList(GraphEmbedding(a, ctx.n_users, ctx.n_items, cfg.hidden, cfg.gnn_layers)
                                    for a in graphs)  # [0] = cross-domain, [1 + d] = domain d
        self.encoders = nn.ModuleList(PackedEncoders(1, cfg.hidden, cfg.layers, cfg.heads, cfg.dropout, ctx.max_len)
                                      for _ in range(self.n_domains + 1))  # [0] = merged, [1 + d] = domain d
        self.empty = nn.Parameter(torch.zeros(self.n_domains, cfg.hidden))
        self.out = nn.Parameter(torch.randn(ctx.n_items + 1, cfg.hidden) * 0.02)
        self.bias = nn.Parameter(torch.zeros(ctx.n_items + 1))
        self.disc = nn.Bilinear(cfg.hidden, cfg.hidden, 1)
        cands, local = local_index(ctx.item_domain, self.n_domains)
        for d, c in enumerate(cands):
            self.register_buffer(f"cands{d}", c, persistent=False)
        self.register_buffer("local", local, persistent=False)
        self.register_buffer("all_items", torch.arange(1, ctx.n_items + 1), persistent=False)
        self.register_buffer("item_dom", torch.as_tensor(np.asarray(ctx.item_domain, dtype=np.int64)),
                             persistent=False)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        for i in range(len(self.encoders)):  # weights saved before the encoders were packed
            stack_legacy_state(state_dict, [f"{prefix}encoders.{i}."], f"{prefix}encoders.{i}.")
        super()._load_from_state_dict(state_dict, prefix, *args)

    def encode(self, batch: SeqBatch) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Merged states [B, L, D], per-domain states aligned to merged steps, per-domain pooled [B, D]."""
        return self._encode(batch)[:3]

    def _encode(self, batch: SeqBatch, corrupt: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], torch.Tensor | None]:
        """:meth:`encode` plus the merged encoder's states of the ``corrupt [r*B, L]`` sequences.

        Each graph propagates (once per step) only the items the step looks up; the merged
        sequences and their corrupted copies share ONE pass of the merged encoder (same
        padding, as corruption keeps it).
        """
        bsz, span = batch.items.shape
        seqs = batch.items if corrupt is None else torch.cat([batch.items, corrupt])  # [(1+r)B, L]
        states = self.encoders[0](lookup(self.graphs[0], seqs)[None], seqs != 0)[0]  # [(1+r)B, L, D]
        merged, neg_states = states[:bsz], (None if corrupt is None else states[bsz:])  # [B, L, D], [r*B, L, D]
        aligned, pooled = [], []
        for d in range(self.n_domains):
            compact, cols, index, seen = domain_view(batch.items, batch.domains, d)  # [B, L] x4
            compact, cols, index = trim_view(compact, cols, index)  # [B, L'] x2, [B, L]
            mask = compact != 0
            states = self.encoders[1 + d](lookup(self.graphs[1 + d], compact)[None], mask, cols, span)[0]  # [B, L', D]
            aligned.append(align_to_merged(states, index, seen, self.empty[d]))  # [B, L, D]
            pooled.append(states.sum(1) / mask.sum(1, keepdim=True).clamp(min=1))  # [B, D]
        return merged, aligned, pooled, neg_states

    def _logits(self, user: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        return user @ self.out[cand].T + self.bias[cand]  # [n, |cand|]

    def _ce(self, user: torch.Tensor, d: int, target: torch.Tensor, neg: torch.Tensor | None = None,
            rows: OutRows | None = None) -> torch.Tensor:
        """Cross-entropy of targets [n] for user vectors [n, D] over the loss_scope's candidates.

        ``loss_scope: sampled``: against the negatives ``neg [K]``, with the output layer's
        rows taken from ``rows`` (:meth:`_out_rows`, one gather for the whole step).
        """
        if self.cfg.loss_scope == "sampled":
            assert neg is not None and rows is not None, "sampled loss needs negatives and output rows"
            w_t, b_t = rows(target)  # [n, D], [n]
            w_n, b_n = rows(neg)  # [K, D], [K]
            pos = (user * w_t).sum(-1, keepdim=True) + b_t[:, None]  # [n, 1]
            negs = (user @ w_n.T + b_n).masked_fill(neg[None] == target[:, None], -1e9)  # [n, K]
            return F.cross_entropy(torch.cat([pos, negs], 1), torch.zeros_like(target))
        if self.cfg.loss_scope == "domain":
            cand, label = getattr(self, f"cands{d}"), self.local[target]
        else:
            cand, label = self.all_items, target - 1
        return F.cross_entropy(self._logits(user, cand), label)

    def _out_rows(self, ids: torch.Tensor) -> OutRows:
        """Lookup of the output layer's (weights, bias) for the items ``ids`` [any] of one step.

        One gather of each table for the whole step (each gather's gradient is a full-table
        scatter, so one instead of one per loss term).
        """
        uniq = torch.unique(ids)  # [R]
        w, b = self.out[uniq], self.bias[uniq]  # [R, D], [R]

        def rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            at = torch.searchsorted(uniq, x.contiguous())  # [*]
            return w[at], b[at]  # [*, D], [*]
        return rows

    def _negatives(self, d: int) -> torch.Tensor:
        """``n_negatives`` uniform items of domain d [K] (a fresh draw per loss term)."""
        pool = getattr(self, f"cands{d}")
        return pool[torch.randint(len(pool), (self.cfg.n_negatives,), device=pool.device)]  # [K]

    def _corrupt(self, batch: SeqBatch, d: int | torch.Tensor) -> torch.Tensor:
        """Merged items with every item of the other domains replaced by a random item of its domain.

        ``d``: the kept domain, one for the batch or one per row ``[B]``.
        """
        items = batch.items.clone()  # [B, L]
        keep = torch.as_tensor(d, device=items.device).view(-1, 1)  # [B or 1, 1]
        for e in range(self.n_domains):
            where = (items != 0) & (batch.domains == e) & (keep != e)  # [B, L]
            pool = getattr(self, f"cands{e}")
            pick = torch.randint(len(pool), (int(where.sum()),), device=items.device)
            items[where] = pool[pick]
        return items

    def _corruption(self, batch: SeqBatch) -> tuple[torch.Tensor, list[int], list[torch.Tensor]] | None:
        """The infomax negatives: corrupted merged sequences ``[r*B, L]``, their kept domains and,
        per kept domain, the rows ``[B]`` it scores (None when no row has a domain)."""
        mask = batch.mask  # [B, L]
        present = torch.stack([((batch.domains == d) & mask).any(1) for d in range(self.n_domains)], 1)  # [B, nD]
        if self.cfg.infomax_corruption == "every_domain":
            doms = [d for d in range(self.n_domains) if present[:, d].any()]
            rows = [present[:, d] for d in doms]  # [B] each
            if not doms:
                return None
            corrupt = torch.cat([self._corrupt(batch, d) for d in doms])  # [nD'*B, L]
        else:  # one domain per user, drawn among the domains of its sequence: ONE corrupted sequence
            ok = present.any(1)  # [B]
            pick = torch.multinomial(present.float() + (~ok).float().unsqueeze(1), 1).squeeze(1)  # [B]
            doms = [d for d in range(self.n_domains) if (ok & (pick == d)).any()]
            rows = [ok & (pick == d) for d in doms]
            if not doms:
                return None
            corrupt = self._corrupt(batch, pick)  # [B, L]
        return corrupt, doms, rows

    def _infomax(self, batch: SeqBatch, merged: torch.Tensor, pooled: list[torch.Tensor],
                 neg_states: torch.Tensor, doms: list[int], rows: list[torch.Tensor]) -> torch.Tensor:
        """``neg_states [r*B, L, D]``: the merged encoder's states of :meth:`_corruption`'s sequences."""
        count = batch.mask.sum(1, keepdim=True).clamp(min=1)  # [B, 1]
        cross = merged.sum(1) / count  # [B, D]
        reps = neg_states.shape[0] // len(batch)
        negs = neg_states.sum(1).view(reps, len(batch), -1) / count  # [r, B, D]
        loss = merged.new_zeros(())
        for j, (d, has) in enumerate(zip(doms, rows, strict=True)):
            neg = negs[j if reps > 1 else 0]  # [B, D]
            pos_s, neg_s = self.disc(pooled[d], cross).squeeze(-1), self.disc(pooled[d], neg).squeeze(-1)  # [B]
            loss = loss + F.binary_cross_entropy_with_logits(pos_s[has], torch.ones_like(pos_s[has])) \
                + F.binary_cross_entropy_with_logits(neg_s[has], torch.zeros_like(neg_s[has]))
        return loss

    def loss(self, batch: SeqBatch) -> torch.Tensor:
        cfg = self.cfg
        corruption = self._corruption(batch) if cfg.infomax_weight > 0 else None
        merged, aligned, pooled, neg_states = self._encode(batch, None if corruption is None else corruption[0])
        total = merged.new_zeros(())
        terms = []  # (d, b, t, target, negatives of the joint and of the merged-only loss)
        for d in range(self.n_domains):
            b, t = ((batch.targets > 0) & (batch.target_domains == d)).nonzero(as_tuple=True)  # [n] x2
            if not len(b):
                continue
            negs = [self._negatives(d) if cfg.loss_scope == "sampled" else None
                    for _ in range(1 + (cfg.mixed_loss_weight > 0))]  # a fresh draw per loss term
            terms.append((d, b, t, batch.targets[b, t], negs))
        out_rows = None
        if cfg.loss_scope == "sampled" and terms:
            out_rows = self._out_rows(torch.cat([x for term in terms for x in (term[3], *term[4]) if x is not None]))
        for d, b, t, target, negs in terms:
            user = aligned[d][b, t] + merged[b, t]  # [n, D]
            total = total + self._ce(user, d, target, negs[0], out_rows)
            if cfg.mixed_loss_weight > 0:
                total = total + cfg.mixed_loss_weight * self._ce(merged[b, t], d, target, negs[1], out_rows)
        if corruption is not None and neg_states is not None:
            _, doms, rows = corruption
            total = total + cfg.infomax_weight * self._infomax(batch, merged, pooled, neg_states, doms, rows)
        return total

    def user_repr(self, batch: SeqBatch) -> torch.Tensor:
        """[B, D+1] (h^d + h^XY at the last step, 1) for each query's target domain d."""
        merged, aligned, _ = self.encode(batch)
        per_domain = torch.stack([a[:, -1] for a in aligned])  # [nD, B, D]
        dom = batch.target_domains.clamp(0, self.n_domains - 1)  # [B]
        user = per_domain[dom, torch.arange(len(dom), device=dom.device)] + merged[:, -1]  # [B, D]
        return torch.cat([user, torch.ones_like(user[:, :1])], -1)  # [B, D+1]

    def item_vectors(self) -> torch.Tensor:
        return torch.cat([self.out, self.bias.unsqueeze(-1)], -1)  # [N+1, D+1]
