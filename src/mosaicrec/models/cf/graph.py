"""Graphs for the collaborative-filtering models: the user-item graph and the item-item kNN graph.

Node layout of the user-item graph: users ``0..U-1``, then items ``U + item_idx`` for item ids
``0..N`` (node ``U`` is the padding item: it has no edges). Adjacencies are symmetric-normalised
``D^-1/2 A D^-1/2`` (LightGCN). The item-item graph connects each item to its ``k`` most
cosine-similar items on raw features, normalised the same way, and is cached on disk keyed by a
hash of the feature bytes and the graph parameters (never by file names).

Products ``A @ x`` inside training steps go through :class:`SparseOp` (CSR storage, a custom
backward ``A^T @ grad``): torch's COO ``sparse.mm`` is ~3x slower forward and its backward
transposes and re-coalesces the COO matrix at every step, which made one ML-1M epoch
(1.6M non-zeros, 394 steps) cost minutes. See docs/lirdrec.md ("Training cost").
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

_MEMORY_CACHE: dict[str, torch.Tensor] = {}


class _CSRMatMul(torch.autograd.Function):
    """``A @ x`` with ``A`` a constant CSR matrix; backward ``A^T @ grad`` with ``A^T`` given."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, a_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.a_t = a_t
        return a @ x  # [n, D]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        return None, None, ctx.a_t @ grad.contiguous()  # [m, D]


class SparseOp:
    """A frozen sparse matrix prepared for many products ``A @ x`` (gradients flow into ``x``
    only). Holds ``A`` and ``A^T`` in CSR; for a ``symmetric`` matrix they are the same object."""

    def __init__(self, coo: torch.Tensor, symmetric: bool = False) -> None:
        self.coo = coo.coalesce()
        self.symmetric = symmetric
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
            warnings.simplefilter("ignore", UserWarning)
            self.csr = self.coo.to_sparse_csr()
            self.csr_t = self.csr if symmetric else self.coo.t().coalesce().to_sparse_csr()

    @property
    def nnz(self) -> int:
        return int(self.coo._nnz())

    @property
    def shape(self) -> torch.Size:
        return self.coo.shape

    @property
    def device(self) -> torch.device:
        return self.coo.device

    def to(self, device: torch.device | str) -> SparseOp:
        if torch.device(device) == self.coo.device:
            return self
        return SparseOp(self.coo.to(device), self.symmetric)

    def to_dense(self) -> torch.Tensor:
        return self.coo.to_dense()

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        return _CSRMatMul.apply(self.csr, self.csr_t, x)  # type: ignore[no-any-return]


def spmm(adj: torch.Tensor | SparseOp, x: torch.Tensor) -> torch.Tensor:
    """``adj @ x`` for a :class:`SparseOp` or a sparse COO tensor."""
    return adj @ x if isinstance(adj, SparseOp) else torch.sparse.mm(adj, x)


def _sparse(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n: int) -> torch.Tensor:
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n), check_invariants=False).coalesce()


def sym_norm_values(rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int) -> torch.Tensor:
    """``1 / sqrt(deg_row(r) * deg_col(c))`` for each edge (r, c) of a 0/1 matrix."""
    deg_r = torch.bincount(rows, minlength=n_rows).float() + 1e-7  # [n_rows]
    deg_c = torch.bincount(cols, minlength=n_cols).float() + 1e-7  # [n_cols]
    return deg_r[rows].rsqrt() * deg_c[cols].rsqrt()  # [E]


