"""HTTP API on a tiny model: answers equal brute-force ranking; bad input; safety; batching."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from tests.serving.toys import BagModel, BiasedBag, LeftPositionBag, context

from mosaicrec.serving.app import create_app
from mosaicrec.serving.schemas import RecommendRequest
from mosaicrec.serving.service import RequestError, ServeConfig, Service

MAX_LEN = 5


def make_service(data, cls=BagModel, **cfg) -> Service:
    model = cls(cls.Config(dim=8), context(data, MAX_LEN))
    return Service(model, data, MAX_LEN, ServeConfig(**cfg), model_name="bag")


@pytest.fixture()
def service(toy_data):
    return make_service(toy_data)


@pytest.fixture()
def client(service):
    with TestClient(create_app(service)) as c:
        yield c


def expected_top(service: Service, raw_history: list[str], k: int, domain: str | None, exclude: bool):
    """Brute-force ranking with model.score (the reference the index must reproduce)."""
    ids = [service.by_raw[r][0] for r in raw_history][-MAX_LEN:]
    q = service.resolve(RecommendRequest(history=raw_history, k=k, domain=domain, exclude_seen=exclude))
    with torch.inference_mode():
        scores = service.model.score(service.make_batch([q], "max_len"))[0].numpy().copy()  # [N+1], as the evaluator pads
    scores[0] = -np.inf
    if domain is not None:
        scores[np.array(service.item_domain) != service.domains.index(domain)] = -np.inf
    if exclude:
        scores[[service.by_raw[r][0] for r in raw_history]] = -np.inf
    assert len(ids) == len(q.items)
    return [service.raw_ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


@pytest.mark.parametrize("domain", [None, "Food", "Kitchen"])
@pytest.mark.parametrize("exclude", [True, False])
def test_recommend_equals_brute_force_ranking(client, service, domain, exclude):
    history = ["F1", "K2", "F3"]
    r = client.post("/recommend", json={"history": history, "k": 7, "domain": domain, "exclude_seen": exclude})
    assert r.status_code == 200, r.text
    body = r.json()
    got = [it["id"] for it in body["items"]]
    assert got == expected_top(service, history, 7, domain, exclude)
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(it["title"].endswith(f"item {it['id']}") for it in body["items"])
    if domain:
        assert {it["domain"] for it in body["items"]} == {domain}
    assert body["history_used"] == 3 and body["truncated"] == 0 and body["warnings"] == []


def test_health_and_info(client, toy_data):
    assert client.get("/health").json() == {"status": "ok", "n_items": toy_data.n_items}
    info = client.get("/info").json()
    assert info["model"] == "bag" and info["dataset"] == "toy" and info["n_items"] == 42
    assert info["domains"] == ["Food", "Kitchen"] and info["version"] and info["max_len"] == MAX_LEN
    assert info["index"] == {"all": "flat", "Food": "flat", "Kitchen": "flat"}
    assert info["scoring"] == "index" and info["kind"] == "sequential"
    assert info["padding"] == "longest"  # a mean of embeddings does not depend on the padding


def test_padding_to_the_longest_history_only_when_it_changes_nothing(toy_data):
    assert make_service(toy_data, cls=LeftPositionBag).padding == "max_len"
    assert make_service(toy_data, padding="max_len").padding == "max_len"
    svc = make_service(toy_data)
    q = svc.resolve(RecommendRequest(history=["F1", "K2"]))
    assert svc.make_batch([q]).items.shape == (1, 2)
    assert svc.make_batch([q], "max_len").items.tolist() == [[0, 0, 0] + q.items.tolist()]


def test_unknown_ids_are_named_or_ignored_with_a_warning(client):
    r = client.post("/recommend", json={"history": ["F1", "nope", "K2", "gone"]})
    assert r.status_code == 422
    assert r.json()["unknown_ids"] == ["nope", "gone"] and "nope" in r.json()["detail"]
    r = client.post("/recommend", json={"history": ["F1", "nope"], "ignore_unknown": True})
    assert r.status_code == 200
    assert r.json()["history_used"] == 1 and "nope" in r.json()["warnings"][0]
    r = client.post("/recommend", json={"history": ["nope"], "ignore_unknown": True})
    assert r.status_code == 422 and "no known item" in r.json()["detail"]
    r = client.post("/recommend", json={"user": "u1"})  # a sequential model needs a history
    assert r.status_code == 422 and "no known item" in r.json()["detail"]


@pytest.mark.parametrize("body", [
    b'{"history": ["F1"',  # malformed JSON
    b'{"history": "F1"}',  # wrong type
    b'{"history": ["F1"], "k": "ten"}',
    b'{"history": ["F1"], "k": 0}',
    b'{"history": []}',
    b'{"history": ["F1"], "surprise": 1}',  # unknown key
    b'{"history": [{"id": "F1", "when": 3}]}',
])
def test_malformed_and_mistyped_bodies_are_422(client, body):
    r = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text


def test_unknown_domain_and_ambiguous_id(client):
    r = client.post("/recommend", json={"history": ["F1"], "domain": "Toys"})
    assert r.status_code == 422 and "Toys" in r.json()["detail"] and "Food" in r.json()["detail"]
    r = client.post("/recommend", json={"history": ["X"]})
    assert r.status_code == 422 and r.json()["ambiguous_ids"] == ["X"]
    r = client.post("/recommend", json={"history": [{"id": "X", "domain": "Kitchen"}]})
    assert r.status_code == 200


def test_long_history_is_truncated_to_the_most_recent_and_said(client, service):
    history = ["F1", "F2", "F3", "F4", "F5", "F6", "K1", "K2"]
    body = client.post("/recommend", json={"history": history, "k": 5, "exclude_seen": False}).json()
    assert body["history_used"] == MAX_LEN and body["truncated"] == 3
    assert "3 oldest were dropped" in body["warnings"][0]
    recent = client.post("/recommend", json={"history": history[3:], "k": 5, "exclude_seen": False}).json()
    assert [i["id"] for i in body["items"]] == [i["id"] for i in recent["items"]]


def test_resolved_history_is_an_int64_array_and_exclusion_covers_dropped_items(client, service):
    # the fast path (plain ids) and the slow path (objects, numbers) resolve to the same int64 arrays
    history = ["F1", "F2", "F3", "F4", "F5", "F6", "K1", "K2"]
    fast = service.resolve(RecommendRequest(history=history))
    slow = service.resolve(RecommendRequest(history=[{"id": h} for h in history]))
    for q in (fast, slow):
        assert isinstance(q.items, np.ndarray) and q.items.dtype == np.int64
        assert [service.raw_ids[i] for i in q.items] == history[-MAX_LEN:]
        assert sorted(service.raw_ids[i] for i in q.exclude) == sorted(history)  # all 8, not only the 5 used
    assert service._fast_ids(history) is not None and service._fast_ids([*history, "nope"]) is None
    assert service._fast_ids([{"id": "F1"}]) is None  # not a plain id: the slow path decides
    assert len(service.resolve(RecommendRequest(history=history, exclude_seen=False)).exclude) == 0
    # the 3 items dropped by truncation are still never recommended
    body = client.post("/recommend", json={"history": history, "k": 40}).json()
    assert body["truncated"] == 3 and not {i["id"] for i in body["items"]} & set(history)
    assert len(body["items"]) == 42 - len(history)


def test_present_copies_a_per_item_part_built_once(client, service):
    a, b = service.present(3, 0.5), service.present(3, 0.25)
    assert list(a) == ["id", "item_idx", "domain", "title", "image", "score"]
    assert a == {"id": service.raw_ids[3], "item_idx": 3, "domain": service.domains[service.item_domain[3]],
                 "title": service.titles[3], "image": service.image_url(3), "score": 0.5}
    a["title"] = "changed"  # an answer is its own dict: changing one changes no other
    assert b["score"] == 0.25 and service.present(3, 0.0)["title"] == service.titles[3]


def test_timestamps_order_the_history(service):
    q = service.resolve(RecommendRequest(history=[{"id": "F2", "ts": 5}, {"id": "F1", "ts": 1}, {"id": "K1", "ts": 5}]))
    assert [service.raw_ids[i] for i in q.items] == ["F1", "F2", "K1"]  # stable for ties
    with pytest.raises(RequestError, match="every item or for none"):
        service.resolve(RecommendRequest(history=[{"id": "F2", "ts": 5}, "F1"]))


def test_body_size_cap_is_413(toy_data):
    svc = make_service(toy_data, max_body_bytes=2048)
    with TestClient(create_app(svc)) as c:
        big = {"history": ["F1"] * 1000}
        assert c.post("/recommend", json=big).status_code == 413
        assert c.post("/recommend", json={"history": ["F1"]}).status_code == 200

        def chunks():  # no content-length: the streamed size is counted
            for _ in range(10):
                yield b" " * 500
        r = c.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413


def test_api_key(service):
    with TestClient(create_app(service, api_key="s3cret")) as c:
        assert c.get("/health").status_code == 200  # open for probes
        assert c.post("/recommend", json={"history": ["F1"]}).status_code == 401
        assert c.post("/recommend", json={"history": ["F1"]}, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/recommend", json={"history": ["F1"]}, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/info").status_code == 401


def test_explain_weights_per_request(client):
    body = client.post("/recommend", json={"history": ["F1", "F2", "K1", "K3"], "explain": True}).json()
    assert body["explain"] == {"domain_weights": [0.5, 0.5]}
    body = client.post("/recommend", json={"history": ["F1", "F2", "F3", "K3"], "explain": True}).json()
    assert body["explain"] == {"domain_weights": [0.75, 0.25]}
    assert client.post("/recommend", json={"history": ["F1"]}).json()["explain"] is None


def test_title_search(client):
    items = client.get("/items/search", params={"q": "kitchen item k1", "limit": 5}).json()["items"]
    assert [i["id"] for i in items] == ["K1", "K10", "K11", "K12", "K13"]
    items = client.get("/items/search", params={"q": "item x", "domain": "Kitchen"}).json()["items"]
    assert [(i["id"], i["domain"]) for i in items] == [("X", "Kitchen")]


def test_id_only_model_refuses_new_items_clearly(client):
    r = client.post("/items", json={"items": [{"id": "F99", "domain": "Food", "title": "new jam"}]})
    assert r.status_code == 501
    assert "ID-only" in r.json()["detail"] and "bag" in r.json()["detail"]


def test_model_with_its_own_score_is_ranked_by_it(toy_data):
    svc = make_service(toy_data, cls=BiasedBag)
    assert svc.scoring == "model"
    with TestClient(create_app(svc)) as c:
        body = c.post("/recommend", json={"history": ["F1"], "k": 3, "domain": "Food"}).json()
    assert [i["id"] for i in body["items"]] == ["X", "F20", "F19"]  # the bias dominates


def test_concurrent_requests_are_micro_batched_with_identical_answers(toy_data):
    svc = make_service(toy_data, max_batch=16, max_wait_ms=20)
    rng = np.random.default_rng(0)
    histories = [[f"F{i}" for i in rng.integers(1, 21, 3)] + [f"K{rng.integers(1, 21)}"] for _ in range(48)]

    async def fire(app):
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                rs = await asyncio.gather(*(c.post("/recommend", json={"history": h, "k": 5}) for h in histories))
                seq = [await c.post("/recommend", json={"history": h, "k": 5}) for h in histories[:8]]
        return rs, seq

    app = create_app(svc)
    svc.model.forward_sizes.clear()
    together, one_by_one = asyncio.run(fire(app))
    assert all(r.status_code == 200 for r in together + one_by_one)
    batched = svc.model.forward_sizes[: len(svc.model.forward_sizes) - 8]
    assert sum(batched) == 48 and max(batched) > 1 and len(batched) < 48
    assert svc.model.forward_sizes[-8:] == [1] * 8
    for a, b in zip(together[:8], one_by_one, strict=True):
        assert [i["id"] for i in a.json()["items"]] == [i["id"] for i in b.json()["items"]]
        assert np.allclose([i["score"] for i in a.json()["items"]], [i["score"] for i in b.json()["items"]], atol=1e-5)


def test_unbatched_mode_is_one_forward_per_request(toy_data):
    svc = make_service(toy_data, batching=False)

    async def fire(app):
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await asyncio.gather(*(c.post("/recommend", json={"history": ["F1", "K1"]}) for _ in range(10)))

    svc.model.forward_sizes.clear()
    assert all(r.status_code == 200 for r in asyncio.run(fire(create_app(svc))))
    assert svc.model.forward_sizes == [1] * 10


def test_images_local_files_are_served_and_urls_passed_through(toy_root, tmp_path):
    import shutil

    import polars as pl
    from PIL import Image

    from mosaicrec.data.schema import PreparedData

    root = tmp_path / "prep"
    shutil.copytree(toy_root, root)
    (root / "img").mkdir()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(root / "img" / "f1.png")
    items = pl.read_parquet(root / "items.parquet")
    images = [None] * len(items)
    images[0], images[1] = "img/f1.png", "https://example.com/f2.jpg"
    items.with_columns(pl.Series("image", images, dtype=pl.Utf8)).write_parquet(root / "items.parquet")
    svc = make_service(PreparedData.load(root))
    with TestClient(create_app(svc, api_key="k")) as c:
        found = c.get("/items/search", params={"q": "food item f"}, headers={"X-API-Key": "k"}).json()["items"]
        assert [i["image"] for i in found[:3]] == ["/images/1", "https://example.com/f2.jpg", None]
        r = c.get("/images/1")  # no key needed: <img> tags cannot send one
        assert r.status_code == 200 and r.content == (root / "img" / "f1.png").read_bytes()
        assert c.get("/images/2").status_code == 404  # a URL, not a local file
        assert c.get("/images/3").status_code == 404
        assert c.get("/images/9999").status_code == 404


def test_length_buckets_split_where_the_estimated_cost_is_smallest(toy_data):
    from math import inf

    from mosaicrec.serving.service import Query, length_buckets

    # forward cost 1 position, attention negligible (span inf): a pass costs rows * longest + 1
    assert length_buckets([1, 5, 1, 5], 1, inf) == [[0, 2], [1, 3]]  # 2*1 + 1 + 2*5 + 1 = 14 < 4*5 + 1 = 21
    assert length_buckets([4, 5], 1, inf) == [[0, 1]]  # 2*5 + 1 = 11, not more than 4 + 1 + 5 + 1 = 11
    assert length_buckets([3], 1, inf) == [[0]]
    assert length_buckets([100, 1, 10], 1, inf) == [[1], [2], [0]]  # 2 + 11 + 101 = 114 < 122 for [1, 10] + [100]
    assert length_buckets([100, 1, 10], 200, inf) == [[1, 2, 0]]  # 3*100 + 200 = 500 < 520 for [1, 10] + [100]
    # the attention term makes long rows dearer: a row of length L costs L * (1 + L / 40)
    # one pass: 3 * 40 * 2 + 50 = 290 > two: 2 * 20 * 1.5 + 50 + 40 * 2 + 50 = 240
    assert length_buckets([20, 40, 20], 50, 40) == [[0, 2], [1]]
    assert length_buckets([20, 40, 20], 50, inf) == [[0, 2, 1]]  # without it: 3*40 + 50 = 170 < 40 + 50 + 40 + 50

    svc = make_service(toy_data)

    def q(n):
        return Query(list(range(1, n + 1)), None, 1, set(), False)

    assert svc.buckets([q(3)]) == [[0]]
    assert sorted(map(sorted, svc.buckets([q(1), q(5), q(1), q(5)]))) == sorted(
        map(sorted, length_buckets([1, 5, 1, 5], svc.cfg.bucket_forward_cost, svc.cfg.bucket_attention_span)))
    fixed = make_service(toy_data, padding="max_len")
    assert fixed.buckets([q(1), q(5), q(1), q(5)]) == [[0, 1, 2, 3]]


def test_collaborative_filtering_models_score_known_users(toy_data, toy_root):
    from tests.serving.toys import UserCF

    svc = make_service(toy_data, cls=UserCF)
    with TestClient(create_app(svc)) as c:
        r = c.post("/recommend", json={"history": ["F1"]})
        assert r.status_code == 422 and "collaborative-filtering" in r.json()["detail"]
        r = c.post("/recommend", json={"user": "nobody"})
        assert r.status_code == 422 and r.json()["unknown_user"] == "nobody"
        body = c.post("/recommend", json={"user": "u3", "k": 5, "domain": "Kitchen"}).json()
    seen = set(toy_data.item[toy_data.indptr[3]:toy_data.indptr[4]].tolist())  # all of u3's known items
    with torch.inference_mode():
        scores = (svc.model.user_emb[3] @ svc.model.item_vectors().T).numpy()  # [N+1]
    kitchen = [i for i in range(1, 43) if svc.item_domain[i] == 1 and i not in seen]
    assert [i["item_idx"] for i in body["items"]] == sorted(kitchen, key=lambda i: -scores[i])[:5]
    assert body["history_used"] == 0


def test_openapi_schema_documents_the_endpoints(client):
    spec = client.get("/openapi.json").json()
    assert {"/recommend", "/items", "/health", "/info", "/items/search"} <= set(spec["paths"])
    body = spec["components"]["schemas"]["RecommendRequest"]["properties"]
    assert {"history", "user", "domain", "k", "exclude_seen", "ignore_unknown", "explain"} == set(body)
    assert client.get("/").status_code == 200 and "mosaicrec" in client.get("/").text
    assert client.get("/static/app.js").status_code == 200


def test_batch_policy_and_switch_interval_reach_the_server(toy_data):
    import sys

    before = sys.getswitchinterval()
    svc = make_service(toy_data, batch_policy="pipeline", switch_interval_ms=0.5)
    app = create_app(svc)
    assert app.state.batcher.policy == "pipeline"
    with TestClient(app) as c:
        assert sys.getswitchinterval() == pytest.approx(0.0005)  # set for the server's lifetime ...
        info = c.get("/info").json()["batching"]
        assert info["policy"] == "pipeline" and info["switch_interval_ms"] == 0.5
        assert c.post("/recommend", json={"history": ["F1", "K2"], "k": 2}).status_code == 200
    assert sys.getswitchinterval() == before  # ... and put back at shutdown
    assert create_app(make_service(toy_data)).state.batcher.policy == "recent"  # the default
    with pytest.raises(ValueError):
        ServeConfig(batch_policy="greedy")
