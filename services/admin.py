"""The admin HTTP endpoint of a processors process: health, readiness, metrics, SQL.

``POST /query`` runs one read-only statement through the process that owns the
warehouse (chDB allows one process per data directory), so ``forgeline sql`` works
while ``forgeline up`` is running; ``forgeline.warehouse.guard`` decides what it runs.

The port listens on ``FORGELINE_ADMIN_HOST`` (127.0.0.1 by default, whatever the
gateway's host). With ``FORGELINE_ADMIN_KEY`` set, ``/query`` needs
``Authorization: Bearer <key>``; a non-loopback address without a key refuses to start.
``/retention`` and ``/erase`` (services/admin_lifecycle.py) need the same key.
``/health``, ``/ready`` and ``/metrics`` stay open: probes and Prometheus call them, and
they return no warehouse data.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Generator

import orjson
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from forgeline.lifecycle.service import Lifecycle
from forgeline.warehouse.guard import QueryRefused, QuerySyntaxError, is_binary_format
from forgeline.warehouse.port import Warehouse, WarehouseError
from services.admin_lifecycle import lifecycle_routes

MAX_SQL_BYTES = 64 * 1024
MIN_ADMIN_KEY_CHARS = 16
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a name may resolve to anything: not loopback


def admin_exposure_problem(host: str, key: str) -> str | None:
    """Why the admin port may not start on ``host`` with ``key`` (None: it may)."""
    if key and (len(key) < MIN_ADMIN_KEY_CHARS or not key.isascii() or not key.isprintable() or " " in key):
        return (
            f"FORGELINE_ADMIN_KEY must be at least {MIN_ADMIN_KEY_CHARS} printable ASCII characters without "
            "spaces (e.g. `openssl rand -hex 32`)"
        )
    if not key and not is_loopback(host):
        return (
            f"the admin port (SQL over the warehouse) would listen on {host or 'every interface'!r}: set "
            "FORGELINE_ADMIN_KEY to require a key there, or keep FORGELINE_ADMIN_HOST / --admin-host on 127.0.0.1"
        )
    return None


def connect_host(host: str) -> str:
    """Where a client on this machine reaches a server listening on ``host`` (URL form)."""
    if host.strip() in WILDCARD_HOSTS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _key_matches(header: str | None, key: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    # Digests of equal length: the comparison time tells nothing, not even the key's length.
    want = hashlib.sha256(key.encode()).digest()
    return hmac.compare_digest(hashlib.sha256(given.strip().encode("latin-1")).digest(), want)


def bind_params(sql: str, params: object) -> str:
    """``sql`` with its ``%(name)s`` placeholders replaced by quoted literals of ``params``
    (strings, numbers, booleans, null, lists of those); ValueError for anything else."""
    from clickhouse_connect.driver.binding import finalize_query

    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise ValueError("params must be an object")
    for value in params.values():
        items = value if isinstance(value, list) else [value]
        if not all(v is None or isinstance(v, str | int | float | bool) for v in items):
            raise ValueError("a parameter is a string, number, boolean, null or a list of those")
    try:
        return str(finalize_query(sql, params))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"parameters do not fit the query: {err}") from err


def query_error_code(err: WarehouseError) -> str:
    """``syntax_error`` (fix the text), ``refused`` (not run here), ``query_error`` (ClickHouse
    could not run it), or ``unavailable`` (retry)."""
    if err.retriable:
        return "unavailable"
    if isinstance(err, QuerySyntaxError):
        return "syntax_error"
    return "refused" if isinstance(err, QueryRefused) else "query_error"


def _json(doc: object, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def admin_app(
    ready: Callable[[], dict[str, bool]],
    warehouse: Warehouse | None,
    admin_key: str = "",
    lifecycle: Lifecycle | None = None,
) -> Starlette:
    async def health(request: Request) -> Response:
        return _json({"status": "ok"})

    async def readiness(request: Request) -> Response:
        checks = ready()
        ok = all(checks.values())
        return _json({"ready": ok, "checks": checks}, 200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def refused(request: Request) -> Response | None:
        if admin_key and not _key_matches(request.headers.get("authorization"), admin_key):
            return Response(
                orjson.dumps({"error": "this admin port needs its key: Authorization: Bearer <FORGELINE_ADMIN_KEY>"}),
                status_code=401,
                media_type="application/json",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    async def query(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        if warehouse is None:
            return _json({"error": "this process has no warehouse"}, 404)
        body = b""
        async for chunk in request.stream():  # never buffer more than the limit
            body += chunk
            if len(body) > MAX_SQL_BYTES:
                return _json({"error": f"query larger than {MAX_SQL_BYTES} bytes"}, 413)
        try:
            doc = orjson.loads(body)
            sql, fmt = str(doc["sql"]), str(doc.get("format") or "PrettyCompact")
            params = doc.get("params")
            if params is not None:
                # %(name)s placeholders, each value quoted by the ClickHouse client (the
                # console's queries); the bound text then goes through the same guard.
                sql = bind_params(sql, params)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return _json({"error": 'send {"sql": "...", "format": "PrettyCompact", "params": {...}}'}, 400)
        try:
            out = await asyncio.to_thread(warehouse.query_formatted, sql, fmt)
            media_type = "application/octet-stream" if is_binary_format(fmt) else "text/plain; charset=utf-8"
        except WarehouseError as err:
            # A refused or failing statement is the caller's to fix (400); an unreachable
            # warehouse is ours, and may be retried (503). ``code`` tells them apart.
            return _json({"error": str(err), "code": query_error_code(err)}, 503 if err.retriable else 400)
        return Response(out, media_type=media_type)

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", readiness, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/query", query, methods=["POST"]),
            *lifecycle_routes(lifecycle, refused),
        ]
    )


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone: the processors host handles them
    (draining the processors first) and then stops this server itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def admin_server(app: Starlette, host: str, port: int) -> uvicorn.Server:
    # proxy_headers=False: no X-Forwarded-For is believed here (no proxy fronts this port).
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="off", proxy_headers=False
    )
    return _EmbeddedServer(config)
