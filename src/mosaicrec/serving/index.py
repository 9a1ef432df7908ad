"""Nearest-neighbour retrieval over item vectors (faiss, inner product).

One index per domain plus one over the whole catalogue, so that within-domain ranking is a
search in that domain's index (no post-filtering of other domains). An index is exact
(``IndexFlatIP``) for catalogues up to ``exact_max_items`` and approximate (HNSW by default, or
IVF) above, or as forced by ``kind``. Exact partitions are searched by one matrix product per
micro-batch with the seen items masked out (the vectors are kept next to the faiss index); the
approximate ones exclude seen items by over-fetching ``k + |seen|`` neighbours and dropping them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field

from mosaicrec.config import StrictModel

GLOBAL = -1  # partition key of the whole-catalogue index


class IndexConfig(StrictModel):
    """How item vectors are indexed. ``auto``: exact up to ``exact_max_items``, else ``approx``."""

    kind: Literal["auto", "flat", "hnsw", "ivf"] = "auto"
    approx: Literal["hnsw", "ivf"] = Field("hnsw", description="approximate index used by auto")
    exact_max_items: int = Field(50_000, ge=1, description="auto: exact search up to this many items")
    hnsw_m: int = Field(16, ge=4, description="HNSW graph degree")
    hnsw_ef_construction: int = Field(32, ge=8)
    hnsw_ef_search: int = Field(256, ge=8, description="HNSW search breadth (recall vs speed)")
    ivf_nlist: int | None = Field(None, ge=1, description="IVF lists; default 4*sqrt(n)")
    ivf_nprobe: int = Field(64, ge=1, description="IVF lists visited per query")
    threads: int = Field(1, ge=1, description="faiss OpenMP threads")


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("serving needs faiss: pip install 'mosaicrec[serve]' (faiss-cpu)") from e
    return faiss


def resolve_kind(n: int, cfg: IndexConfig) -> str:
    if cfg.kind != "auto":
        return cfg.kind
    return "flat" if n <= cfg.exact_max_items else cfg.approx


def build_faiss_index(vectors: np.ndarray, ids: np.ndarray, cfg: IndexConfig) -> tuple[Any, str]:
    """A faiss index over ``vectors`` [n, D] answering with ``ids`` [n] (int64 item ids), and its kind."""
    faiss = _faiss()
    faiss.omp_set_num_threads(cfg.threads)
    n, dim = vectors.shape
    kind = resolve_kind(n, cfg)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # [n, D]
    ids = np.ascontiguousarray(ids, dtype=np.int64)  # [n]
    if kind == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = cfg.hnsw_ef_construction
        inner.hnsw.efSearch = cfg.hnsw_ef_search
        index = faiss.IndexIDMap2(inner)
    else:  # ivf
        nlist = cfg.ivf_nlist or max(1, int(4 * np.sqrt(max(n, 1))))
        nlist = min(nlist, max(1, n // 39))  # faiss wants >= 39 training points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(cfg.ivf_nprobe, nlist)
    if n:
        index.add_with_ids(vectors, ids)
    return index, kind


class ItemIndex:
    """Per-domain and whole-catalogue faiss indexes over the vectors of items 1..N."""

    def __init__(self, vectors: np.ndarray, item_domain: np.ndarray, cfg: IndexConfig | None = None) -> None:
        """``vectors`` [N+1, D] (row 0 = padding, never returned); ``item_domain`` [N+1]."""
        self.cfg = cfg or IndexConfig()
        self.dim = int(vectors.shape[1])
        ids = np.arange(1, len(vectors), dtype=np.int64)  # [N]
        doms = np.asarray(item_domain[1:], dtype=np.int64)  # [N]
        self.parts: dict[int, Any] = {}
        self.kinds: dict[int, str] = {}
        self._dense: dict[int, _Dense] = {}  # exact partitions: their vectors, searched directly
        self._build(GLOBAL, vectors[1:], ids)
        for d in np.unique(doms).tolist():
            sel = doms == d
            self._build(int(d), vectors[1:][sel], ids[sel])
        self.n_items = len(ids)

    def _build(self, part: int, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.parts[part], self.kinds[part] = build_faiss_index(vectors, ids, self.cfg)
        if self.kinds[part] == "flat":
            self._dense[part] = _Dense(vectors, ids)

    def _add_to(self, part: int, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.parts[part].add_with_ids(vectors, ids)
        if part in self._dense:
            self._dense[part].add(vectors, ids)

    def add(self, vectors: np.ndarray, ids: np.ndarray, domains: np.ndarray) -> None:
        """Add new items (``vectors`` [M, D], ``ids`` [M], ``domains`` [M]); searchable at once."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # [M, D]
        ids = np.asarray(ids, dtype=np.int64)
        domains = np.asarray(domains, dtype=np.int64)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"new item vectors have shape {vectors.shape}, expected [M, {self.dim}]")
        self._add_to(GLOBAL, vectors, ids)
        for d in np.unique(domains).tolist():
            sel = domains == d
            if int(d) not in self.parts:
                self._build(int(d), vectors[sel], ids[sel])
            else:
                self._add_to(int(d), vectors[sel], ids[sel])
        self.n_items += len(ids)

    def search(self, queries: np.ndarray, k: int, domain: int | None = None,
               exclude: Sequence[Iterable[int]] | None = None) -> tuple[list[list[int]], list[list[float]]]:
        """Top-``k`` item ids and scores for each query [B, D], within ``domain`` (None = all).

        ``exclude[b]`` are item ids never returned for query ``b`` (e.g. the seen items).
        Fewer than ``k`` results come back only when the partition has fewer items.
        """
        part = GLOBAL if domain is None else int(domain)
        index = self.parts.get(part)
        if index is None:
            return [[] for _ in range(len(queries))], [[] for _ in range(len(queries))]
        if part in self._dense:
            return self._dense[part].search(queries, k, exclude)
        excl = ([set(e.tolist() if isinstance(e, np.ndarray) else e) for e in exclude] if exclude is not None
                else [set() for _ in range(len(queries))])
        fetch = min(index.ntotal, k + max((len(e) for e in excl), default=0))
        if fetch == 0:
            return [[] for _ in range(len(queries))], [[] for _ in range(len(queries))]
        scores, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), fetch)  # [B, fetch]
        out_ids, out_scores = [], []
        for row_ids, row_scores, ex in zip(found.tolist(), scores.tolist(), excl, strict=True):
            keep = [(i, s) for i, s in zip(row_ids, row_scores, strict=True) if i > 0 and i not in ex][:k]
            out_ids.append([i for i, _ in keep])
            out_scores.append([s for _, s in keep])
        return out_ids, out_scores


