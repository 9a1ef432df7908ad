"""The per-request cost of each stage of `POST /recommend`, timed in one process on one thread.

The stages every request pays in both modes (micro-batched or one request per forward), in the
order the server runs them, each timed on its own over ``--bodies`` real request bodies (the
load benchmark's: real ML-1M users, their last 200 items, k=10), with fresh inputs each round
(the strings of a parsed body are new objects, as in the server, so their hashes are not cached):

- ``parse``: the fast path's JSON reading (``app._loads``: orjson, json for what orjson reads differently)
- ``validate``: ``RecommendRequest.model_validate`` of the parsed dict (and, for comparison only,
  ``validate_json``: pydantic-core parsing and validating the bytes in one step)
- ``resolve``: ``Service.resolve`` (raw ids -> item indexes, truncation, excluded items)
- ``batcher``: ``MicroBatcher.submit`` -> result with a batch function that does nothing, 32
  concurrent submitters (per request: the future, the queue, the worker's hand-off to its thread,
  per batch of 32) and, for ``--no-batching``, ``max_batch=1``
- ``answer_dict``: building the answer (finite check, ``Service.present`` of the k items, the dict)
- ``write``: ``app._dumps`` of that answer
- ``forward_b1`` / ``forward_b32``: ``Service.answer`` (batch tensors, forward passes, retrieval)
  for batches of 1 and 32 requests (not shared: what batching amortises)

What is not here is the HTTP work of uvicorn/httptools/uvloop (parsing the request, the ASGI
task, two socket writes per answer, reading): measure the server's event-loop CPU per request
with ``serve_probe.py`` and subtract the stages above.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/serve_stages.py --run-dir runs/serve-ml1m-sasrec
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_load as sl  # noqa: E402  (sibling script)


def per_request_us(fn: Callable[[Any], Any], make_inputs: Callable[[], list[Any]], rounds: int) -> float:
    """Best over ``rounds`` of the mean CPU time of ``fn(x)`` over fresh inputs, in microseconds."""
    best = math.inf
    for _ in range(rounds):
        xs = make_inputs()
        t0 = time.process_time()
        for x in xs:
            fn(x)
        best = min(best, (time.process_time() - t0) / len(xs))
    return 1e6 * best


def batcher_us(max_batch: int, n: int, concurrency: int = 32) -> float:
    """CPU per request of ``MicroBatcher`` round trips with a batch function that does nothing."""
    from mosaicrec.serving.batcher import MicroBatcher

    async def main() -> float:
        b: MicroBatcher[int, int] = MicroBatcher(lambda xs: xs, max_batch=max_batch,
                                                 max_wait_ms=2.0 if max_batch > 1 else 0.0, policy="recent")
        await b.start()
        left = n

        async def client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await b.submit(left)

        await asyncio.gather(*(client() for _ in range(concurrency)))  # warm-up
        left = n
        t0 = time.process_time()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        cpu = time.process_time() - t0
        await b.stop()
        return 1e6 * cpu / n

    return min(asyncio.run(main()) for _ in range(3))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=sl.REPO / "runs" / "serve-ml1m-sasrec")
    p.add_argument("--bodies", type=int, default=256)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    import torch
    from pydantic import TypeAdapter

    from mosaicrec.serving.app import _dumps, _loads
    from mosaicrec.serving.schemas import RecommendRequest
    from mosaicrec.serving.service import ServeConfig, Service

    torch.set_num_threads(1)
    raws = [json.dumps(b).encode() for b in sl.histories(args.run_dir, args.bodies, 200)]
    svc = Service.from_run(args.run_dir, ServeConfig(torch_threads=1))
    adapter = TypeAdapter(RecommendRequest)

    def parsed() -> list[Any]:
        return [_loads(r) for r in raws]

    def requests() -> list[RecommendRequest]:
        return [RecommendRequest.model_validate(d) for d in parsed()]

    queries = [svc.resolve(r) for r in requests()]
    answers = [a for i in range(0, len(queries) - 31, 32) for a in svc.answer(queries[i:i + 32])]

    def answer_dict(i: int) -> dict[str, Any]:
        a, q = answers[i], queries[i]
        if not all(map(math.isfinite, a.scores)):
            raise ValueError("non-finite")
        return {"items": [svc.present(j, s) for j, s in zip(a.ids, a.scores, strict=True)], "domain": None,
                "history_used": len(q.items), "truncated": q.truncated, "warnings": q.warnings, "explain": a.explain}

    payloads = [answer_dict(i) for i in range(len(answers))]
    r = args.rounds
    out: dict[str, float] = {
        "parse": per_request_us(_loads, lambda: raws, r),
        "validate": per_request_us(RecommendRequest.model_validate, parsed, r),
        "validate_json (not used)": per_request_us(adapter.validate_json, lambda: raws, r),
        "resolve": per_request_us(svc.resolve, requests, r),
        "batcher (32 clients, batches of up to 64)": batcher_us(64, 20 * 32),
        "batcher (max_batch 1)": batcher_us(1, 20 * 32),
        "answer_dict": per_request_us(answer_dict, lambda: list(range(len(answers))), r),
        "write": per_request_us(lambda x: _dumps(x, 200), lambda: payloads, r),
    }
    for b in (1, 32):
        groups = [queries[i:i + b] for i in range(0, min(len(queries), 128) - b + 1, b)]
        with torch.inference_mode():
            out[f"forward_b{b}"] = per_request_us(svc.answer, groups.copy, max(2, r // 2)) / b
    shared = sum(v for k, v in out.items() if k in ("parse", "validate", "resolve", "answer_dict", "write"))
    for k, v in out.items():
        print(f"{k:44s} {v:8.1f} us/request")
    print(f"{'sum of parse..write (without batcher)':44s} {shared:8.1f} us/request")
    if args.json:
        args.json.write_text(json.dumps({"us_per_request": {k: round(v, 2) for k, v in out.items()},
                                         "command": " ".join(["python", *sys.argv])}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
