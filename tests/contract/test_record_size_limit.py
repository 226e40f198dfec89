"""A request whose bus record would exceed what the bus takes is 413, and nothing is enqueued.

Kafka refuses a record above its request size on every retry; a body within the body limits
can still make a larger record when the gateway re-serializes it (``1e15`` is written back as
``1000000000000000.0``), so the gateway checks the record it is about to append.
"""

from __future__ import annotations

import gzip
import uuid

import orjson
import pytest

from forgeline.bus.port import RECORD_OVERHEAD_BYTES
from tests.conftest import GatewayHarness, read_all

pytestmark = pytest.mark.contract

BUS_LIMIT = 8 * 1024 * 1024 - RECORD_OVERHEAD_BYTES


def _numbers(count: int) -> orjson.Fragment:
    # Five bytes each as sent, sixteen once parsed and written back.
    return orjson.Fragment(b"[" + b",".join([b"1e15"] * count) + b"]")


def _post(gateway: GatewayHarness, path: str, doc: bytes, auth: dict[str, str]) -> tuple[int, dict[str, object]]:
    response = gateway.client.post(
        path,
        content=gzip.compress(doc, compresslevel=1),
        headers={**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    return response.status_code, response.json()


def test_a_logister_event_that_grows_past_the_bus_limit_is_413_and_not_enqueued(gateway: GatewayHarness) -> None:
    count = (gateway.settings.max_inflated_bytes - 400) // 5
    # camelCase keys: the full validator's path, which re-serializes the event it parsed.
    event = {"uuid": str(uuid.uuid4()), "eventType": "error", "message": "m", "context": {"a": _numbers(count)}}
    status, body = _post(gateway, "/api/v1/ingest_events", orjson.dumps({"event": event}), gateway.auth)
    assert status == 413, body
    assert body["code"] == "payload_too_large" and body["limit_bytes"] == BUS_LIMIT
    assert read_all(gateway.bus, "raw.logister") == []


def test_the_same_event_within_the_limit_is_accepted(gateway: GatewayHarness) -> None:
    event = {"uuid": str(uuid.uuid4()), "eventType": "error", "message": "m", "context": {"a": _numbers(1000)}}
    status, body = _post(gateway, "/api/v1/ingest_events", orjson.dumps({"event": event}), gateway.auth)
    assert status == 201, body
    assert len(read_all(gateway.bus, "raw.logister")) == 1


def test_a_forge_report_that_grows_past_the_bus_limit_is_413_and_not_enqueued(gateway: GatewayHarness) -> None:
    auth = {"Authorization": f"Bearer {gateway.tokens['forge_token']}"}
    session = gateway.client.post(
        "/v1/ingest/sessions", json={"build": {"version": "1.0.0", "platform": "linux"}}, headers=auth
    )
    assert session.status_code in (200, 201), session.text
    before = len(read_all(gateway.bus, "raw.forge"))
    count = (gateway.settings.max_inflated_bytes - 600) // 5
    report = {
        "sessionId": session.json()["sessionId"],
        "title": "t",
        "description": "d",
        "severity": "low",
        "reporterType": "player",
        "metadata": {"a": _numbers(count)},
    }
    status, body = _post(gateway, "/v1/ingest/reports", orjson.dumps(report), auth)
    assert status == 413, body
    assert len(read_all(gateway.bus, "raw.forge")) == before
