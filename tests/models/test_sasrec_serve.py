"""SASRec.serve_repr (final block computes only the last position) equals user_repr."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.base import ModelContext
from mosaicrec.registry import MODELS


def _model(layers: int, heads: int, max_len: int = 12):
    ctx = ModelContext(n_items=30, n_users=5, n_domains=1, item_domain=np.zeros(31, np.int8), max_len=max_len)
    cls = MODELS.get("sasrec")
    torch.manual_seed(layers * 10 + heads)
    return cls(cls.Config(hidden=16, layers=layers, heads=heads, dropout=0.3), ctx).eval()


def _batch(lengths: list[int], L: int) -> SeqBatch:
    g = torch.Generator().manual_seed(0)
    items = torch.randint(1, 31, (len(lengths), L), generator=g)  # [B, L]
    for r, n in enumerate(lengths):
        items[r, : L - n] = 0  # left padding
    b = len(lengths)
    zeros = torch.zeros(b, dtype=torch.int64)
    return SeqBatch(items=items, domains=torch.zeros_like(items), lengths=torch.tensor(lengths),
                    users=zeros, targets=zeros, target_domains=zeros)


@pytest.mark.parametrize(("layers", "heads"), [(1, 1), (2, 2), (3, 4)])
def test_serve_repr_equals_user_repr(layers: int, heads: int) -> None:
    model = _model(layers, heads)
    for L in (12, 5):  # padded to max_len, and to a shorter batch length ("longest" padding)
        batch = _batch([1, 2, 5, L, L - 1, 3][:6], L)
        with torch.inference_mode():
            full = model.user_repr(batch)  # [B, D]
            fast = model.serve_repr(batch)  # [B, D]
        assert fast.shape == full.shape == (6, 16)
        torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
        # a change in the oldest item of a long history changes both in the same way
        batch.items[3, 0] = 1 + batch.items[3, 0] % 30
        with torch.inference_mode():
            torch.testing.assert_close(model.serve_repr(batch), model.user_repr(batch), rtol=1e-5, atol=1e-5)


def test_serve_repr_refuses_training_mode() -> None:
    model = _model(2, 1).train()
    with pytest.raises(RuntimeError, match="eval mode"):
        model.serve_repr(_batch([3], 12))
