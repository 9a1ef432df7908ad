"""SASRec ``similarity: cosine``: unit-norm user and item vectors, loss = CE of cosine / temperature."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.base import ModelContext
from mosaicrec.registry import MODELS


def _model(**kw: object):
    ctx = ModelContext(n_items=30, n_users=5, n_domains=1, item_domain=np.zeros(31, np.int8), max_len=8)
    cls = MODELS.get("sasrec")
    torch.manual_seed(0)
    return cls(cls.Config(hidden=16, layers=1, heads=1, dropout=0.0, **kw), ctx)


def _batch() -> SeqBatch:
    g = torch.Generator().manual_seed(1)
    items = torch.randint(1, 31, (4, 8), generator=g)  # [B, L]
    items[0, :5] = 0  # left padding
    targets = torch.randint(1, 31, (4, 8), generator=g)  # [B, L]
    targets[0, :5] = 0
    zeros = torch.zeros(4, dtype=torch.int64)
    return SeqBatch(items=items, domains=torch.zeros_like(items), lengths=(items > 0).sum(1),
                    users=zeros, targets=targets, target_domains=zeros)


def test_cosine_vectors_are_unit_norm_and_padding_stays_zero() -> None:
    model = _model(similarity="cosine", temperature=0.1).eval()
    batch = _batch()
    with torch.inference_mode():
        u = model.user_repr(batch)  # [B, D]
        items = model.item_vectors()  # [N+1, D]
        served = model.serve_repr(batch)  # [B, D]
    torch.testing.assert_close(u.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(items[1:].norm(dim=-1), torch.ones(30))
    assert torch.count_nonzero(items[0]) == 0
    torch.testing.assert_close(served, u, rtol=1e-5, atol=1e-5)


def test_cosine_loss_is_ce_of_scaled_cosine() -> None:
    tau = 0.1
    model = _model(similarity="cosine", temperature=tau).eval()  # eval: no dropout
    batch = _batch()
    with torch.no_grad():
        h = model.sequence_states(batch)[batch.targets > 0]  # [P, D]
        w = model.item_emb.weight  # [N+1, D]
        logits = F.normalize(h, dim=-1) @ F.normalize(w, dim=-1).T / tau  # [P, N+1]
        logits[:, 0] = float("-inf")
        expected = F.cross_entropy(logits, batch.targets[batch.targets > 0])
        got = model.loss(batch)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    dot = _model().eval()  # same seed, dot product: a different loss
    with torch.no_grad():
        assert not torch.allclose(dot.loss(batch), got)


def test_cosine_training_lowers_loss() -> None:
    model = _model(similarity="cosine", temperature=0.1).train()
    batch = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model.loss(batch).item()
    for _ in range(20):
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    assert model.loss(batch).item() < first - 0.5
