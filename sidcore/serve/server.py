"""``sid serve``: the `Recommender` behind an HTTP JSON API (FastAPI on uvicorn), with dynamic batching.

Requests are parsed and checked on the event loop (422 naming the field, 413 over a limit, 401
without the bearer token) and their users queued; one batching task takes the first queued user,
gathers more for at most ``max_wait_s`` (up to ``max_batch``), and runs them as one padded decoder
call on the single decode thread while the next batch gathers. The queue is bounded in users: a
request that does not fit gets 503 + ``Retry-After``. Before ``/readyz`` answers 200 every
(batch size, prefill bucket) a request can use is compiled, so serving never compiles; ``/metrics``
exports the compile and trace counts next to requests, latency, batch sizes and queue depth.
SIGTERM: uvicorn stops accepting, in-flight requests finish, then the process exits 0.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from sidcore.errors import SidError, UsageError
from sidcore.serve.engine import compile_counts, install_compile_counter
from sidcore.serve.inputs import HISTORY_FIELDS, BadInput, Query, TooLarge

log = logging.getLogger(__name__)

_USER_SCHEMA = {
    "type": "object",
    "properties": {"user_id": {"type": ["string", "integer"]},
                   **{f: {"type": "array", "items": {"type": ["string", "integer"] if f == "history_item_id"
                                                     else "string"}} for f in HISTORY_FIELDS},
                   "top_k": {"type": "integer", "minimum": 1}, "exclude_history": {"type": "boolean"}},
    "description": "One user: user_id (optional) and exactly one history field, oldest item first.",
}
_REQUEST_SCHEMA = {"oneOf": [_USER_SCHEMA, {"type": "object", "properties": {
    "users": {"type": "array", "items": _USER_SCHEMA}}, "required": ["users"]}]}


@attrs.frozen(kw_only=True)
class Limits:
    max_batch: int = 32
    max_wait_s: float = 0.005
    max_queue: int = 1024
    max_users: int = 64
    max_history: int = 200
    max_body_bytes: int = 1 << 20


class Overloaded(Exception):
    """The queue has no room for the request's users (503)."""


