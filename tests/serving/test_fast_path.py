"""The lean POST /recommend handler answers exactly like the FastAPI route; start-up tuning."""

from __future__ import annotations

import gc

import pytest
from fastapi.testclient import TestClient
from tests.serving.toys import BagModel, context

from mosaicrec.serving.app import create_app
from mosaicrec.serving.service import ServeConfig, Service

MAX_LEN = 5

BODIES = [
    b'{"history": ["F1", "K2", "F3"], "k": 7}',
    b'{"history": ["F1", "K2"], "k": 3, "domain": "Kitchen", "exclude_seen": false, "explain": true}',
    b'{"history": ["F1", "F2", "F3", "F4", "F5", "F6", "K1"], "k": 4}',  # truncated, said in warnings
    b'{"history": ["F1", "nope"], "ignore_unknown": true}',
    b'{"history": ["F1", "nope", "gone"]}',  # 422 naming the ids
    b'{"history": ["X"]}',  # ambiguous id: 422
    b'{"history": ["F1"], "domain": "Toys"}',
    b'{"history": ["F1"',  # malformed JSON
    b'{"history": "F1"}',  # wrong type
    b'{"history": ["F1"], "k": 0}',
    b'{"history": ["F1"], "surprise": 1}',  # unknown key
    b'[1, 2]',
    b'\xff\xfe',  # not UTF-8
]


def _client(data, fast: bool, api_key: str | None = None) -> TestClient:
    model = BagModel(BagModel.Config(dim=8), context(data, MAX_LEN))
    svc = Service(model, data, MAX_LEN, ServeConfig(fast_path=fast), model_name="bag")
    return TestClient(create_app(svc, api_key=api_key))


def test_fast_path_equals_fastapi_route(toy_data) -> None:
    with _client(toy_data, fast=True) as fast, _client(toy_data, fast=False) as slow:
        statuses = set()
        for body in BODIES:
            a = fast.post("/recommend", content=body, headers={"content-type": "application/json"})
            b = slow.post("/recommend", content=body, headers={"content-type": "application/json"})
            assert a.status_code == b.status_code, (body, a.text, b.text)
            assert a.json() == b.json(), body
            assert a.headers["content-type"] == "application/json"
            statuses.add(a.status_code)
        assert statuses == {200, 422}
        ok = fast.post("/recommend", json={"history": ["F1", "K2"], "k": 3, "explain": True}).json()
        assert len(ok["items"]) == 3 and ok["explain"] is not None
        assert fast.get("/health").status_code == 200  # other paths: the FastAPI app


@pytest.mark.parametrize("fast", [True, False])
def test_api_key_on_both_paths(toy_data, fast: bool) -> None:
    with _client(toy_data, fast, api_key="s3cret") as c:
        r = c.post("/recommend", json={"history": ["F1"]})
        assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
        assert c.post("/recommend", json={"history": ["F1"]}, headers={"X-API-Key": "no"}).status_code == 401
        assert c.post("/recommend", json={"history": ["F1"]}, headers={"X-API-Key": "s3cret"}).status_code == 200


def test_gc_freeze_at_start_up(toy_data) -> None:
    gc.unfreeze()
    with _client(toy_data, fast=True):
        assert gc.get_freeze_count() > 0  # the loaded objects are out of the collector's reach
    gc.unfreeze()


def test_service_uses_serve_repr_when_equal(toy_run) -> None:
    svc = Service.from_run(toy_run, ServeConfig())
    assert svc.repr_fn == svc.model.serve_repr and svc.info()["user_repr"] == "serve_repr"

    class Broken(type(svc.model)):  # a serve_repr that disagrees with user_repr is not used
        def serve_repr(self, batch):
            return super().serve_repr(batch) + 1.0

    svc.model.__class__ = Broken
    assert svc._check_serve_repr() == svc.model.user_repr
