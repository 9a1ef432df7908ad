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


@pytest.mark.parametrize("chunk_tokens", [12, 24, 36])
def test_serve_repr_in_length_sorted_chunks_equals_user_repr(chunk_tokens: int) -> None:
    """Batches larger than serve_chunk_tokens run in chunks of rows sorted by history length,
    each cut to its longest history; the rows come back in the batch's order."""
    model = _model(2, 2)
    lengths = [1, 12, 5, 0, 3, 12, 7, 2, 9, 4, 11]  # one empty history
    batch = _batch(lengths, 12)
    with torch.inference_mode():
        whole = model.serve_repr(batch)  # [B, D] one pass (default chunk: 4096 cells)
        model.serve_chunk_tokens = chunk_tokens  # 1, 2 or 3 rows per chunk
        chunked = model.serve_repr(batch)  # [B, D]
        full = model.user_repr(batch)
    assert chunked.shape == (len(lengths), 16)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked[[i for i, n in enumerate(lengths) if n]],
                               full[[i for i, n in enumerate(lengths) if n]], rtol=1e-5, atol=1e-5)
    # each row really is its own query: permuting the batch permutes the states
    perm = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(1))
    permuted = SeqBatch(items=batch.items[perm], domains=batch.domains[perm], lengths=batch.lengths[perm],
                        users=batch.users[perm], targets=batch.targets[perm], target_domains=batch.target_domains[perm])
    with torch.inference_mode():
        torch.testing.assert_close(model.serve_repr(permuted), chunked[perm], rtol=1e-5, atol=1e-5)
