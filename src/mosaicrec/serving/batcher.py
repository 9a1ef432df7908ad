"""Micro-batching: concurrent requests share one model forward pass.

Request handlers ``await batcher.submit(x)``; one worker task takes everything queued (up to
``max_batch``), waits at most ``max_wait_ms`` for more when the batch is not full, and runs
``fn(list_of_x) -> list_of_results`` once in a worker thread, so the event loop keeps accepting
requests while the model runs. While a batch is being computed the next one accumulates, so
under load batches fill up without any waiting. ``max_batch=1`` gives one forward per request
(the unbatched baseline of the load benchmark).

When a batch counts as full (``policy``): ``"fill"``: ``max_batch`` requests (with fewer clients
than that every batch waits the whole ``max_wait_ms``); ``"recent"``: as many requests as were in
flight recently (the largest batch-plus-queue size at the end of the last 8 batches), at most
``max_batch``, so a batch starts as soon as everyone it expects has arrived; ``"pipeline"``: at
most half that recent concurrency (rounded up), so that two half-batches alternate. The first
batch, with nothing seen yet, is formed as by ``"fill"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    max_batch_seen: int = 0
    busy_seconds: float = 0.0
    sizes: dict[int, int] = field(default_factory=dict)

    def record(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.requests += size
        self.max_batch_seen = max(self.max_batch_seen, size)
        self.busy_seconds += seconds
        self.sizes[size] = self.sizes.get(size, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        mean = self.requests / self.batches if self.batches else 0.0
        return {"batches": self.batches, "requests": self.requests, "mean_batch": round(mean, 2),
                "max_batch": self.max_batch_seen, "busy_seconds": round(self.busy_seconds, 3)}


POLICIES = ("fill", "recent", "pipeline")


class BatcherStopped(RuntimeError):
    """The batcher stopped before answering (server shutdown)."""


class MicroBatcher(Generic[T, R]):
    def __init__(self, fn: Callable[[list[T]], list[R]], max_batch: int = 64, max_wait_ms: float = 2.0,
                 policy: str = "fill") -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.policy = policy
        self._recent: deque[int] = deque(maxlen=8)  # requests in flight when each recent batch ended
        self._want = max_batch
        self.stats = BatchStats()
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop  # set by start()
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        if self._task is not None:
            return
        self._queue = asyncio.Queue()
        self._full = asyncio.Event()
        self._loop = asyncio.get_running_loop()  # kept: get_running_loop() costs a getpid() call each time
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mosaicrec-batch")
        self._task = asyncio.get_running_loop().create_task(self._worker())

    async def stop(self) -> None:
        """Stop the worker; requests still queued fail with :class:`BatcherStopped` (none hang)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._queue is not None and not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(BatcherStopped("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def submit(self, item: T) -> R:
        if self._queue is None or self._task is None:
            raise BatcherStopped("the batcher is not running")
        fut: asyncio.Future[R] = self._loop.create_future()
        self._queue.put_nowait((item, fut))  # unbounded: never waits (no coroutine per request)
        if self._queue.qsize() >= self._want - 1:
            self._full.set()
        return await fut

    async def _collect(self) -> list[tuple[T, asyncio.Future[R]]]:
        """The next batch: everything queued, after waiting up to ``max_wait`` for it to fill.

        The wait is one timer plus an event that :meth:`submit` sets when the batch is full (no
        polling, no ``wait_for(queue.get())`` whose timeout could race a completed get).
        """
        assert self._queue is not None
        batch = [await self._queue.get()]
        cap = want = self.max_batch
        if self.policy != "fill" and self._recent:
            seen = max(self._recent)  # recent concurrency: in flight when a batch ended
            want = min(self.max_batch, seen)
            if self.policy == "pipeline":
                cap = want = max(1, min(self.max_batch, math.ceil(seen / 2)))
        self._want = want
        if self.max_wait > 0 and self._queue.qsize() < want - 1:
            self._full.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.max_wait)
        while len(batch) < cap and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        assert queue is not None
        while True:
            batch = await self._collect()
            live = [(x, f) for x, f in batch if not f.cancelled()]  # clients that went away
            if not live:
                continue
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.fn, [x for x, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(live)} inputs")
            except asyncio.CancelledError:  # stop() while computing: no request is left hanging
                for _, f in live:
                    if not f.done():
                        f.set_exception(BatcherStopped("the server is shutting down"))
                raise
            except Exception as e:  # delivered to every waiting request of this batch
                for _, f in live:
                    if not f.done():
                        f.set_exception(e)
                continue
            finally:
                self.stats.record(len(live), time.perf_counter() - t0)
                self._recent.append(len(live) + queue.qsize())  # in flight when this batch ended
            for (_, f), r in zip(live, results, strict=True):
                if not f.done():
                    f.set_result(r)
