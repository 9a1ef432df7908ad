"""Cold-item evaluation: ranking items that had no training interaction at all.

A prepared dataset with ``cold_item_fraction > 0`` lists its held-out items in
``cold_items.parquet``; their rows exist only in valid/test. Protocol (documented in
docs/lirdrec.md):

* queries: every user with at least one cold item among its ``split`` rows; targets = those
  distinct cold items;
* candidates: the cold items only; a user's cold items of earlier evaluation splits (valid, when
  evaluating test) are removed from its candidates (seen-item masking);
* ranks are pessimistic on ties (a constant scorer ranks every target last), metrics are the
  set-query metrics of :mod:`mosaicrec.evaluation.metrics`.

Baselines: ``popularity`` ranks cold items by their number of ``valid`` rows (the only
interactions a cold item has before test; training counts are all zero); ``content_knn``
scores an item by the cosine between its features and the mean normalised feature vector of the
user's training items.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch

from mosaicrec.data.batches import SeqBatch
from mosaicrec.data.schema import TEST, TRAIN, VALID, DataError, PreparedData
from mosaicrec.models.base import Recommender

Scorer = Callable[[np.ndarray], np.ndarray]  # users [B] -> scores [B, N+1]


@dataclass
class ColdQueries:
    cold_items: np.ndarray  # [C] item ids
    users: np.ndarray  # [Q]
    targets: list[np.ndarray]  # Q arrays of cold item ids
    masked: list[np.ndarray]  # Q arrays of cold item ids removed from the candidates


def load_cold_items(data: PreparedData) -> np.ndarray:
    """The cold item ids of a prepared dataset (error when it has none)."""
    import polars as pl

    path = Path(data.root) / "cold_items.parquet"
    if not path.exists():
        raise DataError(f"{path}: not found; prepare the data with cold_item_fraction > 0 for a "
                        "cold-item evaluation")
    return np.sort(pl.read_parquet(path)["item_idx"].to_numpy().astype(np.int64))


def cold_queries(data: PreparedData, cold_items: np.ndarray, split: str = "test") -> ColdQueries:
    code = {"valid": VALID, "test": TEST}[split]
    users = data.user_of_rows().astype(np.int64)
    is_cold = np.isin(data.item, cold_items)
    q_users, targets, masked = [], [], []
    tgt_rows = np.flatnonzero(is_cold & (data.split == code))
    for u in np.unique(users[tgt_rows]):
        rows = slice(data.indptr[u], data.indptr[u + 1])
        it, sp = data.item[rows].astype(np.int64), data.split[rows]
        tgt = np.unique(it[(sp == code) & np.isin(it, cold_items)])
        earlier = np.unique(it[(sp == VALID) & np.isin(it, cold_items)]) if split == "test" else np.array([], np.int64)
        q_users.append(u)
        targets.append(tgt)
        masked.append(np.setdiff1d(earlier, tgt))
    return ColdQueries(cold_items, np.array(q_users, dtype=np.int64), targets, masked)


def cold_ranks(scores: np.ndarray, q: ColdQueries, rows: Sequence[int]) -> list[np.ndarray]:
    """Pessimistic ranks of each query's targets among its cold candidates."""
    out = []
    for r, qi in zip(range(len(rows)), rows, strict=True):
        cand = np.setdiff1d(q.cold_items, q.masked[qi])
        s = scores[r, cand]  # [C']
        t = scores[r, q.targets[qi]]  # [T]
        higher = (s[None, :] > t[:, None]).sum(1)
        ties = (s[None, :] == t[:, None]).sum(1) - 1  # minus the target itself
        out.append(1 + higher + ties)
    return out


def evaluate_cold(scorer: Scorer, q: ColdQueries, ks: Sequence[int] = (10, 20),
                  batch_size: int = 512) -> dict[str, float]:
    from mosaicrec.evaluation.metrics import compute_metrics, pad_ranks

    if len(q.users) == 0:
        raise ValueError("cold-item evaluation: no query has a cold target")
    ranks: list[np.ndarray] = []
    for start in range(0, len(q.users), batch_size):
        idx = list(range(start, min(start + batch_size, len(q.users))))
        scores = np.asarray(scorer(q.users[idx]), dtype=np.float64)  # [B, N+1]
        ranks += cold_ranks(scores, q, idx)
    per_query = compute_metrics(pad_ranks([r.tolist() for r in ranks]), ks, query="set")
    return {k: float(v.mean()) for k, v in per_query.items()}


