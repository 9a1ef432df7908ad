"""Shared machinery of the top-K collaborative-filtering models (``kind = "cf"``).

Training data hook (what the training engine calls for a CF model instead of building
sequence windows)::

    ds = model.train_dataset()            # torch Dataset: one row per training interaction
    loader = DataLoader(ds, batch_size, shuffle=True, collate_fn=ds.collate)  # or model.collate_train
    loss = model.loss(batch)              # batch: SeqBatch with users [B], targets [B, 1]

An epoch therefore covers every training interaction (user, item) exactly once as a BPR
positive. ``loss`` draws one negative per positive uniformly from the *warm* items (items with
at least one training interaction; held-out cold items are never used, so a model cannot learn
that they exist from the sampler) that the user has not interacted with in training, using the
torch RNG (seeded by the engine). ``on_epoch_start(epoch)`` re-samples per-epoch structures
(edge pruning, progressive weight copying).

Scoring: ``user_repr(batch)`` looks up ``batch.users``; in eval mode the full propagation is
computed once and cached until a parameter changes (keyed by the tensors' version counters).

Fallback: fed the engine's sequence windows instead (targets [B, L]), ``loss`` uses every
non-zero target with its row's user; each training interaction then appears once per epoch,
except each user's first one (it has no history, so the window builder makes it no target).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import Dataset

from mosaicrec.config import StrictModel
from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.base import ModelContext, Recommender
from mosaicrec.models.cf.graph import SparseOp, bipartite_adj, pruned_bipartite_adj, unique_pairs


class CFConfig(StrictModel):
    dim: int = Field(64, ge=1, description="embedding size d")
    reg_weight: float = Field(1e-4, ge=0, description="L2 regulariser weight")
    neg_tries: int = Field(10, ge=1, description="re-draws of a negative that the user has seen")


class PairDataset(Dataset):
    """Training interactions as (user, item) rows; supports batched fetching."""

    def __init__(self, pairs: np.ndarray, item_domain: np.ndarray | None = None) -> None:
        self.pairs = np.ascontiguousarray(pairs, dtype=np.int64)  # [E, 2]
        self.item_domain = item_domain

    def collate(self, rows: np.ndarray | list[np.ndarray]) -> SeqBatch:
        return pairs_to_batch(rows, self.item_domain)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.pairs[i]

    def __getitems__(self, idx: list[int]) -> np.ndarray:
        return self.pairs[np.asarray(idx, dtype=np.int64)]  # [B, 2]


def pairs_to_batch(rows: np.ndarray | list[np.ndarray], item_domain: np.ndarray | None = None) -> SeqBatch:
    """Collate (user, item) rows into a SeqBatch: users [B], items = targets = positives [B, 1]."""
    arr = torch.as_tensor(np.asarray(rows, dtype=np.int64).reshape(-1, 2))  # [B, 2]
    users, pos = arr[:, 0], arr[:, 1:2]  # [B], [B, 1]
    dom = torch.zeros_like(pos)
    if item_domain is not None:
        dom = torch.as_tensor(np.maximum(item_domain[pos.numpy()], 0).astype(np.int64))  # [B, 1]
    return SeqBatch(items=pos, domains=dom, lengths=torch.ones(len(arr), dtype=torch.long), users=users,
                    targets=pos.clone(), target_domains=dom.clone())


def id_embeddings(n_users: int, n_items: int, dim: int) -> tuple[nn.Embedding, nn.Embedding]:
    """Free user [U, dim] and item [N+1, dim] embedding tables, Xavier-uniform initialised."""
    users, items = nn.Embedding(n_users, dim), nn.Embedding(n_items + 1, dim)
    nn.init.xavier_uniform_(users.weight)
    nn.init.xavier_uniform_(items.weight)
    return users, items


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """``-mean log sigmoid(s+ - s-)``."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