def unique_pairs(pairs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Deduplicated (user, item) edge lists from ``pairs`` [E, 2]."""
    uniq = np.unique(np.asarray(pairs, dtype=np.int64), axis=0)  # [E', 2]
    t = torch.from_numpy(uniq)
    return t[:, 0].contiguous(), t[:, 1].contiguous()


def bipartite_adj(users: torch.Tensor, items: torch.Tensor, n_users: int, n_item_rows: int) -> torch.Tensor:
    """Symmetric-normalised adjacency [U+N+1, U+N+1] of the user-item graph given by its edges."""
    vals = sym_norm_values(users, items, n_users, n_item_rows)  # [E]
    n = n_users + n_item_rows
    rows = torch.cat([users, items + n_users])
    cols = torch.cat([items + n_users, users])
    return _sparse(rows, cols, torch.cat([vals, vals]), n)


def pruned_bipartite_adj(users: torch.Tensor, items: torch.Tensor, n_users: int, n_item_rows: int,
                         drop: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Degree-sensitive edge pruning (FREEDOM): keep ``(1 - drop)`` of the edges, sampled without
    replacement with probability proportional to their normalised weight (edges between
    low-degree nodes are kept more often); the kept graph is re-normalised."""
    if drop <= 0.0:
        return bipartite_adj(users, items, n_users, n_item_rows)
    weights = sym_norm_values(users, items, n_users, n_item_rows)  # [E]
    n_keep = max(1, int(len(weights) * (1.0 - drop)))
    keep = torch.multinomial(weights, n_keep, replacement=False, generator=generator)  # [E_keep]
    return bipartite_adj(users[keep], items[keep], n_users, n_item_rows)


def propagate(adj: torch.Tensor | SparseOp, x: torch.Tensor, n_layers: int, reduce: str = "mean") -> torch.Tensor:
    """LightGCN: combine layers 0..L of ``x <- adj @ x`` by their mean (or sum)."""
    layers = [x]
    for _ in range(n_layers):
        x = spmm(adj, x)  # [n, D]
        layers.append(x)
    out = torch.stack(layers, dim=0)  # [L+1, n, D]
    return out.mean(0) if reduce == "mean" else out.sum(0)


def knn_edges(feat: torch.Tensor, k: int, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges (i, j) from each row i to its ``k`` most cosine-similar rows j (self included, as in
    the official code). Rows with an all-zero feature vector get no edges and are no one's
    neighbour."""
    feat = feat.float()
    norms = feat.norm(dim=1, keepdim=True)  # [N, 1]
    valid = norms.squeeze(1) > 0  # [N]
    unit = feat / norms.clamp_min(1e-12)  # [N, d]
    idx = torch.nonzero(valid).squeeze(1)  # [M]
    sub = unit[idx]  # [M, d]
    k = min(k, len(idx))
    rows, cols = [], []
    for start in range(0, len(idx), chunk):
        sim = sub[start:start + chunk] @ sub.T  # [C, M]
        nbr = sim.topk(k, dim=1).indices  # [C, k]
        rows.append(idx[start:start + chunk].repeat_interleave(k))
        cols.append(idx[nbr.reshape(-1)])
    if not rows:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    return torch.cat(rows), torch.cat(cols)


def knn_adj(feat: torch.Tensor, k: int) -> torch.Tensor:
    """Normalised kNN adjacency [N, N] of one modality's features [N, d]."""
    rows, cols = knn_edges(feat, k)
    n = feat.shape[0]
    return _sparse(rows, cols, sym_norm_values(rows, cols, n, n), n)


def graph_key(features: Mapping[str, np.ndarray], k: int, weights: Mapping[str, float]) -> str:
    """Content hash of the features (bytes, shape, dtype) and the graph parameters."""
    h = hashlib.sha256(f"knn-v1 k={k}".encode())
    for name in sorted(features):
        arr = np.ascontiguousarray(features[name])
        h.update(f"|{name}:{arr.dtype}:{arr.shape}:{weights[name]!r}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:24]


def item_knn_graph(features: Mapping[str, np.ndarray], k: int, weights: Mapping[str, float],
                   cache_dir: str | Path | None = None) -> torch.Tensor:
    """Mixed item-item graph ``sum_m weights[m] * kNN_m`` [N+1, N+1], built once per content hash.

    The result is memoised in-process and, when ``cache_dir`` is given, stored there as
    ``item_knn-<hash>.npz`` (written atomically) and reused by later runs."""
    from mosaicrec.utils import atomic_path

    key = graph_key(features, k, weights)
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    path = Path(cache_dir) / f"item_knn-{key}.npz" if cache_dir else None
    if path is not None and path.exists():
        z = np.load(path)
        adj = torch.sparse_coo_tensor(torch.from_numpy(z["indices"]), torch.from_numpy(z["values"]),
                                      tuple(z["shape"]), check_invariants=True).coalesce()
    else:
        adj = mixed_knn_adj(features, k, weights)
        if path is not None:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, indices=adj.indices().numpy(), values=adj.values().numpy(),
                         shape=np.array(adj.shape))
    _MEMORY_CACHE[key] = adj
    return adj


def mixed_knn_adj(features: Mapping[str, np.ndarray], k: int, weights: Mapping[str, float]) -> torch.Tensor:
    """``sum_m weights[m] * kNN_m`` over the features (sorted by name)."""
    if not features:
        raise ValueError("item_knn_graph: no features given")
    parts = [knn_adj(torch.from_numpy(np.asarray(features[n], dtype=np.float32)), k) * weights[n]
             for n in sorted(features)]
    return torch.stack(parts).sum(0).coalesce() if len(parts) > 1 else parts[0]
