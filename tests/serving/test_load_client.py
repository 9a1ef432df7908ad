"""The load benchmark's raw keep-alive HTTP/1.1 client against a real `mosaicrec serve`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_raw_client_counts_every_answer(toy_run: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import serve_load as sl
    finally:
        sys.path.remove(str(BENCH))
    bodies = sl.histories(toy_run, 10, 3)
    bodies.append({"history": ["no-such-item"], "k": 3})  # answered 422: read by its Content-Length too
    srv = sl.Server(toy_run, ["--threads", "1"], "test")
    try:
        raw = asyncio.run(sl.load(srv.url, bodies, concurrency=4, n_requests=44, time_limit=60, client_kind="raw"))
    finally:
        srv.stop()
    assert raw["issued"] == 44
    assert raw["status"] == {200: 40, 422: 4}, (raw["status"], raw["failures"])
    assert len(raw["latencies"]) == 40 and all(x > 0 for x in raw["latencies"])
    assert "no-such-item" in raw["failures"][0]
