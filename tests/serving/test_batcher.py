"""Micro-batcher: concurrent submissions share calls, order is kept, errors reach every caller."""

from __future__ import annotations

import asyncio
import time

import pytest

from mosaicrec.serving.batcher import MicroBatcher


def run(coro):
    return asyncio.run(coro)


async def _submit_all(batcher: MicroBatcher, xs: list[int]) -> list[int]:
    await batcher.start()
    try:
        return await asyncio.gather(*(batcher.submit(x) for x in xs))
    finally:
        await batcher.stop()


def test_concurrent_requests_share_calls_and_keep_order():
    calls: list[list[int]] = []

    def fn(xs: list[int]) -> list[int]:
        calls.append(list(xs))
        time.sleep(0.01)  # a forward pass
        return [x * 2 for x in xs]

    batcher = MicroBatcher(fn, max_batch=16, max_wait_ms=5)
    out = run(_submit_all(batcher, list(range(100))))
    assert out == [x * 2 for x in range(100)]
    assert sorted(x for c in calls for x in c) == list(range(100))  # each exactly once
    assert max(len(c) for c in calls) == 16  # the cap is respected and reached
    assert len(calls) <= 100 // 16 + 2
    assert batcher.stats.requests == 100 and batcher.stats.batches == len(calls)


def test_max_batch_one_is_one_call_per_request():
    calls: list[int] = []
    batcher = MicroBatcher(lambda xs: (calls.append(len(xs)), xs)[1], max_batch=1, max_wait_ms=5)
    assert run(_submit_all(batcher, list(range(20)))) == list(range(20))
    assert calls == [1] * 20


def test_an_error_reaches_every_request_of_its_batch_and_the_worker_survives():
    def fn(xs: list[int]) -> list[int]:
        if 3 in xs:
            raise RuntimeError("boom")
        return xs

    async def scenario():
        batcher = MicroBatcher(fn, max_batch=8, max_wait_ms=20)
        await batcher.start()
        try:
            first = await asyncio.gather(*(batcher.submit(x) for x in range(4)), return_exceptions=True)
            second = await batcher.submit(7)  # the worker keeps running after a failed batch
        finally:
            await batcher.stop()
        return first, second

    first, second = run(scenario())
    assert all(isinstance(r, RuntimeError) and str(r) == "boom" for r in first)
    assert second == 7


def test_wrong_result_count_is_an_error_not_a_hang():
    batcher = MicroBatcher(lambda xs: xs[:-1], max_batch=4, max_wait_ms=1)
    with pytest.raises(RuntimeError, match="returned 0 results for 1"):
        run(_submit_all(batcher, [1]))


def test_stop_fails_queued_requests_instead_of_leaving_them_hanging():
    from mosaicrec.serving.batcher import BatcherStopped

    async def scenario():
        batcher = MicroBatcher(lambda xs: (time.sleep(0.2), xs)[1], max_batch=1, max_wait_ms=0)
        await batcher.start()
        tasks = [asyncio.ensure_future(batcher.submit(x)) for x in range(3)]
        await asyncio.sleep(0.05)  # the first is computing, two are queued
        await batcher.stop()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        with pytest.raises(BatcherStopped):
            await batcher.submit(9)
        return results

    results = run(scenario())
    assert all(isinstance(r, BatcherStopped) for r in results)


def _closed_loop(batcher: MicroBatcher, clients: int, rounds: int) -> list[float]:
    """``clients`` closed-loop clients, each sending its next request when answered; wall seconds per round."""

    async def client(c: int, times: list[float]) -> None:
        for r in range(rounds):
            t0 = time.perf_counter()
            assert await batcher.submit(c * 1000 + r) == c * 1000 + r
            times.append(time.perf_counter() - t0)

    async def scenario() -> list[float]:
        times: list[float] = []
        await batcher.start()
        try:
            await asyncio.gather(*(client(c, times) for c in range(clients)))
        finally:
            await batcher.stop()
        return times

    return run(scenario())


def test_fill_policy_waits_max_wait_for_a_batch_that_never_fills():
    # 4 clients, max_batch 64: each batch waits the whole max_wait (the policy before session 5)
    calls: list[int] = []
    batcher = MicroBatcher(lambda xs: (calls.append(len(xs)), xs)[1], max_batch=64, max_wait_ms=60, policy="fill")
    times = _closed_loop(batcher, clients=4, rounds=3)
    assert calls == [4, 4, 4]
    assert min(times) >= 0.05  # every request waited for the timer


def test_recent_policy_stops_waiting_once_the_recent_concurrency_is_queued():
    calls: list[int] = []
    batcher = MicroBatcher(lambda xs: (calls.append(len(xs)), xs)[1], max_batch=64, max_wait_ms=60, policy="recent")
    times = sorted(_closed_loop(batcher, clients=4, rounds=5))
    assert calls == [4] * 5  # batches stay whole
    assert times[-4:][0] >= 0.05  # the first wave waited for the timer (nothing seen yet) ...
    assert times[-5] < 0.03  # ... later waves did not: 4 in flight when the last batch ended, 4 queued


def test_pipeline_policy_caps_batches_at_half_the_recent_concurrency():
    calls: list[int] = []

    def fn(xs: list[int]) -> list[int]:
        calls.append(len(xs))
        time.sleep(0.005)
        return xs

    batcher = MicroBatcher(fn, max_batch=64, max_wait_ms=20, policy="pipeline")
    _closed_loop(batcher, clients=8, rounds=6)
    assert calls[0] == 8  # nothing seen yet: one batch of everything queued
    assert max(calls[1:]) == 4 and sum(calls) == 48  # then at most ceil(8 / 2), every request once
    assert batcher.stats.requests == 48


@pytest.mark.parametrize("policy", ["recent", "pipeline"])
def test_max_batch_caps_every_policy_and_bad_policy_is_refused(policy):
    calls: list[int] = []
    batcher = MicroBatcher(lambda xs: (calls.append(len(xs)), xs)[1], max_batch=3, max_wait_ms=5, policy=policy)
    _closed_loop(batcher, clients=8, rounds=2)
    assert max(calls) == 3 and sum(calls) == 16
    with pytest.raises(ValueError, match="policy must be one of"):
        MicroBatcher(lambda xs: xs, policy="greedy")
