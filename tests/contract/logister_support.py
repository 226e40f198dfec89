"""Helpers shared by the Logister contract tests (not a test module itself)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.bus.topics import RAW_LOGISTER
from forgeline.ids import legacy_id
from forgeline.schemas import logister
from services.normalizer.logister import normalize_logister
from services.writer.steps import typed_row
from tests.conftest import GatewayHarness

INGEST = "/api/v1/ingest_events"
CHECK_INS = "/api/v1/check_ins"

JSON = {"Content-Type": "application/json"}

UUID_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def post(
    gw: GatewayHarness,
    path: str,
    body: Any = None,
    *,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    auth: bool = True,
) -> httpx.Response:
    """POST JSON (``body``) or raw bytes (``content``), with the Logister token unless ``auth=False``."""
    sent: dict[str, str] = {**JSON}
    if auth:
        sent.update(gw.auth)
    sent.update(headers or {})
    data = orjson.dumps(body) if content is None else content
    return gw.client.post(path, content=data, headers=sent)


def raw_count(gw: GatewayHarness) -> int:
    return len(gw.raw())


def assert_refused(
    gw: GatewayHarness, send: Callable[[], httpx.Response], status: int, body: Any = None
) -> httpx.Response:
    """``send()`` is refused with ``status`` (and ``body`` when given) and enqueues nothing."""
    before = raw_count(gw)
    response = send()
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    parsed = response.json()
    assert isinstance(parsed, dict)
    if body is not None:
        assert parsed == body
    assert raw_count(gw) == before, "a refused request must not be enqueued"
    return response


def assert_accepted_event(response: httpx.Response, *, span: bool = False) -> uuid.UUID:
    assert response.status_code == 201, response.text
    body = response.json()
    event_id = uuid.UUID(body["id"])
    expected = {"id": str(event_id), "legacy_id": legacy_id(event_id), "status": "accepted"}
    if span:
        expected["type"] = "span"
    assert body == expected
    assert isinstance(body["legacy_id"], int)
    return event_id


def assert_accepted_check_in(response: httpx.Response) -> uuid.UUID:
    assert response.status_code == 201, response.text
    body = response.json()
    event_id = uuid.UUID(body["id"])
    assert body == {"id": str(event_id), "status": "accepted"}
    return event_id


def raw_record(gw: GatewayHarness, event_id: uuid.UUID | str) -> dict[str, Any]:
    matches = [r for r in gw.raw() if r["event_id"] == str(event_id)]
    assert len(matches) == 1, f"expected exactly one raw record for {event_id}, found {len(matches)}"
    return matches[0]


def ingest_context(event_id: uuid.UUID | None = None) -> logister.IngestContext:
    return logister.IngestContext(
        event_id=event_id or uuid.uuid4(),
        organisation_id="org",
        project_id="proj",
        default_environment="production",
        received_at=datetime(2026, 5, 22, 12, 0, tzinfo=UTC),
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def wait_for_status(
    gw: GatewayHarness, send: Callable[[], httpx.Response], status: int, within_s: float = 5.0
) -> float:
    """Poll ``send()`` until it answers ``status``; returns how long it took. Fails after ``within_s``."""
    started = time.monotonic()
    while True:
        response = send()
        elapsed = time.monotonic() - started
        if response.status_code == status:
            return elapsed
        assert elapsed < within_s, f"still {response.status_code} after {elapsed:.1f}s (wanted {status})"
        time.sleep(0.05)


def process_downstream(raw: dict[str, Any]) -> OutgoingRecord:
    """Run an enqueued raw record through the normalizer and writer steps, as the pipeline would.

    Whatever the gateway accepted must come out as a typed row (SPEC 4.4: an accepted request
    is never lost); raises whatever those steps raise.
    """
    record = Record(RAW_LOGISTER, 0, 0, None, orjson.dumps(raw), int(time.time() * 1000))
    typed = normalize_logister(record)
    typed_row(Record(typed.topic, 0, 0, typed.key, typed.value, int(time.time() * 1000)))
    return typed
