"""The FastAPI application: ``/recommend`` (micro-batched), ``/items``, ``/health``, ``/info``, web page.

Build it with :func:`create_app` from a :class:`~mosaicrec.serving.service.Service`;
``mosaicrec serve RUN_DIR`` runs it with uvicorn. When an API key is set, every endpoint
except ``/health`` and the static page requires the header ``X-API-Key``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

from pydantic import ValidationError

from mosaicrec.serving.batcher import BatcherStopped, MicroBatcher
from mosaicrec.serving.schemas import AddItemsRequest, AddItemsResponse, RecommendRequest, RecommendResponse
from mosaicrec.serving.service import Answer, Query, RequestError, Service

try:
    import orjson as _orjson
except ImportError:  # optional (the `serve` extra): the json module gives the same answers, slower
    _orjson = None  # type: ignore[assignment]

API_KEY_HEADER = "X-API-Key"


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies above ``max_bytes`` (declared or streamed).

    The body is read here (at most ``max_bytes`` + one chunk) before the app sees it, so an
    oversized upload is refused without being parsed, whatever its content-length claims.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send)
            return
        chunks, size, more = [], 0, True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":  # client went away
                return
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            more = msg.get("more_body", False)
            if size > self.max_bytes:
                await self._reject(send)
                return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect when the client goes away

        await self.app(scope, replay, send)

    async def _reject(self, send: Any) -> None:
        body = json.dumps({"detail": f"request body larger than {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


_DIGITS = bytes(48 if 48 <= c <= 57 else 32 for c in range(256))  # digits -> "0", the rest -> " "


def _loads(body: bytes) -> Any:
    """``json.loads`` semantics, parsed by orjson when it can: orjson is strict RFC 8259, so
    whatever it rejects (malformed JSON, NaN literals, UTF-16 bodies, lone surrogates) is parsed
    again by ``json.loads``, which accepts it or raises its own error (the error bodies stay
    FastAPI's). Bodies with a run of 19+ digits go to json directly: orjson reads integers
    beyond 64 bits as floats, json as exact integers."""
    if _orjson is not None and b"0" * 19 not in body.translate(_DIGITS):  # two C passes, ~2 us
        try:
            return _orjson.loads(body)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(body)


def _dumps(payload: Any, status: int) -> bytes:
    """Compact UTF-8 JSON exactly as ``json.dumps(ensure_ascii=False, allow_nan=False)`` parses
    back. orjson writes the plain answers (status 200 without ``explain``: their scores were
    checked finite by ``answer``, since orjson would write NaN as null where json refuses it);
    errors and explanations, rare and free-form, go through json."""
    if _orjson is not None and status == 200 and payload.get("explain") is None:
        try:
            return bytes(_orjson.dumps(payload))
        except TypeError:  # orjson.JSONEncodeError: a type orjson does not know; json decides
            pass
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class RecommendFastPath:
    """ASGI: ``POST /recommend`` answered without FastAPI's routing and dependency machinery.

    Same checks, same answers and the same error bodies as the FastAPI route (which stays for
    the OpenAPI schema): API key (401), JSON and pydantic validation (422 in FastAPI's format),
    :class:`RequestError` (its status), shutdown (503). At hundreds of requests per second the
    framework's per-request Python work, not the model, limited the server (docs/serving.md);
    every other path goes to the FastAPI app. :class:`_App` calls it before FastAPI's own
    middleware stack (its per-request telemetry check and error middleware cost ~6% of the
    server's GIL time under load); it applies the same body cap as :class:`BodySizeLimit` while
    reading the body (one read, no replay).
    """

    def __init__(self, app: Any, answer: Callable[[RecommendRequest], Awaitable[dict[str, Any]]],
                 api_key: str | None, max_bytes: int) -> None:
        self.app, self.answer, self.api_key = app, answer, api_key
        self.limit = BodySizeLimit(None, max_bytes)  # the same cap and 413 as every other path

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/recommend" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        # the body cap first (as BodySizeLimit in front of FastAPI): declared, then streamed size
        max_bytes = self.limit.max_bytes
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > max_bytes:
            await self.limit._reject(send)
            return
        chunks, size, more = [], 0, True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":  # client went away: nothing to answer
                return
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            more = msg.get("more_body", False)
            if size > max_bytes:
                await self.limit._reject(send)
                return
        status, payload = await self._handle(scope, b"".join(chunks))
        body = _dumps(payload, status)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: dict[str, Any], raw: bytes) -> tuple[int, Any]:
        if self.api_key is not None:
            key = next((v for k, v in scope["headers"] if k == b"x-api-key"), b"").decode("latin-1")
            if not (key and secrets.compare_digest(key, self.api_key)):
                return 401, {"detail": f"missing or wrong {API_KEY_HEADER} header"}
        try:
            data = _loads(raw)
        except ValueError as e:  # FastAPI's body for malformed JSON
            return 422, {"detail": [{"type": "json_invalid", "loc": ["body", getattr(e, "pos", 0)],
                                     "msg": "JSON decode error", "input": {}, "ctx": {"error": getattr(e, "msg", str(e))}}]}
        if not isinstance(data, dict):  # FastAPI's body for a JSON value that is not an object
            return 422, {"detail": [{"type": "model_attributes_type", "loc": ["body"], "input": data,
                                     "msg": "Input should be a valid dictionary or object to extract fields from"}]}
        try:
            req = RecommendRequest.model_validate(data)
        except ValidationError as e:
            return 422, {"detail": [{**err, "loc": ["body", *err["loc"]]}
                                    for err in json.loads(e.json(include_url=False))]}
        try:
            return 200, await self.answer(req)
        except RequestError as e:
            return e.status, {"detail": str(e), **e.extra}
        except BatcherStopped as e:
            return 503, {"detail": str(e)}


def _app_class() -> Any:
    """FastAPI with ``POST /recommend`` answered by a :class:`RecommendFastPath` set in ``fast``
    before FastAPI's middleware stack (lifespan, other paths and methods: FastAPI)."""
    from fastapi import FastAPI

    class _App(FastAPI):
        fast: Any = None

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if (self.fast is not None and scope["type"] == "http" and scope["path"] == "/recommend"
                    and scope["method"] == "POST"):
                await self.fast(scope, receive, send)
            else:
                await super().__call__(scope, receive, send)

    return _App


def create_app(service: Service, api_key: str | None = None) -> Any:
    from fastapi import Depends, Header, HTTPException
    from fastapi import Query as Q
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    from mosaicrec import __version__

    cfg = service.cfg
    batcher: MicroBatcher[Query, Answer] = MicroBatcher(
        service.answer, max_batch=cfg.max_batch if cfg.batching else 1,
        max_wait_ms=cfg.max_wait_ms if cfg.batching else 0.0,
        policy=cfg.batch_policy)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await batcher.start()
        previous = sys.getswitchinterval()
        if cfg.switch_interval_ms:  # how long a thread waiting for the GIL (the worker after a torch op) waits
            sys.setswitchinterval(cfg.switch_interval_ms / 1000)
        if cfg.gc_freeze:  # a full collection would otherwise walk every long-lived object under load
            gc.collect()
            gc.freeze()
        yield
        await batcher.stop()
        sys.setswitchinterval(previous)

    app = _app_class()(title="mosaicrec", version=__version__, lifespan=lifespan,
                  description="Sequential recommendation service (see docs/serving.md).")
    app.state.service, app.state.batcher = service, batcher

    async def answer(req: RecommendRequest) -> dict[str, Any]:
        query = service.resolve(req)
        ans = await batcher.submit(query)
        if not all(map(math.isfinite, ans.scores)):  # as json.dumps(allow_nan=False): never NaN as null
            raise ValueError(f"non-finite scores {ans.scores} from the model")
        return {"items": [service.present(i, s) for i, s in zip(ans.ids, ans.scores, strict=True)],
                "domain": req.domain, "history_used": len(query.items), "truncated": query.truncated,
                "warnings": query.warnings, "explain": ans.explain}

    if cfg.fast_path:  # before FastAPI's stack, with its own body cap
        app.fast = RecommendFastPath(None, answer=answer, api_key=api_key, max_bytes=cfg.max_body_bytes)
    app.add_middleware(BodySizeLimit, max_bytes=cfg.max_body_bytes)

    async def require_key(x_api_key: str | None = Header(None)) -> None:  # async: no thread hop
        if api_key is not None and not (x_api_key and secrets.compare_digest(x_api_key, api_key)):
            raise HTTPException(401, f"missing or wrong {API_KEY_HEADER} header")

    guarded = [Depends(require_key)]

    @app.exception_handler(BatcherStopped)
    async def _stopped(request: Any, exc: BatcherStopped) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(RequestError)
    async def _request_error(request: Any, exc: RequestError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), **exc.extra}, status_code=exc.status)

    static = resources.files("mosaicrec.serving") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text())

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "n_items": service.n_items}

    @app.get("/info", dependencies=guarded)
    async def info() -> dict[str, Any]:
        return {**service.info(), "batch_stats": batcher.stats.as_dict()}

    @app.post("/recommend", response_model=RecommendResponse, dependencies=guarded)
    async def recommend(req: RecommendRequest) -> JSONResponse:  # served by RecommendFastPath unless disabled
        return JSONResponse(await answer(req))

    @app.post("/items", response_model=AddItemsResponse, dependencies=guarded)
    async def add(req: AddItemsRequest) -> JSONResponse:
        from mosaicrec.serving.content import add_items

        return JSONResponse(await asyncio.to_thread(add_items, service, req))

    @app.get("/items/search", dependencies=guarded)
    async def search(q: str = Q(..., min_length=1, max_length=200), limit: int = Q(20, ge=1, le=200),
                     domain: str | None = None) -> dict[str, Any]:
        return {"items": [service.present(i, 0.0) for i in service.search_titles(q, limit, domain)]}

    @app.get("/images/{idx}", include_in_schema=False)  # <img> cannot send the key; catalogue files only
    async def image(idx: int) -> FileResponse:
        path = service.image_path(idx)
        if path is None or not path.is_file():
            raise HTTPException(404, f"no local image for item {idx}")
        return FileResponse(path)

    return app