def model_scorer(model: Recommender) -> Scorer:
    def score(users: np.ndarray) -> np.ndarray:
        u = torch.as_tensor(users)
        z = torch.zeros(len(u), 1, dtype=torch.long)
        batch = SeqBatch(items=z, domains=z, lengths=torch.ones(len(u), dtype=torch.long), users=u,
                         targets=torch.zeros(len(u), dtype=torch.long), target_domains=torch.zeros(len(u), dtype=torch.long))
        model.eval()
        with torch.no_grad():
            return model.score(batch).cpu().numpy()
    return score


def popularity_scorer(data: PreparedData) -> Scorer:
    counts = np.bincount(data.item[data.split == VALID], minlength=data.n_items + 1).astype(np.float64)
    return lambda users: np.broadcast_to(counts, (len(users), len(counts)))


def content_knn_scorer(data: PreparedData, features: Mapping[str, np.ndarray]) -> Scorer:
    """Cosine between each item's features and the mean of the user's training items' features."""
    parts = []
    for f in features.values():
        f = np.asarray(f, dtype=np.float64)
        parts.append(f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12))
    x = np.concatenate(parts, axis=1)  # [N+1, sum d]
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    users = data.user_of_rows()
    train = data.split == TRAIN
    profile = np.zeros((data.n_users, x.shape[1]))
    np.add.at(profile, users[train], x[data.item[train]])
    profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)
    return lambda u: profile[u] @ x.T  # [B, N+1]


def cold_report(data: PreparedData, model: Recommender | None, features: Mapping[str, np.ndarray],
                ks: Sequence[int] = (10, 20), split: str = "test") -> dict[str, object]:
    """``{"model": {...}, "popularity": {...}, "content_knn": {...}, counts}`` on ``split``."""
    cold = load_cold_items(data)
    q = cold_queries(data, cold, split)
    out: dict[str, object] = {"split": split, "n_cold_items": int(len(cold)), "n_queries": int(len(q.users)),
                              "n_targets": int(sum(len(t) for t in q.targets))}
    if model is not None:
        out["model"] = evaluate_cold(model_scorer(model), q, ks)
    out["popularity"] = evaluate_cold(popularity_scorer(data), q, ks)
    if features:
        out["content_knn"] = evaluate_cold(content_knn_scorer(data, features), q, ks)
    return out


def has_cold_items(data_root: str | Path) -> bool:
    """Whether a prepared folder holds a cold-item split (``cold_items.parquet``)."""
    return (Path(data_root) / "cold_items.parquet").exists()


def cold_report_for_run(run_dir: str | Path, ks: Sequence[int] = (10, 20)) -> dict[str, object] | None:
    """:func:`cold_report` of a finished run, or None when its data has no cold items."""
    from mosaicrec.training.run import load_run

    run = load_run(run_dir)
    if not has_cold_items(run.data.root):
        return None
    features = dict(getattr(run.model.ctx, "features", {}) or {})
    report = cold_report(run.data, run.model, features, ks)
    report["run"] = str(run_dir)
    return report


def summarise_cold(reports: Sequence[Mapping[str, object]], bench: str) -> dict[str, object]:
    """Mean over seeds of the per-seed cold reports (counts from the first; they depend on the
    data only), with the seeds' count, as stored under ``metrics_cold`` of a bench JSON."""
    first = reports[0]
    out: dict[str, object] = {k: v for k, v in first.items() if not isinstance(v, dict) and k != "run"}
    out["bench"], out["n_seeds"] = bench, len(reports)
    for who in ("model", "popularity", "content_knn"):
        metrics = [r.get(who) for r in reports]
        if all(isinstance(m, dict) for m in metrics):
            per = [cast(dict[str, float], m) for m in metrics]
            out[who] = {k: float(np.mean([m[k] for m in per])) for k in per[0]}
            if len(per) > 1:
                out[f"{who}_std"] = {k: float(np.std([m[k] for m in per], ddof=1)) for k in per[0]}
    return out
