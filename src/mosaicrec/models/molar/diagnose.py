"""Training-free checks of a frozen Molar item table (the cached [ITEM] states).

``python -m mosaicrec.models.molar.diagnose PREPARED_DIR TABLE.npy`` prints, for each item
normalisation (raw, per-dimension standardisation, PCA whitening), the share of variance in the
top principal components and the test NDCG@10 / HR@10 of a last-item content nearest-neighbour
recommender (score = cosine between the last history item and every other item; leave-one-out
test target, full ranking, the last item itself excluded). It tells whether the content states
carry next-item signal before any training, and how much the normalisation matters.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from mosaicrec.data.schema import TEST


def normalised(table: np.ndarray, how: str, eps: float = 1e-4) -> np.ndarray:
    """[N, H] the item states (rows 1..N of ``table``) raw, standardised or PCA-whitened."""
    x = table[1:].astype(np.float64)  # [N, H]
    if how == "raw":
        return x
    if how not in ("standardise", "whiten"):
        raise ValueError(f"normalisation {how!r}: expected raw, standardise or whiten")
    import torch

    from mosaicrec.models.molar.model import normaliser  # the model's own normalisation

    w = normaliser(torch.from_numpy(x), how, eps, dtype=torch.float64).numpy()  # [H, H]
    return (x - x.mean(0)) @ w  # [N, H]


def top_variance_share(x: np.ndarray, k: int = 4) -> float:
    """Share of the total variance of ``x`` [N, H] in its top ``k`` principal components."""
    s = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2  # [min(N, H)]
    return float(s[:k].sum() / s.sum())


def last_item_knn(indptr: np.ndarray, item: np.ndarray, split: np.ndarray, x: np.ndarray,
                  k: int = 10) -> tuple[float, float, int]:
    """(NDCG@k, HR@k, users) of scoring items by cosine to each test user's last history item.

    ``x`` [N, H] holds item i in row i-1. Ties count against the target (pessimistic rank).
    """
    z = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # [N, H]
    ndcg = hr = 0.0
    n = 0
    for u in range(len(indptr) - 1):
        sl = slice(int(indptr[u]), int(indptr[u + 1]))
        pos = np.flatnonzero(split[sl] == TEST)
        if not len(pos) or pos[0] == 0:
            continue
        seq = item[sl]
        last, target = int(seq[pos[0] - 1]), int(seq[pos[0]])
        scores = z @ z[last - 1]  # [N]
        scores[last - 1] = -np.inf
        rank = int((scores >= scores[target - 1]).sum()) - 1  # 0 = best
        if rank < k:
            ndcg += 1.0 / math.log2(rank + 2)
            hr += 1.0
        n += 1
    return (ndcg / n, hr / n, n) if n else (0.0, 0.0, 0)


def main(argv: list[str] | None = None) -> int:
    from mosaicrec.data.schema import PreparedData

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("prepared", help="prepared dataset folder")
    p.add_argument("table", help="cached item table .npy ([N+1, H], row 0 = padding)")
    args = p.parse_args(argv)
    data = PreparedData.load(args.prepared)
    table = np.load(args.table)
    if table.shape[0] != data.n_items + 1:
        raise ValueError(f"{args.table}: {table.shape[0]} rows, {args.prepared} has {data.n_items} items (+1 padding)")
    for how in ("raw", "standardise", "whiten"):
        x = normalised(table, how)
        nd, hr, n = last_item_knn(data.indptr, data.item, data.split, x)
        print(f"{how:12s} top-4 PC variance {top_variance_share(x):.3f}  "
              f"last-item content kNN test NDCG@10 {nd:.4f} HR@10 {hr:.4f} ({n} users)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
