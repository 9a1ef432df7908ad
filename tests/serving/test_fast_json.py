"""The fast path's JSON (orjson when installed) gives json's answers; batched exclusion edge cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mosaicrec.serving import app as app_mod
from mosaicrec.serving.index import _Dense

BODIES = [
    b'{"history": ["1", "2", "3"], "k": 7}',
    b'{"history": ["caf\xc3\xa9", "\\u00e9t\\u00e9"], "domain": null, "explain": false}',
    b'  {"history": [1, 2.5, {"id": "x", "ts": 3}]}  ',
    b'{"a": 1, "a": 2}',  # duplicate key: the last wins in both
    b'{"k": NaN}',  # json accepts NaN, orjson does not: json decides
    b'{"k": 123456789012345678901234567890}',  # beyond 64 bits: json decides
    b'"\\ud800"',  # lone surrogate: json accepts
    '{"history": ["a"]}'.encode("utf-16"),  # json detects UTF-16, orjson does not
    b'\xef\xbb\xbf{"history": []}',  # UTF-8 byte order mark
]
BAD = [b'{"history": ["F1"', b"\xff\xfe", b"", b"[1, 2,]", b"{'a': 1}"]


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str) or (
        a != a and b != b)


@pytest.mark.parametrize("body", BODIES)
def test_loads_equals_json(body: bytes) -> None:
    got, want = app_mod._loads(body), json.loads(body)
    assert type(got) is type(want)
    if isinstance(want, dict) and "k" in want and isinstance(want["k"], float):  # NaN != NaN
        assert np.isnan(got["k"]) and np.isnan(want["k"])
    else:
        assert got == want


@pytest.mark.parametrize("body", BAD)
def test_loads_raises_jsons_error(body: bytes) -> None:
    with pytest.raises(ValueError) as want:
        json.loads(body)
    with pytest.raises(ValueError) as got:
        app_mod._loads(body)
    assert type(got.value) is type(want.value) and str(got.value) == str(want.value)  # FastAPI's 422 body
    if isinstance(want.value, json.JSONDecodeError):
        assert (got.value.msg, got.value.pos) == (want.value.msg, want.value.pos)


def test_dumps_parses_back_like_json() -> None:
    payload = {"items": [{"id": "caf\u00e9", "item_idx": 3, "domain": "Food", "title": None, "image": None,
                          "score": 0.1 + 0.2}, {"id": "9", "item_idx": 9, "domain": "F", "title": "t\u00e9",
                                                 "image": "http://x/y.jpg", "score": -1e-7}],
               "domain": None, "history_used": 3, "truncated": 0, "warnings": ["w"], "explain": None}
    fast = app_mod._dumps(payload, 200)
    slow = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    assert json.loads(fast) == json.loads(slow)
    assert fast.decode("utf-8")  # UTF-8, not ASCII-escaped
    # errors and explanations go through json itself: NaN is refused, not written as null
    with pytest.raises(ValueError):
        app_mod._dumps({"detail": [{"input": float("nan")}]}, 422)
    with pytest.raises(ValueError):
        app_mod._dumps({**payload, "explain": {"w": [float("nan")]}}, 200)


def test_dense_exclusion_edge_cases() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((6, 4)).astype(np.float32)  # items 10..15
    dense = _Dense(vectors, np.arange(10, 16))
    q = rng.standard_normal((4, 4)).astype(np.float32)
    full = (q @ vectors.T).argsort(axis=1)[:, ::-1] + 10  # [4, 6] ids best first
    exclude = [set(), [int(full[1, 0]), 3, 99, -1, 10_000],  # ids not in this partition are ignored
               (int(x) for x in full[2, :5]), frozenset(int(x) for x in full[3])]  # a generator; everything
    ids, scores = dense.search(q, 3, exclude)
    assert ids[0] == full[0, :3].tolist()
    assert ids[1] == full[1, 1:4].tolist()
    assert ids[2] == [int(full[2, 5])]  # fewer than k left
    assert ids[3] == [] and scores[3] == []
    assert np.allclose(scores[0], (q[0] @ vectors.T)[full[0, :3] - 10], atol=1e-6)
    # int64 arrays (the service's resolved histories, repeats allowed) exclude exactly as sets do
    arrays = [np.zeros(0, dtype=np.int64), np.array([full[1, 0], 3, full[1, 0], 99], dtype=np.int64),
              full[2, :5].astype(np.int64), np.array(full[3], dtype=np.int32)]
    assert dense.search(q, 3, arrays) == (ids, scores)
