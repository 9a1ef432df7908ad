"""Item index: exact search equals brute force; domains, exclusion, additions; ANN recall."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mosaicrec.serving.index import IndexConfig, ItemIndex, resolve_kind


def brute(vectors, doms, q, k, domain=None, exclude=()):
    scores = vectors @ q  # [N+1]
    scores[0] = -np.inf
    if domain is not None:
        scores[doms != domain] = -np.inf
    scores[list(exclude)] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return [int(i) for i in order if np.isfinite(scores[i])]


@pytest.fixture()
def catalogue():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((301, 16)).astype(np.float32)  # [N+1, D]
    vectors[0] = 0
    doms = np.r_[-1, rng.integers(0, 3, 300)].astype(np.int8)
    return vectors, doms, rng.standard_normal((5, 16)).astype(np.float32)


def test_flat_index_matches_brute_force_per_domain_and_excludes_seen(catalogue):
    vectors, doms, queries = catalogue
    index = ItemIndex(vectors, doms, IndexConfig(kind="auto"))
    assert set(index.kinds.values()) == {"flat"}
    exclude = [brute(vectors, doms, q, 3) for q in queries]  # hide each query's own top 3
    for domain in (None, 0, 1, 2):
        ids, scores = index.search(queries, 10, domain, exclude)
        for q, got, sc, ex in zip(queries, ids, scores, exclude, strict=True):
            assert got == brute(vectors, doms, q, 10, domain, ex)
            assert np.allclose(sc, vectors[got] @ q, atol=1e-5)
            assert not set(got) & set(ex)
            if domain is not None:
                assert (doms[got] == domain).all()


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_exclusion_as_int64_arrays_equals_sets(catalogue, kind):
    # the service passes each request's history as an int64 array (repeats allowed)
    vectors, doms, queries = catalogue
    index = ItemIndex(vectors, doms, IndexConfig(kind=kind))
    sets = [set(brute(vectors, doms, q, 3)) for q in queries]
    arrays = [np.array(sorted(ex) * 2, dtype=np.int64) for ex in sets]
    for domain in (None, 1):
        assert index.search(queries, 10, domain, arrays) == index.search(queries, 10, domain, sets)
        ids, _ = index.search(queries, 10, domain, arrays)
        assert all(not set(got) & ex for got, ex in zip(ids, sets, strict=True))


def test_added_items_are_found_at_once_in_their_domain(catalogue):
    vectors, doms, queries = catalogue
    index = ItemIndex(vectors, doms)
    new = (queries[:2] * 10).astype(np.float32)  # far larger inner product than any item
    index.add(new, np.array([301, 302]), np.array([1, 3]))  # domain 3 is new
    ids, _ = index.search(queries[:1], 1, None)
    assert ids == [[301]]
    ids, _ = index.search(queries[1:2], 1, 3)
    assert ids == [[302]]
    ids, _ = index.search(queries[:1], 1, 0)
    assert ids[0][0] not in (301, 302)
    with pytest.raises(ValueError, match="expected"):
        index.add(np.zeros((1, 5)), np.array([303]), np.array([0]))


def test_fewer_items_than_k_returns_what_exists():
    vectors = np.eye(4, dtype=np.float32)  # items 1..3
    index = ItemIndex(vectors, np.array([-1, 0, 0, 1]))
    ids, _ = index.search(np.ones((1, 4), np.float32), 10, 0, [[1]])
    assert ids == [[2]]


def test_auto_kind_switches_at_the_size_threshold():
    cfg = IndexConfig(exact_max_items=1000)
    assert resolve_kind(1000, cfg) == "flat"
    assert resolve_kind(1001, cfg) == "hnsw"
    assert resolve_kind(1001, IndexConfig(exact_max_items=1000, approx="ivf")) == "ivf"
    assert resolve_kind(10, IndexConfig(kind="ivf")) == "ivf"


def recall_at_10(index: ItemIndex, vectors: np.ndarray, queries: np.ndarray) -> float:
    exact = ItemIndex(vectors, np.zeros(len(vectors), np.int8), IndexConfig(kind="flat"))
    truth, _ = exact.search(queries, 10)
    got, _ = index.search(queries, 10)
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth, strict=True)]))


def test_default_approximate_index_recall_on_100k_random_vectors():
    """The default large-catalogue index (auto -> HNSW) keeps recall@10 >= 0.95 vs exact search."""
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((100_001, 32)).astype(np.float32)  # [N+1, D]
    queries = rng.standard_normal((300, 32)).astype(np.float32)
    t0 = time.perf_counter()
    index = ItemIndex(vectors, np.zeros(len(vectors), np.int8), IndexConfig(exact_max_items=50_000))
    build = time.perf_counter() - t0
    assert set(index.kinds.values()) == {"hnsw"}
    recall = recall_at_10(index, vectors, queries)
    print(f"hnsw 100k x 32: recall@10 {recall:.4f}, build {build:.1f}s")
    assert recall >= 0.95


def test_ivf_recall_on_clustered_vectors():
    """IVF (the other approximate choice) on clustered data, as real item embeddings are."""
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((50, 32)).astype(np.float32) * 3
    vectors = (centres[rng.integers(0, 50, 20_001)] + rng.standard_normal((20_001, 32))).astype(np.float32)
    queries = (centres[rng.integers(0, 50, 200)] + rng.standard_normal((200, 32))).astype(np.float32)
    index = ItemIndex(vectors, np.zeros(len(vectors), np.int8), IndexConfig(kind="ivf"))
    assert set(index.kinds.values()) == {"ivf"}
    recall = recall_at_10(index, vectors, queries)
    print(f"ivf 20k clustered x 32: recall@10 {recall:.4f}")
    assert recall >= 0.95
