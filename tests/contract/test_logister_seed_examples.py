"""Every JSON example of the Logister seeds, replayed as written.

Seeds: /work/shared/seeds/logister-http-api.txt ("long") and logister-http-api-short.txt
("short"). The bodies below are copied verbatim from the seed sections named above each
one; the expected answers are the seed's "Responses" table.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import orjson
import pytest

from forgeline.ids import legacy_id
from forgeline.schemas import logister
from tests.conftest import GatewayHarness
from tests.contract.logister_support import CHECK_INS, INGEST, ingest_context, post, raw_count, raw_record

pytestmark = pytest.mark.contract

# long seed, "Ingest events" (POST /api/v1/ingest_events)
LONG_INGEST_ERROR = """
{
  "event": {
    "event_type": "error",
    "level": "error",
    "message": "NoMethodError in CheckoutService",
    "fingerprint": "checkout-nomethoderror",
    "occurred_at": "2026-02-14T12:00:00Z",
    "context": {
      "environment": "production",
      "request_id": "abc123",
      "metadata": {
        "user_id": 42
      },
      "request": {
        "method": "POST",
        "url": "https://app.example.com/checkout",
        "route": "POST /checkout",
        "request_id": "abc123"
      }
    }
  }
}
"""

# long seed, "Spans" (root span)
LONG_SPAN_ROOT = """
{
  "event": {
    "event_type": "span",
    "name": "GET /checkout",
    "kind": "server",
    "trace_id": "trace-123",
    "span_id": "span-root",
    "duration_ms": 245.7,
    "started_at": "2026-05-22T12:00:00Z",
    "context": {
      "route": "GET /checkout",
      "request_id": "req-123",
      "service": "checkout-api"
    }
  }
}
"""

# long seed, "Spans" ("To add child timing, send another span with the same trace and a parent span ID")
LONG_SPAN_CHILD = """
{
  "event": {
    "event_type": "span",
    "name": "SELECT orders",
    "kind": "db",
    "trace_id": "trace-123",
    "span_id": "span-db",
    "parent_span_id": "span-root",
    "duration_ms": 40.2,
    "started_at": "2026-05-22T12:00:00Z"
  }
}
"""

# long seed, "Check-ins" (POST /api/v1/check_ins)
LONG_CHECK_IN = """
{
  "check_in": {
    "slug": "nightly-reconcile",
    "status": "ok",
    "expected_interval_seconds": 900,
    "environment": "production",
    "release": "2026.03.02"
  }
}
"""

# short seed, "Ingest events" (POST /api/v1/ingest_events; the seed's text has lost its indentation)
SHORT_INGEST_ERROR = """
{
"event": {
"event_type": "error",
"level": "error",
"message": "NoMethodError in CheckoutService",
"fingerprint": "checkout-nomethoderror",
"occurred_at": "2026-02-14T12:00:00Z",
"context": {
"environment": "production",
"request_id": "abc123",
"metadata": {
"user_id": 42
}
}
}
}
"""

# short seed, "Check-ins" (POST /api/v1/check_ins)
SHORT_CHECK_IN = """
{
"check_in": {
"slug": "nightly-reconcile",
"status": "ok",
"expected_interval_seconds": 900,
"environment": "production",
"release": "2026.03.02"
}
}
"""

EVENT_EXAMPLES = {
    "long-ingest-error": (LONG_INGEST_ERROR, "error"),
    "long-span-root": (LONG_SPAN_ROOT, "span"),
    "long-span-child": (LONG_SPAN_CHILD, "span"),
    "short-ingest-error": (SHORT_INGEST_ERROR, "error"),
}
CHECK_IN_EXAMPLES = {"long-check-in": LONG_CHECK_IN, "short-check-in": SHORT_CHECK_IN}


def _auth(gw: GatewayHarness, style: str) -> dict[str, str]:
    # Seed "Authentication": Authorization: Bearer <token> or X-Api-Key: <token>.
    token = gw.tokens["logister_token"]
    return {"Authorization": f"Bearer {token}"} if style == "bearer" else {"X-Api-Key": token}


@pytest.mark.parametrize("style", ["bearer", "x-api-key"])
@pytest.mark.parametrize("example", list(EVENT_EXAMPLES))
def test_ingest_event_examples_are_201(gateway: GatewayHarness, example: str, style: str) -> None:
    text, kind = EVENT_EXAMPLES[example]
    response = post(gateway, INGEST, content=text.encode(), auth=False, headers=_auth(gateway, style))
    assert response.status_code == 201, response.text
    body = response.json()
    event_id = uuid.UUID(body["id"])
    # Seed "Responses": {"id":"event-uuid","status":"accepted"} plus legacy_id; spans add type: span
    # ({"id":"span-uuid","legacy_id":123,"status":"accepted","type":"span"}).
    expected: dict[str, Any] = {"id": str(event_id), "legacy_id": legacy_id(event_id), "status": "accepted"}
    if kind == "span":
        expected["type"] = "span"
    assert body == expected
    assert list(body) == list(expected)  # same key order as the seed
    assert all(h in response.headers for h in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"))

    envelope = orjson.loads(text)["event"]
    record = raw_record(gateway, event_id)
    assert record["body"] == envelope
    normalized_kind, _ = logister.normalize_event(envelope, ingest_context(event_id))
    assert normalized_kind.name == kind


@pytest.mark.parametrize("style", ["bearer", "x-api-key"])
@pytest.mark.parametrize("example", list(CHECK_IN_EXAMPLES))
def test_check_in_examples_are_201(gateway: GatewayHarness, example: str, style: str) -> None:
    text = CHECK_IN_EXAMPLES[example]
    response = post(gateway, CHECK_INS, content=text.encode(), auth=False, headers=_auth(gateway, style))
    assert response.status_code == 201, response.text
    body = response.json()
    # Seed "Responses": {"id":"event-uuid","status":"accepted"} (no legacy_id on check-ins).
    assert body == {"id": str(uuid.UUID(body["id"])), "status": "accepted"}
    assert all(h in response.headers for h in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"))
    record = raw_record(gateway, body["id"])
    assert record["body"] == orjson.loads(text)["check_in"]
    _, normalized = logister.normalize_check_in(record["body"], ingest_context(uuid.UUID(body["id"])))
    assert (normalized["slug"], normalized["status"], normalized["expected_interval_seconds"]) == (
        "nightly-reconcile",
        "ok",
        900,
    )
    assert normalized["release"] == "2026.03.02"


def test_child_span_example_after_root_example_shares_the_trace(gateway: GatewayHarness) -> None:
    # long seed, "Spans": "Use the same trace_id across the root and children".
    root = post(gateway, INGEST, content=LONG_SPAN_ROOT.encode())
    child = post(gateway, INGEST, content=LONG_SPAN_CHILD.encode())
    assert root.status_code == child.status_code == 201
    assert root.json()["type"] == child.json()["type"] == "span"
    assert root.json()["id"] != child.json()["id"]
    bodies = [r["body"] for r in gateway.raw()]
    assert [b["trace_id"] for b in bodies] == ["trace-123", "trace-123"]


# The seed prose (not a JSON literal) describes these; built from its wording.
PROSE_EXAMPLES = {
    # short seed, "For database load metrics ... message: "db.query" ... duration_ms, name, and sql in context"
    "db-query-metric": {
        "event_type": "metric",
        "message": "db.query",
        "context": {"duration_ms": 3.2, "name": "Order Load", "sql": "SELECT * FROM orders"},
    },
    # long seed, "Useful context": "transaction_name, duration_ms, status code, route, method, and release"
    "transaction": {
        "event_type": "transaction",
        "message": "CheckoutController#create",
        "context": {
            "transaction_name": "CheckoutController#create",
            "duration_ms": 120,
            "status": 200,
            "route": "POST /checkout",
            "method": "POST",
            "release": "2026.03.02",
        },
    },
    # short seed, "Event types": log — "Log events should carry the same identifiers"
    "log": {"event_type": "log", "level": "warn", "message": "retrying payment", "trace_id": "trace-123"},
    # short seed, "Event types": check_in — "Heartbeat-style scheduled job reporting"
    "check-in-event": {
        "event_type": "check_in",
        "message": "nightly-reconcile",
        "check_in_slug": "nightly-reconcile",
        "check_in_status": "error",
        "expected_interval_seconds": 900,
    },
}


@pytest.mark.parametrize("example", list(PROSE_EXAMPLES))
def test_prose_described_events_are_201(gateway: GatewayHarness, example: str) -> None:
    response = post(gateway, INGEST, {"event": PROSE_EXAMPLES[example]})
    assert response.status_code == 201, response.text
    assert set(response.json()) == {"id", "legacy_id", "status"}


# --- the seed's refusal bodies ("Responses" table) ------------------------------------------------


def test_seed_400_body(gateway: GatewayHarness) -> None:
    response = post(gateway, INGEST, {"not_event": {}})
    assert response.status_code == 400
    assert response.json()["error"].startswith("param is missing")
    response = post(gateway, CHECK_INS, {"not_check_in": {}})
    assert response.status_code == 400
    assert response.json()["error"].startswith("param is missing")


def test_seed_401_body(gateway: GatewayHarness) -> None:
    response = post(gateway, INGEST, content=LONG_INGEST_ERROR.encode(), auth=False)
    assert response.status_code == 401
    # The documented error text, and a code beside it that says what to fix.
    assert response.json() == {"error": "Unauthorized", "code": "missing_token"}


def test_seed_422_body_shape(gateway: GatewayHarness) -> None:
    response = post(gateway, INGEST, {"event": {"event_type": "error"}})
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert isinstance(errors, list) and all(isinstance(e, str) for e in errors)


def test_seed_429_body_with_the_default_limits(gateway: GatewayHarness) -> None:
    # Seed: {"error":"Rate limit exceeded","limit":1200,"window_seconds":60,"retry_after":60}.
    # At the very start of a window the retry_after is the whole window, as in the seed.
    gateway.clock.now = math.floor(gateway.clock.now / 60) * 60 + 60
    for _ in range(1200):  # rejected bodies count too and keep the raw log empty
        assert post(gateway, CHECK_INS, content=b"").status_code == 400
    response = post(gateway, CHECK_INS, content=LONG_CHECK_IN.encode())
    assert response.status_code == 429
    assert response.json() == {"error": "Rate limit exceeded", "limit": 1200, "window_seconds": 60, "retry_after": 60}
    assert response.headers["Retry-After"] == "60"
    assert response.headers["X-RateLimit-Limit"] == "1200"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert int(response.headers["X-RateLimit-Reset"]) == int(gateway.clock.now) + 60
    assert raw_count(gateway) == 0
