"""Main-thread CPU per request of the gateway app vs the bare Starlette app, in process.

    .venv/bin/python scripts/gateway_cpu.py {single|batch|forge|msgpack} [requests] [--no-publish] [--starlette-only]

No sockets and no uvicorn: ASGI calls from 32 concurrent tasks, so the figure is the app's
own cost (handler, middleware, validation, bus append) and is far less noisy on a shared
machine than `forgeline bench`. `--no-publish` replaces the bus append with nothing, which
isolates what publishing costs. `--starlette-only` turns the ingest POSTs' own path off
(services/gateway/fastpath.py): every request then goes through Starlette's middleware and
router, which measures what that path saves in the same run. Run it under
`py-spy record -f raw` to see where it goes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from services.bench import payloads
from services.bench.fixtures import bootstrap_tokens
from services.bench.servers import bare_app

CONCURRENCY = 32


def _scope(path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }


async def _drive(
    app: Any, path: str, body: bytes, headers: dict[str, str], requests: int
) -> tuple[float, dict[int, int]]:
    """Main-thread CPU µs per request, and the statuses seen."""
    statuses: dict[int, int] = {}
    scope = _scope(path, {**headers, "content-length": str(len(body))})

    async def one() -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # no disconnect while the app runs
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await app(dict(scope), receive, send)

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    per_task = max(1, requests // CONCURRENCY)
    started = time.thread_time()
    await asyncio.gather(*(worker(per_task) for _ in range(CONCURRENCY)))
    return (time.thread_time() - started) / (per_task * CONCURRENCY) * 1e6, statuses


async def main(which: str, requests: int, publish: bool, fast_path: bool) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="forgeline-cpu-"))
    os.environ.update(
        {
            "FORGELINE_DATA_DIR": str(data_dir),
            "FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "1000000000",
            "FORGELINE_FORGE_RATE_LIMIT_REQUESTS": "1000000000",
            "FORGELINE_MSGPACK_RATE_LIMIT_REQUESTS": "1000000000",
        }
    )
    tokens = await asyncio.to_thread(bootstrap_tokens, data_dir)
    from forgeline.bus.factory import create_bus
    from forgeline.config import Settings
    from services.gateway import app as gateway_app
    from services.gateway.app import create_app
    from services.gateway.publish import Publisher

    if not fast_path:
        gateway_app.ingest_endpoints = lambda routes: {}  # every request through Starlette's stack

    if not publish:

        async def nothing(self: Publisher, records: object) -> None:
            return None

        Publisher.publish = nothing  # type: ignore[method-assign]
    settings = Settings.from_env(os.environ)
    app = create_app(settings, create_bus(settings.resolved_bus_url, settings.partitions))
    logister = {"Authorization": f"Bearer {tokens['logister_token']}"}
    cases = {
        "single": ("/api/v1/ingest_events", payloads.event_body(), {**logister, "Content-Type": "application/json"}, 1),
        "batch": (
            "/api/v1/ingest_events/batch",
            payloads.batch_body(100),
            {**logister, "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
            100,
        ),
        "forge": (
            "/v1/ingest/events",
            payloads.forge_batch_body(200, tokens["project_id"]),
            {"Authorization": f"Bearer {tokens['forge_token']}", "Content-Type": "application/json"},
            200,
        ),
        "msgpack": (
            "/api/events",
            payloads.msgpack_batch(tokens["msgpack_app_id"], 500),
            {"Content-Type": "application/msgpack", "x-public-token": tokens["msgpack_public_token"]},
            500,
        ),
    }
    path, body, headers, events = cases[which]
    async with app.router.lifespan_context(app):
        await _drive(app, path, body, headers, requests // 10)  # warm up: topics, caches
        ours = [await _drive(app, path, body, headers, requests) for _ in range(3)]
    bare, _ = await _drive(bare_app(), path, body, headers, requests)
    best = min(cpu for cpu, _ in ours)
    path_name = "ingest path" if fast_path else "starlette only"
    per_event = f"{best / events:.1f} µs/event"
    print(f"{which} ({path_name}): gateway {best:.0f} µs/request (best of 3; {per_event}), statuses {ours[-1][1]}")
    print(f"{which}: bare app {bare:.0f} µs/request → ratio {bare / best:.2f}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(
        main(
            args[0],
            int(args[1]) if len(args) > 1 else 5000,
            publish="--no-publish" not in sys.argv,
            fast_path="--starlette-only" not in sys.argv,
        )
    )
