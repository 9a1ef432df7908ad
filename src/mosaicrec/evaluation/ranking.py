"""Leak-free ranking evaluation: full ranking (default) and fixed sampled negatives.

* Queries: see :mod:`mosaicrec.evaluation.queries` (``next``: one per target row, history =
  the user's earlier visible rows; ``set``: one per user, or per (user, domain) in
  multi-domain data, targets = its distinct items of the split). A validation Evaluator never
  reads a test row; the test split is evaluated once, at the end, by the caller.
* Candidates: all items 1..N; with ``within_domain`` and more than one domain only the target
  domain's items. Column 0 (padding) never is a candidate.
* ``mask_seen``: the items of the query's whole (untruncated) history are removed from the
  candidates, except the query's own targets (a re-consumed target stays rankable).
* Ties are pessimistic (see :mod:`mosaicrec.evaluation.positions`): a constant model ranks
  every target last.
* Sampled mode: rank among the targets plus ``n_negatives`` fixed negatives per query (see
  :mod:`mosaicrec.evaluation.negatives`), drawn once and reused from disk.
* The model is called once per batch as ``model.score(SeqBatch)`` in eval mode under
  ``torch.no_grad()``; ``targets``/``target_domains`` are ``[B]`` (0 and the query's domain for
  set queries). The fast path ranks the whole batch with tensor operations; the reference path
  (``path="reference"``) sorts each query's candidates with numpy and is tested to agree.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from mosaicrec.config import EvalConfig
from mosaicrec.data.batches import SeqBatch
from mosaicrec.data.schema import PreparedData
from mosaicrec.data.sequences import gather_arrays
from mosaicrec.evaluation import negatives as negs
from mosaicrec.evaluation.metrics import compute_metrics
from mosaicrec.evaluation.positions import (
    check_scores,
    positions_full,
    positions_sampled,
    reference_positions,
    reference_top_k,
    top_k,
)
from mosaicrec.evaluation.queries import EvalQueries, build_queries

if TYPE_CHECKING:
    import polars as pl

    from mosaicrec.models.base import Recommender


log = logging.getLogger(__name__)
SCORE_BUDGET = 1 << 26  # entries of the per-batch score matrix


@dataclass
class _Outputs:
    full: np.ndarray | None  # [sum T] position of every target among all candidates (ragged)
    sampled: np.ndarray | None  # [sum T] positions among targets + sampled negatives
    topk: np.ndarray | None  # [Q, K] recommended items
    negatives: np.ndarray | None  # [Q, n] fixed sampled negatives


@dataclass
class EvalResult:
    metrics: dict[str, dict[str, float]]  # {"overall": {...}, "<domain name>": {...}}
    metrics_sampled: dict[str, dict[str, float]] | None
    per_query: pl.DataFrame  # one row per query: user_idx, domain, target, rank, metrics...
    n_queries: int
    seconds: float = 0.0
    n_queries_by_domain: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metrics": self.metrics, "n_queries": self.n_queries,
                               "n_queries_by_domain": self.n_queries_by_domain,
                               "eval_seconds": round(self.seconds, 4)}
        if self.metrics_sampled is not None:
            out["metrics_sampled"] = self.metrics_sampled
        return out

    def save(self, folder: str | Path, per_query: bool = True) -> None:
        """``metrics.json`` (and ``per_query.parquet``) in ``folder``, written atomically."""
        from mosaicrec.utils import atomic_path, write_json

        folder = Path(folder)
        write_json(folder / "metrics.json", self.to_dict())
        if per_query:
            with atomic_path(folder / "per_query.parquet") as tmp:
                self.per_query.write_parquet(tmp)

    def __str__(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


class Evaluator:
    """Evaluates a :class:`~mosaicrec.models.base.Recommender` on the ``valid`` or ``test`` split.

    Construction only reads ``data`` (no files are written); sampled negatives are drawn
    or loaded on the first :meth:`evaluate`.
    """

    def __init__(self, data: PreparedData, cfg: EvalConfig, split: str, max_len: int,
                 cache_dir: Path | None = None, max_queries: int | None = None,
                 subset_seed: int = 0) -> None:
        self.data, self.cfg, self.split, self.max_len = data, cfg, split, max_len
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path(data.root)
        queries = build_queries(data, split, cfg.query)
        if len(queries) == 0:
            raise ValueError(f"{Path(data.root) / 'interactions.parquet'}: no rows with split {split!r} "
                             f"to evaluate ({cfg.query} queries)")
        if max_queries is not None and max_queries < 1:
            raise ValueError(f"max_queries must be >= 1 or None, got {max_queries}")
        if max_queries is not None and max_queries < len(queries):
            rng = np.random.default_rng(subset_seed)
            queries = queries.subset(np.sort(rng.choice(len(queries), size=max_queries, replace=False)))
        self.queries: EvalQueries = queries
        self.by_domain = cfg.within_domain and data.n_domains > 1
        # Candidate table: one row per target domain (or a single row of all items).
        if self.by_domain:
            cand = np.stack([data.item_domain == d for d in range(data.n_domains)])  # [D, N+1]
        else:
            cand = np.ones((1, data.n_items + 1), dtype=bool)
        cand[:, 0] = False
        self._cand = cand
        self._pool_of_query = queries.domain if self.by_domain else np.zeros(len(queries), dtype=np.int64)
        self._negatives: np.ndarray | None = None
        self.n_evaluations = 0

    # ------------------------------------------------------------------ inputs
    @property
    def n_queries(self) -> int:
        return len(self.queries)

    def negatives(self) -> np.ndarray:
        """``[Q, n_negatives]`` fixed negatives (loaded, or drawn and saved once)."""
        if self._negatives is None:
            pools = [np.flatnonzero(row).astype(np.int64) for row in self._cand]
            key = b"within=%d;" % int(self.by_domain) + np.ascontiguousarray(self.data.item_domain).tobytes()
            path = negs.negatives_path(self.cache_dir, self.queries, self.cfg.n_negatives,
                                       self.cfg.negatives_seed, key, self.cfg.mask_seen)
            self._negatives = negs.load_or_draw(path, self.queries, pools, self._pool_of_query,
                                                self.cfg.n_negatives, self.cfg.negatives_seed,
                                                self.cfg.mask_seen)
        return self._negatives

    def batch(self, idx: np.ndarray) -> SeqBatch:
        """The model input for queries ``idx`` (histories truncated to ``max_len``)."""
        q = self.queries
        (items, domains), lengths = gather_arrays((q.hist_item, q.hist_domain), q.hist_start[idx],
                                                  q.hist_end[idx], self.max_len)
        return SeqBatch(items=torch.from_numpy(items), domains=torch.from_numpy(domains),
                        lengths=torch.from_numpy(lengths), users=torch.from_numpy(q.user[idx]),
                        targets=torch.from_numpy(q.target[idx]),
                        target_domains=torch.from_numpy(q.domain[idx]))

    def _padded_targets(self, idx: np.ndarray) -> np.ndarray:
        q = self.queries
        counts = q.n_targets[idx]  # [B]
        cols = np.arange(max(1, int(counts.max())), dtype=np.int64)  # [T]
        valid = cols[None, :] < counts[:, None]  # [B, T]
        flat = np.where(valid, q.target_ptr[idx][:, None] + cols[None, :], 0)  # [B, T]
        return np.where(valid, q.target_items[flat], 0)  # [B, T] targets in order, 0 = padding

    def _seen_mask(self, idx: np.ndarray, n_cols: int, device: torch.device) -> torch.Tensor:
        """[B, N+1] bool, True at every item of each query's whole history: one scatter of the
        flat (query, item) pairs, no padding to the longest history."""
        q = self.queries
        lens = q.hist_end[idx] - q.hist_start[idx]  # [B]
        row = np.repeat(np.arange(len(idx)), lens)  # [S] query of each seen pair
        flat = np.arange(int(lens.sum())) + np.repeat(q.hist_start[idx] - (np.cumsum(lens) - lens), lens)  # [S]
        mask = torch.zeros(len(idx), n_cols, dtype=torch.bool)  # [B, N+1]
        mask[torch.from_numpy(row), torch.from_numpy(q.hist_item[flat].astype(np.int64))] = True
        return mask.to(device)

    @property
    def batch_size(self) -> int:
        """``cfg.batch_size``, lowered so that one ``[B, N+1]`` score matrix stays under
        ``SCORE_BUDGET`` entries (256 MiB of float32) on large catalogues."""
        return max(1, min(self.cfg.batch_size, SCORE_BUDGET // (self.data.n_items + 1)))

    def _batches(self, progress: bool) -> Iterator[np.ndarray]:
        """Query indices per batch. Set queries are batched by their number of targets, so that
        a batch's padded target width (and the cheaper counting for few targets) fits most."""
        bs = self.batch_size
        q = self.queries
        order = (np.argsort(q.n_targets, kind="stable") if q.kind == "set"
                 else np.arange(len(q), dtype=np.int64))
        starts = range(0, self.n_queries, bs)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"evaluate {self.split}", unit="batch")
        for s in starts:
            yield order[s:s + bs]

    # ------------------------------------------------------------------ ranking
    def evaluate(self, model: Recommender, device: str | torch.device = "cpu",
                 progress: bool = False, path: Literal["fast", "reference"] = "fast") -> EvalResult:
        """Rank every query's targets; returns overall and per-domain metrics."""
        if path not in ("fast", "reference"):
            raise ValueError(f"path must be 'fast' or 'reference', got {path!r}")
        self.n_evaluations += 1
        if self.split == "test" and self.n_evaluations > 1:
            log.warning("the test split was evaluated %d times by this Evaluator: select models and "
                        "epochs on validation, and read test once", self.n_evaluations)
        t0 = time.perf_counter()
        device = torch.device(device)
        n_t = len(self.queries.target_items)
        out = _Outputs(
            full=np.zeros(n_t, dtype=np.int64) if self.cfg.mode != "sampled" else None,
            sampled=np.zeros(n_t, dtype=np.int64) if self.cfg.mode != "full" else None,
            topk=np.zeros((self.n_queries, self.cfg.save_topk), dtype=np.int64) if self.cfg.save_topk else None,
            negatives=self.negatives() if self.cfg.mode != "full" else None)
        cand = torch.from_numpy(self._cand).to(device) if self.by_domain else None  # None = all items
        bf16 = self.cfg.precision == "bfloat16"
        was_training = model.training
        model.eval()
        try:
            for idx in self._batches(progress):
                batch = self.batch(idx).to(device)
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    scores = check_scores(model.score(batch), self.data.n_items + 1, batch.users)
                if path == "fast":
                    self._fast_batch(idx, scores, cand, out)
                else:
                    self._reference_batch(idx, scores.cpu().numpy(), out)
        finally:
            model.train(was_training)
        return self._result(out, time.perf_counter() - t0)

    def _fast_batch(self, idx: np.ndarray, scores: torch.Tensor, cand: torch.Tensor | None,
                    out: _Outputs) -> None:
        """The whole batch at once with tensor operations."""
        dev = scores.device
        tgt = torch.from_numpy(self._padded_targets(idx)).to(dev)  # [B, T]
        rows = torch.from_numpy(self._pool_of_query[idx]).to(dev)  # [B]
        seen = self._seen_mask(idx, scores.shape[1], dev) if self.cfg.mask_seen else None  # [B, N+1]
        slots = self.queries.target_ptr[idx][:, None] + np.arange(tgt.shape[1])  # [B, T] flat target slot
        keep = (tgt != 0).cpu().numpy()  # [B, T]
        if out.full is not None:
            out.full[slots[keep]] = positions_full(scores, cand, rows, tgt, seen).cpu().numpy()[keep]
        if out.sampled is not None and out.negatives is not None:
            neg = torch.from_numpy(out.negatives[idx].astype(np.int64)).to(dev)  # [B, n]
            out.sampled[slots[keep]] = positions_sampled(scores, neg, tgt).cpu().numpy()[keep]
        if out.topk is not None:
            out.topk[idx] = top_k(scores, cand, rows, tgt, seen, out.topk.shape[1]).cpu().numpy()

    def _reference_batch(self, idx: np.ndarray, scores: np.ndarray, out: _Outputs) -> None:
        """Per query: explicit candidate list, numpy sort, positions of the targets."""
        q = self.queries
        full, sampled, neg_all = out.full, out.sampled, out.negatives
        for b, i in enumerate(idx):
            targets = q.target_items[q.target_ptr[i]:q.target_ptr[i + 1]]
            cands = np.flatnonzero(self._cand[self._pool_of_query[i]])
            if self.cfg.mask_seen:
                seen = np.setdiff1d(q.hist_item[q.hist_start[i]:q.hist_end[i]], targets)
                cands = np.setdiff1d(cands, seen)
            if full is not None:
                full[q.target_ptr[i]:q.target_ptr[i + 1]] = reference_positions(scores[b], cands, targets)
            if out.topk is not None:
                out.topk[i] = reference_top_k(scores[b], cands, out.topk.shape[1])
            if sampled is not None and neg_all is not None:
                row = neg_all[i]
                cands = np.concatenate([row[row != 0], targets])
                sampled[q.target_ptr[i]:q.target_ptr[i + 1]] = reference_positions(scores[b], cands, targets)

    # ------------------------------------------------------------------ results
    def _result(self, out: _Outputs, seconds: float) -> EvalResult:
        import polars as pl

        full, sampled = out.full, out.sampled
        q = self.queries
        names = self.data.domains
        cols: dict[str, Any] = {
            "user_idx": q.user.astype(np.int32),
            "domain": pl.Series("domain", names, dtype=pl.String)[q.domain],
            "target": q.target.astype(np.int32),
            "n_targets": q.n_targets.astype(np.int32),
        }
        metrics = metrics_s = None
        if full is not None:
            cols["rank"] = np.minimum.reduceat(full, q.target_ptr[:-1]).astype(np.int32)  # best target
            if q.kind == "set":
                cols["ranks"] = _ragged_list(full, q.target_ptr)
            per = _ragged_metrics(full, q.target_ptr, self.cfg.ks, q.kind)
            cols.update(per)
            metrics = self._aggregate(per)
        if sampled is not None:
            cols["rank_sampled"] = np.minimum.reduceat(sampled, q.target_ptr[:-1]).astype(np.int32)
            if q.kind == "set":
                cols["ranks_sampled"] = _ragged_list(sampled, q.target_ptr)
            per_s = _ragged_metrics(sampled, q.target_ptr, self.cfg.ks, q.kind)
            cols.update({f"{k}_sampled": v for k, v in per_s.items()})
            metrics_s = self._aggregate(per_s)
        if out.topk is not None:
            cols["topk"] = out.topk.astype(np.int32)  # [Q, K] best first, 0 past the candidates
        counts = np.bincount(q.domain, minlength=len(names))
        return EvalResult(
            metrics=metrics if metrics is not None else {}, metrics_sampled=metrics_s,
            per_query=pl.DataFrame(cols), n_queries=len(q), seconds=seconds,
            n_queries_by_domain={names[d]: int(c) for d, c in enumerate(counts) if c})

    def _aggregate(self, per: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
        q = self.queries
        out: dict[str, dict[str, float]] = {"overall": {k: float(v.mean()) for k, v in per.items()}}
        n_dom = self.data.n_domains
        counts = np.bincount(q.domain, minlength=n_dom)  # [D]
        sums = {k: np.bincount(q.domain, weights=v, minlength=n_dom) for k, v in per.items()}  # [D] each
        for d, name in enumerate(self.data.domains):
            if counts[d]:
                out[name] = {k: float(s[d] / counts[d]) for k, s in sums.items()}
        return out


def _ragged_metrics(flat: np.ndarray, ptr: np.ndarray, ks: list[int], kind: str,
                    chunk: int = 4096) -> dict[str, np.ndarray]:
    """Per-query metrics of ragged ranks, padding ``chunk`` queries at a time (bounded memory)."""
    parts: list[dict[str, np.ndarray]] = []
    for a in range(0, len(ptr) - 1, chunk):
        b = min(a + chunk, len(ptr) - 1)
        counts = np.diff(ptr[a:b + 1])  # [C]
        cols = np.arange(int(counts.max()))  # [T]
        valid = cols[None, :] < counts[:, None]  # [C, T]
        padded = np.where(valid, flat[np.where(valid, ptr[a:b, None] + cols[None, :], 0)], 0)  # [C, T]
        parts.append(compute_metrics(padded if kind == "set" else padded[:, 0], ks, kind))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _ragged_list(flat: np.ndarray, ptr: np.ndarray) -> pl.Series:
    """Ragged positions -> a list column with each query's own targets (item-id order)."""
    import polars as pl
    import pyarrow as pa

    arr = pa.ListArray.from_arrays(pa.array(ptr.astype(np.int32)), pa.array(flat.astype(np.int32)))
    return pl.Series(arr)


__all__ = ["EvalResult", "Evaluator"]