class _Dense:
    """The vectors of an exact partition, searched by one product per batch of queries.

    Faster than faiss' flat search with over-fetching when seen items are excluded: faiss
    keeps the top ``k + |seen|`` per query (210 for a 200-item history) and Python drops the
    seen ones, whereas here the seen items' scores are set to -inf in the [B, n] score matrix
    and the top ``k`` taken directly (same items and scores, up to the order of exact ties).
    """

    def __init__(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.vt = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).T)  # [D, n]
        self.ids = np.ascontiguousarray(ids, dtype=np.int64)  # [n]
        self._positions()

    def _positions(self) -> None:
        size = int(self.ids.max()) + 1 if len(self.ids) else 1
        self.pos = np.full(size, -1, dtype=np.int64)  # item id -> column of self.vt, -1 if absent
        self.pos[self.ids] = np.arange(len(self.ids))

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        new = np.asarray(vectors, dtype=np.float32).T  # [D, m]
        self.vt = np.ascontiguousarray(np.concatenate([self.vt, new], axis=1))  # [D, n + m]
        self.ids = np.concatenate([self.ids, np.asarray(ids, dtype=np.int64)])  # [n + m]
        self._positions()

    def search(self, queries: np.ndarray, k: int,
               exclude: Sequence[Iterable[int]] | None) -> tuple[list[list[int]], list[list[float]]]:
        import torch

        b, n = len(queries), len(self.ids)
        kk = min(k, n)
        if kk == 0 or b == 0:
            return [[] for _ in range(b)], [[] for _ in range(b)]
        scores = np.ascontiguousarray(queries, dtype=np.float32) @ self.vt  # [B, n]
        if exclude is not None:  # all rows' excluded ids in one array: a few numpy calls per batch
            rows = [int_ids(ex) for ex in exclude]  # [m_b] each
            counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))  # [B]
            e = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)  # [M]
            r = np.repeat(np.arange(len(rows), dtype=np.int64), counts)  # [M] row of each excluded id
            ok = (e >= 0) & (e < len(self.pos))
            p = self.pos[e[ok]]  # [M'] their columns here, -1 if not in this partition
            scores[r[ok][p >= 0], p[p >= 0]] = -np.inf
        top = torch.topk(torch.from_numpy(scores), kk, dim=1)  # values and columns [B, kk], best first
        out_ids, out_scores = [], []
        for row_ids, row_scores in zip(self.ids[top.indices.numpy()].tolist(), top.values.tolist(), strict=True):
            m = len(row_scores)
            while m and row_scores[m - 1] == -np.inf:  # fewer than k items left after exclusion
                m -= 1
            out_ids.append(row_ids[:m])
            out_scores.append(row_scores[:m])
        return out_ids, out_scores


def int_ids(ids: Iterable[int]) -> np.ndarray:
    """``ids`` as an int64 array [m]: an int64 array as is (the service's resolved histories),
    anything else (set, list, generator) copied."""
    if isinstance(ids, np.ndarray) and ids.dtype == np.int64:
        return ids
    return np.fromiter(ids, dtype=np.int64)