def check_bind(host: str, *, token: str | None, no_token: bool) -> None:
    """A non-loopback address needs a bearer token (or the explicit ``--no-token``)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and token is None and not no_token:
        raise UsageError(f"--host {host} is reachable from other machines: pass --token-file (or --no-token to "
                         "serve without authentication)")


class Batcher:
    """Gathers queued users into decoder calls (one at a time, on one thread)."""

    def __init__(self, recommender: Any, limits: Limits, metrics: dict[str, Any]) -> None:
        self.rec, self.limits, self.metrics = recommender, limits, metrics
        self.queue: asyncio.Queue[tuple[Query, asyncio.Future[Any]]] = asyncio.Queue()
        self.depth = 0
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="sid-decode")
        self.ready = False
        self.shapes: list[tuple[int, int]] = []

    async def submit(self, queries: list[Query]) -> list[dict[str, Any]]:
        if self.depth + len(queries) > self.limits.max_queue:
            raise Overloaded
        loop = asyncio.get_running_loop()
        futures = []
        for q in queries:
            fut: asyncio.Future[Any] = loop.create_future()
            self.queue.put_nowait((q, fut))
            futures.append(fut)
        self.depth += len(queries)
        self.metrics["queue"].set(self.depth)
        return list(await asyncio.gather(*futures))

    async def warmup(self) -> None:
        """Compile every shape a request within the limits can use, then mark ready."""
        rec = self.rec
        longest = max(rec.catalog.sids, key=len)
        probe = Query(user_id=None, history_sids=(longest,) * self.limits.max_history, history_rows=())
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        try:
            ids = await loop.run_in_executor(self.pool, rec.prompt_ids, [probe])
            self.shapes = await loop.run_in_executor(self.pool, rec.warmup, len(ids[0]))
        except Exception:
            log.exception("compiling the serving shapes failed; /readyz stays 503")
            raise
        self.ready = True
        self.metrics["ready"].set(1)
        log.info("ready: compiled %d shapes (batch x prefill: %s) in %.1fs", len(self.shapes),
                 ", ".join(f"{b}x{p}" for b, p in self.shapes), time.perf_counter() - t0)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        lim = self.limits
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + lim.max_wait_s
            while len(batch) < lim.max_batch:
                if not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            self.depth -= len(batch)
            self.metrics["queue"].set(self.depth)
            live = [(q, f) for q, f in batch if not f.done()]  # a client that went away is not decoded
            if not live:
                continue
            self.metrics["batch"].observe(len(live))
            try:
                results = await loop.run_in_executor(self.pool, self.rec.recommend, [q for q, _ in live])
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
                log.exception("decoder call failed")
                results = [exc] * len(live)
            self.metrics["calls"].inc()
            for (_, fut), res in zip(live, results):
                if not fut.done():
                    fut.set_exception(res) if isinstance(res, Exception) else fut.set_result(res)


def _metrics() -> tuple[Any, dict[str, Any]]:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    reg = CollectorRegistry()
    m = {
        "requests": Counter("sid_requests", "HTTP requests to /v1/recommend by status code.", ["code"], registry=reg),
        "latency": Histogram("sid_request_seconds", "Latency of answered /v1/recommend requests.", registry=reg,
                             buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)),
        "batch": Histogram("sid_batch_users", "Users per decoder call.", registry=reg,
                           buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512)),
        "queue": Gauge("sid_queue_users", "Users waiting for a decoder call.", registry=reg),
        "calls": Counter("sid_decoder_calls", "Batched decoder calls.", registry=reg),
        "ready": Gauge("sid_ready", "1 once every serving shape is compiled.", registry=reg),
    }
    Gauge("sid_xla_compiles", "XLA compiles in this process (none after ready).", registry=reg) \
        .set_function(lambda: compile_counts()["compiles"])
    Gauge("sid_jit_traces", "jit traces in this process (none after ready).", registry=reg) \
        .set_function(lambda: compile_counts()["traces"])
    return reg, m


def make_app(recommender: Any, limits: Limits, *, token: str | None = None) -> Any:
    """The FastAPI app; its lifespan compiles the serving shapes and runs the batcher."""
    import contextlib

    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    reg, metrics = _metrics()
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> Any:
        batcher = state["batcher"] = Batcher(recommender, limits, metrics)
        tasks = [asyncio.create_task(batcher.warmup()), asyncio.create_task(batcher.run())]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            batcher.pool.shutdown(wait=True)

    app = FastAPI(title="sid recommendations", version="1", lifespan=lifespan,
                  description="Trie-constrained beam search over a trained sid model (docs/serving.md).")

    def error(code: int, message: str, field: str | None = None, **headers: str) -> Any:
        metrics["requests"].labels(str(code)).inc()
        return JSONResponse({"error": message, "field": field}, status_code=code, headers=headers or None)

    def denied(request: Request) -> Any:
        if token is None:
            return None
        sent = request.headers.get("authorization", "")
        if hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return None
        return error(401, "missing or wrong bearer token", None, **{"WWW-Authenticate": "Bearer"})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up (no token needed)."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> Any:
        """200 once the weights are loaded and every serving shape is compiled, else 503."""
        if (resp := denied(request)) is not None:
            return resp
        b = state.get("batcher")
        body = {"ready": bool(b and b.ready), "shapes": b.shapes if b else [], **compile_counts()}
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics")
    async def prometheus(request: Request) -> Any:
        """Prometheus text format."""
        if (resp := denied(request)) is not None:
            return resp
        return PlainTextResponse(generate_latest(reg), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/recommend", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": _REQUEST_SCHEMA}}}})
    async def recommend(request: Request) -> Any:
        """One user object -> one answer ``{"user_id", "items"}``; ``{"users": [...]}`` -> ``{"results": [...]}``."""
        t0 = time.perf_counter()
        if (resp := denied(request)) is not None:
            return resp
        batcher = state["batcher"]
        if not batcher.ready:
            return error(503, "not ready: compiling the serving shapes", None, **{"Retry-After": "5"})
        try:
            body = await _read_body(request, limits.max_body_bytes)
            single, queries = _parse(recommender, body, limits)
        except TooLarge as exc:
            return error(413, str(exc), exc.field)
        except BadInput as exc:
            return error(422, str(exc), exc.field)
        try:
            results = await batcher.submit(queries)
        except Overloaded:
            return error(503, f"overloaded: more than {limits.max_queue} users queued", None, **{"Retry-After": "1"})
        except SidError as exc:
            return error(500, str(exc))
        metrics["requests"].labels("200").inc()
        metrics["latency"].observe(time.perf_counter() - t0)
        return results[0] if single else {"results": results}

    return app


async def _read_body(request: Any, limit: int) -> bytes:
    size = request.headers.get("content-length")
    if size and size.isdigit() and int(size) > limit:
        raise TooLarge("body", f"too large: {size} bytes, the limit is {limit}")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise TooLarge("body", f"too large: over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(recommender: Any, body: bytes, limits: Limits) -> tuple[bool, list[Query]]:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput("body", f"malformed JSON: {getattr(exc, 'msg', exc)}") from None
    if not isinstance(data, dict):
        raise BadInput("body", f'expected a user object or {{"users": [...]}}, got {type(data).__name__}')
    single = "users" not in data
    if single:
        users, prefix = [data], ""
    else:
        extra = sorted(set(data) - {"users"})
        if extra:
            raise BadInput(extra[0], "unknown key next to users")
        users, prefix = data["users"], "users"
        if not isinstance(users, list) or not users:
            raise BadInput("users", "expected a non-empty list of user objects")
        if len(users) > limits.max_users:
            raise TooLarge("users", f"too many: {len(users)} users, the limit is {limits.max_users}")
    return single, [recommender.parse(u, options=True, max_history=limits.max_history,
                                      prefix=f"{prefix}[{i}]." if prefix else "") for i, u in enumerate(users)]


def run_server(recommender: Any, limits: Limits, *, host: str, port: int, token: str | None) -> None:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests and return (exit code 0)."""
    import uvicorn

    install_compile_counter()
    app = make_app(recommender, limits, token=token)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    # uvicorn drains on SIGTERM/SIGINT and then re-raises the signal to the previous handler; this one
    # takes it, so a drained server exits 0 instead of dying by the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    log.info("serving on http://%s:%d (POST /v1/recommend; /readyz turns 200 after compiling)", host, port)
    server.run()
    log.info("stopped: in-flight requests drained")
