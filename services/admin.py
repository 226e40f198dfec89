"""The admin HTTP endpoint of a processors process: health, readiness, metrics, SQL.

``POST /query`` runs one read-only statement through the process that owns the
warehouse (chDB allows one process per data directory), so ``forgeline sql`` works
while ``forgeline up`` is running. It listens on 127.0.0.1 by default.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Generator

import orjson
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from forgeline.warehouse.port import Warehouse, WarehouseError

MAX_SQL_BYTES = 64 * 1024


def _json(doc: object, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def admin_app(ready: Callable[[], dict[str, bool]], warehouse: Warehouse | None) -> Starlette:
    async def health(request: Request) -> Response:
        return _json({"status": "ok"})

    async def readiness(request: Request) -> Response:
        checks = ready()
        ok = all(checks.values())
        return _json({"ready": ok, "checks": checks}, 200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def query(request: Request) -> Response:
        if warehouse is None:
            return _json({"error": "this process has no warehouse"}, 404)
        body = await request.body()
        if len(body) > MAX_SQL_BYTES:
            return _json({"error": f"query larger than {MAX_SQL_BYTES} bytes"}, 413)
        try:
            doc = orjson.loads(body)
            sql, fmt = str(doc["sql"]), str(doc.get("format") or "PrettyCompact")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return _json({"error": 'send {"sql": "...", "format": "PrettyCompact"}'}, 400)
        try:
            out = await asyncio.to_thread(warehouse.query_formatted, sql, fmt)
        except WarehouseError as err:
            return _json({"error": str(err)}, 400)
        return Response(out, media_type="text/plain; charset=utf-8")

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", readiness, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/query", query, methods=["POST"]),
        ]
    )


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone: the processors host handles them
    (draining the processors first) and then stops this server itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def admin_server(app: Starlette, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
    return _EmbeddedServer(config)
