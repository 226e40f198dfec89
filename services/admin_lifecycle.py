"""The admin port's lifecycle endpoints: ``POST /retention`` and ``POST /erase``.

They run in the process that owns the warehouse (chDB: one process per data directory),
behind the same key as ``/query``; unlike ``/query`` they write, so they are separate
endpoints with fixed operations rather than a loosened SQL guard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from forgeline.lifecycle.erasure import StoreUnreachable, Subject
from forgeline.lifecycle.retention import check_kinds
from forgeline.lifecycle.service import Lifecycle
from forgeline.warehouse.port import WarehouseError

MAX_BODY_BYTES = 64 * 1024


def _json(doc: object, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


async def _body(request: Request) -> dict[str, object]:
    """The JSON object sent; ValueError says why it is not one."""
    body = b""
    async for chunk in request.stream():  # never buffer more than the limit
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ValueError(f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise ValueError(f"not JSON: {err}") from err
    if not isinstance(doc, dict):
        raise ValueError("send a JSON object")
    return doc


def lifecycle_routes(lifecycle: Lifecycle | None, refused: Callable[[Request], Response | None]) -> list[Route]:
    async def run(request: Request, job: Callable[[dict[str, object]], object]) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        if lifecycle is None:
            return _json({"error": "this process has no warehouse"}, 404)
        try:
            doc = await _body(request)
            result = await asyncio.to_thread(job, doc)
        except ValueError as err:
            return _json({"error": str(err)}, 400)
        except WarehouseError as err:
            return _json({"error": str(err)}, 503 if err.retriable else 400)
        except StoreUnreachable as err:
            return _json({"error": str(err)}, 503)
        return _json(result)

    def set_retention(doc: dict[str, object]) -> object:
        assert lifecycle is not None
        project, days = doc.get("project_id"), doc.get("days", {})
        if not isinstance(project, str) or not project.strip():
            raise ValueError("project_id is required")
        if not isinstance(days, dict):
            raise ValueError('days must be an object: {"errors": 30, …}')
        return lifecycle.retention(project, check_kinds(days))

    def erase(doc: dict[str, object]) -> object:
        assert lifecycle is not None
        return lifecycle.erase(Subject.parse(doc))

    async def retention_endpoint(request: Request) -> Response:
        return await run(request, set_retention)

    async def erase_endpoint(request: Request) -> Response:
        return await run(request, erase)

    return [
        Route("/retention", retention_endpoint, methods=["POST"]),
        Route("/erase", erase_endpoint, methods=["POST"]),
    ]