class CFRecommender(Recommender):
    """Base of the CF models: graph, sampler, BPR and the cached full forward."""

    kind = "cf"
    cfg: CFConfig
    edge_drop: float = 0.0  # subclasses with degree-sensitive pruning set it from their config
    edge_users: torch.Tensor  # buffers (declared for the type checker)
    edge_items: torch.Tensor
    seen_keys: torch.Tensor
    warm_items: torch.Tensor
    _pruned: SparseOp | None = None

    def __init__(self, cfg: CFConfig, ctx: ModelContext) -> None:
        super().__init__(cfg, ctx)
        if ctx.train_pairs is None or len(ctx.train_pairs) == 0:
            raise ValueError(f"{type(self).__name__}: ModelContext.train_pairs is empty; a CF model "
                             "needs the training (user_idx, item_idx) interactions")
        pairs = np.asarray(ctx.train_pairs, dtype=np.int64)
        if pairs.ndim != 2 or pairs.shape[1] != 2:
            raise ValueError(f"ModelContext.train_pairs: expected shape [E, 2], got {pairs.shape}")
        if pairs[:, 1].min() < 1 or pairs[:, 1].max() > ctx.n_items or pairs[:, 0].max() >= ctx.n_users:
            raise ValueError("ModelContext.train_pairs: item ids must be in 1..n_items and users < n_users")
        self.n_users, self.n_item_rows = ctx.n_users, ctx.n_items + 1
        self._pairs = pairs
        edge_users, edge_items = unique_pairs(pairs)  # deduplicated graph edges [E'] each
        self.register_buffer("edge_users", edge_users, persistent=False)
        self.register_buffer("edge_items", edge_items, persistent=False)
        keys = torch.unique(self.edge_users * self.n_item_rows + self.edge_items)  # sorted [E']
        self.register_buffer("seen_keys", keys, persistent=False)
        self.register_buffer("warm_items", torch.unique(self.edge_items), persistent=False)
        self._adj: SparseOp | None = None
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._cache_key: tuple[int, ...] = ()

    # ----- training data hook -------------------------------------------------------------
    def train_dataset(self) -> PairDataset:
        return PairDataset(self._pairs, self.ctx.item_domain)

    def collate_train(self, rows: np.ndarray | list[np.ndarray]) -> SeqBatch:
        return pairs_to_batch(rows, self.ctx.item_domain)

    # ----- graph ----------------------------------------------------------------------------
    @property
    def full_adj(self) -> SparseOp:
        """The unpruned normalised user-item adjacency (used for evaluation)."""
        if self._adj is None or self._adj.device != self.edge_users.device:
            adj = bipartite_adj(self.edge_users, self.edge_items, self.n_users, self.n_item_rows)
            self._adj = SparseOp(adj, symmetric=True)
        return self._adj

    def train_adj(self) -> SparseOp:
        """The adjacency used in training steps (pruned per epoch when ``edge_drop > 0``)."""
        if self.edge_drop <= 0.0:
            return self.full_adj
        if self._pruned is None:
            self._pruned = SparseOp(pruned_bipartite_adj(self.edge_users, self.edge_items, self.n_users,
                                                         self.n_item_rows, self.edge_drop), symmetric=True)
        return self._pruned

    def on_epoch_start(self, epoch: int) -> None:
        self._pruned = None  # re-sample the pruned graph each epoch

    @classmethod
    def example_context(cls, n_items: int = 8, max_len: int = 4) -> ModelContext:
        """A toy context this model can be built on (for registry-wide model tests)."""
        return toy_context(n_items=n_items, max_len=max_len)

    # ----- sampling and loss ----------------------------------------------------------------
    def sample_negatives(self, users: torch.Tensor) -> torch.Tensor:
        """One warm item per user that the user has not interacted with in training."""
        warm = self.warm_items
        neg = warm[torch.randint(len(warm), users.shape, device=users.device)]  # [B]
        for _ in range(self.cfg.neg_tries):
            keys = users * self.n_item_rows + neg
            pos = torch.searchsorted(self.seen_keys, keys).clamp_max(len(self.seen_keys) - 1)
            hit = self.seen_keys[pos] == keys  # [B]
            if not bool(hit.any()):
                break
            neg = torch.where(hit, warm[torch.randint(len(warm), users.shape, device=users.device)], neg)
        return neg

    def loss(self, batch: SeqBatch) -> torch.Tensor:
        """BPR over every non-zero target of the batch, paired with its row's user: [B, 1] from
        :meth:`collate_train`, or [B, L] when fed the engine's sequence windows."""
        targets = batch.targets.reshape(len(batch.users), -1)  # [B, T]
        keep = targets != 0
        users = batch.users[:, None].expand_as(targets)[keep]  # [P]
        pos = targets[keep]  # [P]
        neg = self.sample_negatives(users)  # [P]
        return self.bpr_terms(users, pos, neg)

    def bpr_terms(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # ----- scoring --------------------------------------------------------------------------
    def forward_all(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(user vectors [U, D], item vectors [N+1, D]) after propagation."""
        raise NotImplementedError

    def _state_key(self) -> tuple[int, ...]:
        """Changes whenever a parameter or buffer is modified in place (optimiser step, load)."""
        return tuple(t._version for t in (*self.parameters(), *self.buffers())) + (id(self.edge_users),)

    def _final(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            return self.forward_all(train=True)
        key = self._state_key()
        if self._cache is None or self._cache_key != key:
            with torch.no_grad():
                self._cache = self.forward_all(train=False)
            self._cache_key = key
        return self._cache

    def train(self, mode: bool = True) -> CFRecommender:
        self._cache = None
        return super().train(mode)

    def user_repr(self, batch: SeqBatch) -> torch.Tensor:
        return self._final()[0][batch.users]  # [B, D]

    def item_vectors(self) -> torch.Tensor:
        return self._final()[1]  # [N+1, D]


def l2_reg(*tensors: torch.Tensor) -> torch.Tensor:
    """Sum of squared entries divided by the batch size (MMRec's EmbLoss without the 1/2)."""
    return sum(t.pow(2).sum() for t in tensors) / max(1, tensors[0].shape[0])  # type: ignore[return-value]


def select_features(ctx: ModelContext, names: list[str] | None, model: str) -> dict[str, np.ndarray]:
    """The frozen item features a content model uses: ``names`` (in that order) or all of
    ``ctx.features`` (sorted by name). Each must be [N+1, d]."""
    if names is None:
        names = sorted(ctx.features)
    if not names:
        raise ValueError(f"model {model!r} needs item features: add a `features:` section to the "
                         "experiment YAML (e.g. text: {encoder: minilm, field: text})")
    out = {}
    for name in names:
        if name not in ctx.features:
            raise ValueError(f"model {model!r}: feature {name!r} not in the experiment's features "
                             f"(have: {sorted(ctx.features)})")
        arr = np.array(ctx.features[name], dtype=np.float32)  # a writable copy (the store memory-maps)
        if arr.ndim != 2 or arr.shape[0] != ctx.n_items + 1:
            raise ValueError(f"feature {name!r}: expected shape [n_items+1={ctx.n_items + 1}, d], got {arr.shape}")
        out[name] = arr
    return out


def graph_cache_dir(ctx: ModelContext) -> str | None:
    """Where item-item graphs are cached: ``ctx.extra['cache_dir']`` if the engine sets it."""
    value = ctx.extra.get("cache_dir")
    return str(value) if value else None


def knn_weights(names: list[str], given: dict[str, float] | None) -> dict[str, float]:
    """Per-modality mixing weights of the item-item graph (default: equal), normalised to sum 1."""
    w = {n: 1.0 for n in names} if not given else {n: float(given.get(n, 0.0)) for n in names}
    unknown = sorted(set(given or {}) - set(names))
    if unknown:
        raise ValueError(f"knn_weights: unknown feature(s) {unknown}; features used: {names}")
    total = sum(w.values())
    if total <= 0:
        raise ValueError(f"knn_weights: weights must sum to a positive number, got {w}")
    return {n: v / total for n, v in w.items()}


def toy_context(n_users: int = 6, n_items: int = 8, seed: int = 0, features: dict[str, int] | None = None,
                cold: tuple[int, ...] = (), max_len: int = 4) -> ModelContext:
    """A small deterministic CF context for tests and examples: every user has 2-4 training
    items (never one of ``cold``), and random features of the given widths (row 0 zeros)."""
    rng = np.random.default_rng(seed)
    warm = np.array([i for i in range(1, n_items + 1) if i not in cold])
    pairs = [(u, int(i)) for u in range(n_users)
             for i in rng.choice(warm, size=min(len(warm), 2 + u % 3), replace=False)]
    feats = {}
    for name, d in (features if features is not None else {"text": 12, "image": 5}).items():
        f = rng.normal(size=(n_items + 1, d)).astype(np.float32)
        f[0] = 0.0
        feats[name] = f
    return ModelContext(n_items=n_items, n_users=n_users, n_domains=1,
                        item_domain=np.r_[-1, np.zeros(n_items)].astype(np.int8), max_len=max_len,
                        domains=["all"], features=feats, train_pairs=np.array(pairs, dtype=np.int64))
