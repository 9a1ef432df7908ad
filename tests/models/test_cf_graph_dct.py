"""DCT against scipy, user-item and item-item graphs (hand-computed values), graph cache."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch

from mosaicrec.models.cf import graph as G
from mosaicrec.models.cf.dct import dct, dct_2d, multimodal_transform


@pytest.mark.parametrize("shape", [(5, 7), (4, 8), (1, 3), (6, 1)])
def test_dct_matches_scipy_1d_both_axes(shape):
    x = np.random.default_rng(1).normal(size=shape)
    for axis in (0, 1):
        ours = dct(torch.from_numpy(x), dim=axis).numpy()
        np.testing.assert_allclose(ours, scipy.fft.dct(x, type=2, norm="ortho", axis=axis), atol=1e-12)


def test_dct_2d_matches_scipy_dctn_and_known_values():
    x = np.random.default_rng(2).normal(size=(6, 5))
    np.testing.assert_allclose(dct_2d(torch.from_numpy(x)).numpy(),
                               scipy.fft.dctn(x, type=2, norm="ortho"), atol=1e-12)
    # Hand value: the orthonormal DCT of a constant vector [c]*n is [c*sqrt(n), 0, ...].
    y = dct(torch.full((4,), 3.0, dtype=torch.float64))
    np.testing.assert_allclose(y.numpy(), [6.0, 0, 0, 0], atol=1e-12)


def test_multimodal_transform_modes():
    a = torch.randn(5, 4, dtype=torch.float64)
    b = torch.randn(5, 3, dtype=torch.float64)
    one = multimodal_transform([a, b], "1d").double()
    np.testing.assert_allclose(one[:, :4].numpy(), scipy.fft.dct(a.numpy(), norm="ortho", axis=1), atol=1e-5)
    np.testing.assert_allclose(one[:, 4:].numpy(), scipy.fft.dct(b.numpy(), norm="ortho", axis=1), atol=1e-5)
    two = multimodal_transform([a, b], "2d").double()
    np.testing.assert_allclose(two[:, 4:].numpy(), scipy.fft.dctn(b.numpy(), norm="ortho"), atol=1e-5)
    np.testing.assert_allclose(multimodal_transform([a, b], "none").numpy(), torch.cat([a, b], 1).float().numpy())
    with pytest.raises(ValueError, match="dct mode"):
        multimodal_transform([a], "3d")  # type: ignore[arg-type]


def test_bipartite_adj_hand_values():
    # users 0,1; item rows 0..2 (0 = padding); edges (0,1), (1,1), (1,2)
    users, items = torch.tensor([0, 1, 1]), torch.tensor([1, 1, 2])
    adj = G.bipartite_adj(users, items, n_users=2, n_item_rows=3).to_dense()
    assert adj.shape == (5, 5)
    # deg(u0)=1, deg(u1)=2, deg(i1)=2, deg(i2)=1
    assert adj[0, 2 + 1].item() == pytest.approx(1 / math.sqrt(1 * 2), rel=1e-5)
    assert adj[1, 2 + 1].item() == pytest.approx(1 / math.sqrt(2 * 2), rel=1e-5)
    assert adj[1, 2 + 2].item() == pytest.approx(1 / math.sqrt(2 * 1), rel=1e-5)
    assert torch.equal(adj, adj.T)
    assert adj[2].abs().sum() == 0  # the padding item has no edges
    assert int((adj != 0).sum()) == 6


def test_pruned_adj_keeps_the_requested_share():
    users = torch.arange(10).repeat_interleave(2)
    items = torch.arange(1, 21)
    adj = G.pruned_bipartite_adj(users, items, 10, 21, drop=0.75, generator=torch.Generator().manual_seed(0))
    assert int(adj._nnz()) == 2 * 5  # 20 edges * 0.25, both directions


def test_propagate_mean_and_sum():
    adj = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).to_sparse()
    x = torch.tensor([[1.0], [3.0]])
    # layers: [1,3], [3,1], [1,3] -> mean [5/3, 7/3], sum [5, 7]
    np.testing.assert_allclose(G.propagate(adj, x, 2).numpy().ravel(), [5 / 3, 7 / 3], rtol=1e-6)
    np.testing.assert_allclose(G.propagate(adj, x, 2, reduce="sum").numpy().ravel(), [5, 7])


@pytest.mark.parametrize("symmetric", [True, False])
def test_sparse_op_matches_coo_forward_and_gradient(symmetric):
    g = torch.Generator().manual_seed(3)
    dense = torch.rand(6, 6, generator=g, dtype=torch.float64) * (torch.rand(6, 6, generator=g) < 0.4)
    if symmetric:
        dense = dense + dense.T
    op = G.SparseOp(dense.to_sparse(), symmetric=symmetric)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = G.propagate(op, x, 2, reduce="sum")
    np.testing.assert_allclose(y.detach().numpy(), (x + dense @ x + dense @ dense @ x).detach().numpy(), atol=1e-12)
    w = torch.randn(6, 3, generator=g, dtype=torch.float64)
    (y * w).sum().backward()
    # d/dx sum(w * (I + A + A^2) x) = (I + A + A^2)^T w
    expected = w + dense.T @ w + dense.T @ dense.T @ w
    np.testing.assert_allclose(x.grad.numpy(), expected.numpy(), atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: op @ t, (x.detach().clone().requires_grad_(),))
    assert torch.equal(op.to_dense(), dense) and op.to("cpu") is op


def test_knn_edges_hand_example_and_zero_rows():
    feat = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    rows, cols = G.knn_edges(feat, k=2)
    got = {(int(r), int(c)) for r, c in zip(rows, cols, strict=True)}
    assert got == {(1, 1), (1, 2), (2, 2), (2, 1), (3, 3), (3, 4), (4, 4), (4, 3)}  # row 0: no edges


def test_item_knn_graph_cached_by_content_hash(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    feats = {"text": rng.normal(size=(7, 4)).astype(np.float32), "image": rng.normal(size=(7, 3)).astype(np.float32)}
    feats["text"][0] = feats["image"][0] = 0
    w = {"text": 0.8, "image": 0.2}
    first = G.item_knn_graph(feats, 3, w, tmp_path)
    files = list(tmp_path.glob("item_knn-*.npz"))
    assert len(files) == 1
    G._MEMORY_CACHE.clear()
    monkeypatch.setattr(G, "knn_adj", lambda *a, **k: pytest.fail("graph rebuilt instead of read from cache"))
    again = G.item_knn_graph(feats, 3, w, tmp_path)
    assert torch.allclose(first.to_dense(), again.to_dense())
    # The mixed graph is the weighted sum of the per-modality graphs.
    monkeypatch.undo()
    expect = 0.8 * G.knn_adj(torch.from_numpy(feats["text"]), 3) + 0.2 * G.knn_adj(torch.from_numpy(feats["image"]), 3)
    assert torch.allclose(first.to_dense(), expect.to_dense(), atol=1e-6)
    # Different content or parameters -> a different key (and a new file).
    changed = {**feats, "text": feats["text"] + 1e-3}
    assert G.graph_key(changed, 3, w) != G.graph_key(feats, 3, w)
    assert G.graph_key(feats, 4, w) != G.graph_key(feats, 3, w)
    G.item_knn_graph(changed, 3, w, tmp_path)
    assert len(list(tmp_path.glob("item_knn-*.npz"))) == 2
