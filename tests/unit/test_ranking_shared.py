"""Evaluation on real MovieLens-100K (leave-one-out): exact ranks of a constant model and the
unbiasedness of full and sampled ranking for random scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mosaicrec.config import EvalConfig
from mosaicrec.data.batches import SeqBatch
from mosaicrec.data.schema import SPLIT_CODE, PreparedData
from mosaicrec.evaluation.ranking import Evaluator
from mosaicrec.models.base import ModelContext, Recommender


def ml100k_loo(shared: Path, root: Path) -> PreparedData:
    """Leave-one-out on the raw file, built here so that this test does not depend on `prepare`."""
    raw = np.loadtxt(shared / "ml-100k" / "ml-100k.inter", skiprows=1, dtype=np.int64)
    user = np.unique(raw[:, 0], return_inverse=True)[1]
    item = np.unique(raw[:, 1], return_inverse=True)[1] + 1
    order = np.lexsort((np.arange(len(raw)), raw[:, 3], user))
    user, item = user[order], item[order]
    counts = np.bincount(user)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    back = counts[user] - (np.arange(len(user)) - indptr[user])  # 1 = last row of the user
    split = np.select([back == 1, back == 2], [SPLIT_CODE["test"], SPLIT_CODE["valid"]], SPLIT_CODE["train"])
    n_items = int(item.max())
    return PreparedData(root=root, meta={"domains": ["Movies"], "n_users": len(counts)}, indptr=indptr,
                        item=item.astype(np.int32), domain=np.zeros(len(item), np.int8),
                        split=split.astype(np.int8), ts=raw[order, 3],
                        item_domain=np.r_[-1, np.zeros(n_items)].astype(np.int8), items=None)


class Scores(Recommender):
    def __init__(self, n_items: int, kind: str) -> None:
        super().__init__(cfg=None, ctx=ModelContext(n_items=n_items, n_users=0, n_domains=1,  # type: ignore[arg-type]
                                                    item_domain=np.zeros(1), max_len=1))
        self.kind = kind
        self.gen = torch.Generator().manual_seed(0)

    def score(self, batch: SeqBatch) -> torch.Tensor:
        shape = (len(batch), self.ctx.n_items + 1)
        if self.kind == "constant":
            return torch.zeros(shape)
        return torch.rand(shape, generator=self.gen)  # [B, N+1]


@pytest.fixture(scope="module")
def ml100k(shared_data, tmp_path_factory) -> PreparedData:
    return ml100k_loo(shared_data, tmp_path_factory.mktemp("ml100k"))


def n_candidates(ev: Evaluator, n_items: int, mask: bool) -> np.ndarray:
    q = ev.queries
    n_cand = np.full(len(q), n_items)
    if mask:  # distinct earlier items other than the target are removed
        n_cand -= np.array([len(set(q.hist_item[a:b].tolist()) - {t})
                            for a, b, t in zip(q.hist_start, q.hist_end, q.target, strict=True)])
    return n_cand


@pytest.mark.parametrize("mask", [False, True])
def test_constant_model_gets_the_last_rank_exactly(ml100k, mask):
    ev = Evaluator(ml100k, EvalConfig(mask_seen=mask), "test", max_len=50)
    res = ev.evaluate(Scores(ml100k.n_items, "constant"))
    assert ev.n_queries == ml100k.n_users == 943
    np.testing.assert_array_equal(res.per_query["rank"].to_numpy(), n_candidates(ev, ml100k.n_items, mask))


def test_random_scores_give_chance_level(ml100k, tmp_path):
    c = EvalConfig(ks=[10], mode="both", n_negatives=99, mask_seen=True)
    ev = Evaluator(ml100k, c, "test", max_len=50, cache_dir=tmp_path)
    res = ev.evaluate(Scores(ml100k.n_items, "rand"))
    q = len(res.per_query)
    # Sampled: the target is uniformly placed among 100 items -> HR@10 = 0.1 (sd 0.0098 here).
    assert abs(res.metrics_sampled["overall"]["hr@10"] - 0.1) < 0.045
    assert abs(res.per_query["rank_sampled"].mean() - 50.5) < 5 * 29 / np.sqrt(q)
    # Full: uniform over each query's unmasked candidates -> mean rank (n_cand + 1) / 2.
    rank = res.per_query["rank"].to_numpy()
    n_cand = n_candidates(ev, ml100k.n_items, True)
    assert np.all((rank >= 1) & (rank <= n_cand))
    assert abs(rank.mean() - ((n_cand + 1) / 2).mean()) < 5 * ml100k.n_items / np.sqrt(12 * q)


@pytest.mark.parametrize("mask", [False, True])
def test_fast_path_equals_reference_for_sasrec_on_ml100k(ml100k, mask):
    """A (randomly initialised) SASRec on real ML-100K: the batched path -- seen items masked by
    one scatter per batch, the model's serve path in length-sorted chunks -- gives every query
    the same rank, sampled rank and top-10 as the per-query numpy reference path, and the
    chunked forward the same ranks as one forward pass of the whole batch."""
    from mosaicrec.models.base import ModelContext as Ctx
    from mosaicrec.registry import MODELS

    cls = MODELS.get("sasrec")
    torch.manual_seed(0)
    ctx = Ctx(n_items=ml100k.n_items, n_users=ml100k.n_users, n_domains=1, item_domain=ml100k.item_domain,
              max_len=50)
    model = cls(cls.Config(hidden=16, layers=2, heads=2, ffn_mult=4), ctx).eval()
    c = EvalConfig(ks=[1, 10], mode="both", n_negatives=99, mask_seen=mask, batch_size=400, save_topk=10)
    ev = Evaluator(ml100k, c, "test", max_len=50, cache_dir=ml100k.root)
    model.serve_chunk_tokens = 1000  # 20 rows per chunk: 47 chunks of 943 queries
    fast = ev.evaluate(model)
    ref = ev.evaluate(model, path="reference")
    model.serve_chunk_tokens = 10 ** 9  # one pass per batch
    whole = ev.evaluate(model)
    for col in ("rank", "rank_sampled"):
        np.testing.assert_array_equal(fast.per_query[col].to_numpy(), ref.per_query[col].to_numpy())
        np.testing.assert_array_equal(fast.per_query[col].to_numpy(), whole.per_query[col].to_numpy())
    np.testing.assert_array_equal(np.stack(fast.per_query["topk"].to_numpy()), np.stack(ref.per_query["topk"].to_numpy()))
    assert fast.metrics == ref.metrics == whole.metrics
    ranks = fast.per_query["rank"].to_numpy()
    assert len(np.unique(ranks)) > 100  # a real spread of ranks, not a degenerate model
