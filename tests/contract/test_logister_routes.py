"""POST /api/v1/ingest_events and POST /api/v1/check_ins: every route, status code and body.

SPEC 4.3 / 4.4 and the seeds logister-http-api*.txt ("Responses", "Rate limits",
"Authentication", "Event fields").
"""

from __future__ import annotations

import gzip
import math
import uuid
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from forgeline.config import Settings, SettingsError
from forgeline.schemas import logister
from forgeline.tenancy.model import hash_token
from forgeline.tenancy.store import TenancyAdmin
from tests.conftest import GatewayHarness
from tests.contract.logister_support import (
    CHECK_INS,
    INGEST,
    assert_accepted_check_in,
    assert_accepted_event,
    assert_refused,
    ingest_context,
    post,
    process_downstream,
    raw_count,
    raw_record,
    run,
    wait_for_status,
)

pytestmark = pytest.mark.contract

MakeGateway = Callable[..., GatewayHarness]

# One minimal valid event per event_type (seed "Event fields").
VALID_EVENTS: dict[str, dict[str, Any]] = {
    "error": {"event_type": "error", "message": "NoMethodError in CheckoutService"},
    "log": {"event_type": "log", "level": "info", "message": "user signed in"},
    "metric": {"event_type": "metric", "message": "db.query", "context": {"value": 3.5, "duration_ms": 12}},
    "transaction": {
        "event_type": "transaction",
        "message": "GET /checkout",
        "context": {"transaction_name": "GET /checkout", "duration_ms": 245.7},
    },
    "span": {"event_type": "span", "name": "GET /checkout", "kind": "server", "trace_id": "t-1", "span_id": "s-1"},
    "check_in": {
        "event_type": "check_in",
        "message": "nightly-reconcile",
        "check_in_slug": "nightly-reconcile",
        "check_in_status": "ok",
    },
}

VALID_CHECK_IN: dict[str, Any] = {"slug": "nightly-reconcile", "status": "ok", "expected_interval_seconds": 900}

BAD_ENVELOPE_EVENT = {"error": "param is missing or the value is empty: event"}
BAD_ENVELOPE_CHECK_IN = {"error": "param is missing or the value is empty: check_in"}
UNAUTHORIZED = {"error": "Unauthorized", "code": "invalid_token"}


def _unauthorized(code: str) -> dict[str, str]:
    """Logister's documented body, and the code that says what to fix."""
    return {"error": "Unauthorized", "code": code}


def _event(gw: GatewayHarness, event: dict[str, Any], **kwargs: Any) -> Any:
    return post(gw, INGEST, {"event": event}, **kwargs)


def _check_in(gw: GatewayHarness, check_in: dict[str, Any], **kwargs: Any) -> Any:
    return post(gw, CHECK_INS, {"check_in": check_in}, **kwargs)


def _window_reset(gw: GatewayHarness, window: int = 60) -> int:
    return (math.floor(gw.clock.time() / window) + 1) * window


# --- 201 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", list(VALID_EVENTS), ids=list(VALID_EVENTS))
def test_each_event_type_is_201_with_id_legacy_id_and_status(gateway: GatewayHarness, event_type: str) -> None:
    event = VALID_EVENTS[event_type]
    response = _event(gateway, event)
    event_id = assert_accepted_event(response, span=event_type == "span")

    record = raw_record(gateway, event_id)
    assert record["route"] == "ingest_events"
    assert record["body"] == event  # enqueued as received
    assert record["project_id"] == gateway.tokens["project_id"]
    assert record["organisation_id"] == gateway.tokens["organisation_id"]
    assert record["environment"] == "production"
    assert record["token_id"]
    assert abs(record["received_at"] - gateway.clock.time() * 1000) <= 1
    assert process_downstream(record).topic == logister.EVENT_TYPES[event_type].topic


def test_only_spans_add_type_span(gateway: GatewayHarness) -> None:
    assert _event(gateway, VALID_EVENTS["span"]).json()["type"] == "span"
    assert "type" not in _event(gateway, VALID_EVENTS["log"]).json()


def test_check_in_route_is_201_with_id_and_status_but_no_legacy_id(gateway: GatewayHarness) -> None:
    response = _check_in(gateway, VALID_CHECK_IN)
    event_id = assert_accepted_check_in(response)
    assert "legacy_id" not in response.json()
    record = raw_record(gateway, event_id)
    assert record["route"] == "check_ins"
    assert record["body"] == VALID_CHECK_IN


@pytest.mark.parametrize("path", [INGEST, CHECK_INS], ids=["ingest_events", "check_ins"])
def test_accepted_responses_carry_rate_limit_headers(gateway: GatewayHarness, path: str) -> None:
    body = {"event": VALID_EVENTS["log"]} if path == INGEST else {"check_in": VALID_CHECK_IN}
    first = post(gateway, path, body)
    second = post(gateway, path, body)
    assert first.status_code == second.status_code == 201
    assert first.headers["X-RateLimit-Limit"] == "1200"
    assert first.headers["X-RateLimit-Remaining"] == "1199"
    assert second.headers["X-RateLimit-Remaining"] == "1198"
    assert int(first.headers["X-RateLimit-Reset"]) == _window_reset(gateway)
    assert "Retry-After" not in first.headers


def test_uppercase_event_envelope_is_accepted(gateway: GatewayHarness) -> None:
    response = post(gateway, INGEST, {"EVENT": VALID_EVENTS["error"]})
    event_id = assert_accepted_event(response)
    assert raw_record(gateway, event_id)["body"] == VALID_EVENTS["error"]


def test_uppercase_check_in_envelope_is_accepted(gateway: GatewayHarness) -> None:
    response = post(gateway, CHECK_INS, {"CHECK_IN": VALID_CHECK_IN})
    event_id = assert_accepted_check_in(response)
    assert raw_record(gateway, event_id)["body"] == VALID_CHECK_IN


@pytest.mark.parametrize("path", [INGEST, CHECK_INS], ids=["ingest_events", "check_ins"])
def test_x_api_key_authenticates_like_bearer(gateway: GatewayHarness, path: str) -> None:
    body = {"event": VALID_EVENTS["log"]} if path == INGEST else {"check_in": VALID_CHECK_IN}
    response = post(gateway, path, body, auth=False, headers={"X-Api-Key": gateway.tokens["logister_token"]})
    assert response.status_code == 201, response.text


def test_bearer_scheme_is_case_insensitive(gateway: GatewayHarness) -> None:
    headers = {"Authorization": f"bearer {gateway.tokens['logister_token']}"}
    assert _event(gateway, VALID_EVENTS["log"], auth=False, headers=headers).status_code == 201


def test_camel_case_keys_are_accepted_stored_as_sent_and_normalized(gateway: GatewayHarness) -> None:
    event = {
        "eventType": "transaction",
        "message": "POST /checkout",
        "traceId": "trace-abc",
        "requestId": "req-1",
        "transactionName": "CheckoutController#create",
        "durationMs": 87.5,
        "userId": "42",
        "sessionId": "sess-9",
    }
    event_id = assert_accepted_event(_event(gateway, event))
    body = raw_record(gateway, event_id)["body"]
    assert body == event  # the raw log keeps the client's spelling

    kind, record = logister.normalize_event(body, ingest_context(event_id))
    assert kind.name == "transaction"
    context = orjson.loads(record["context"])
    assert context["trace_id"] == "trace-abc"
    assert context["request_id"] == "req-1"
    assert context["transaction_name"] == "CheckoutController#create"
    assert context["duration_ms"] == 87.5
    assert (record["trace_id"], record["request_id"], record["user_id"], record["session_id"]) == (
        "trace-abc",
        "req-1",
        "42",
        "sess-9",
    )
    assert record["transaction_name"] == "CheckoutController#create"
    assert record["duration_ms"] == 87.5


def test_camel_case_span_keys_are_accepted(gateway: GatewayHarness) -> None:
    event = {
        "eventType": "span",
        "name": "SELECT orders",
        "spanKind": "db",
        "traceId": "trace-123",
        "spanId": "span-db",
        "parentSpanId": "span-root",
        "durationMs": 40.2,
        "startedAt": "2026-05-22T12:00:00Z",
    }
    event_id = assert_accepted_event(_event(gateway, event), span=True)
    _, record = logister.normalize_event(raw_record(gateway, event_id)["body"], ingest_context(event_id))
    assert (record["trace_id"], record["span_id"], record["parent_span_id"], record["kind"]) == (
        "trace-123",
        "span-db",
        "span-root",
        "db",
    )
    assert record["duration_ms"] == 40.2


def test_camel_case_check_in_keys_are_accepted(gateway: GatewayHarness) -> None:
    check_in = {"slug": "hourly", "expectedIntervalSeconds": 3600, "durationMs": 12, "traceId": "t"}
    event_id = assert_accepted_check_in(_check_in(gateway, check_in))
    _, record = logister.normalize_check_in(raw_record(gateway, event_id)["body"], ingest_context(event_id))
    assert record["expected_interval_seconds"] == 3600
    assert record["duration_ms"] == 12
    assert record["trace_id"] == "t"


def test_convenience_fields_are_copied_into_context_unless_already_set(gateway: GatewayHarness) -> None:
    event = {
        "event_type": "error",
        "message": "boom",
        "environment": "production",
        "release": "2026.03.02",
        "trace_id": "trace-1",
        "request_id": "req-top",
        "user_id": 7,
        "context": {"request_id": "req-in-context", "custom": True},
    }
    event_id = assert_accepted_event(_event(gateway, event))
    body = raw_record(gateway, event_id)["body"]
    assert body == event  # copying happens in normalization, not in what is enqueued

    _, record = logister.normalize_event(body, ingest_context(event_id))
    context = orjson.loads(record["context"])
    assert context == {
        "request_id": "req-in-context",  # already set: kept
        "custom": True,
        "environment": "production",
        "release": "2026.03.02",
        "trace_id": "trace-1",
        "user_id": 7,
    }
    assert record["request_id"] == "req-in-context"
    assert record["release"] == "2026.03.02"


def test_client_uuid_becomes_the_returned_id(gateway: GatewayHarness) -> None:
    client_id = uuid.uuid4()
    response = _event(gateway, {**VALID_EVENTS["log"], "uuid": str(client_id)})
    assert assert_accepted_event(response) == client_id
    assert raw_record(gateway, client_id)["event_id"] == str(client_id)


def test_client_event_id_alias_becomes_the_returned_id(gateway: GatewayHarness) -> None:
    client_id = uuid.uuid4()
    response = _event(gateway, {**VALID_EVENTS["error"], "event_id": str(client_id)})
    assert assert_accepted_event(response) == client_id


def test_client_uuid_on_a_check_in_becomes_the_returned_id(gateway: GatewayHarness) -> None:
    client_id = uuid.uuid4()
    assert assert_accepted_check_in(_check_in(gateway, {**VALID_CHECK_IN, "uuid": str(client_id)})) == client_id


def test_without_a_client_uuid_every_event_gets_a_new_id(gateway: GatewayHarness) -> None:
    ids = {_event(gateway, VALID_EVENTS["log"]).json()["id"] for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize("bad", ["not-a-uuid", 12345, "", {"a": 1}], ids=["text", "number", "empty", "object"])
def test_an_invalid_client_uuid_is_422(gateway: GatewayHarness, bad: Any) -> None:
    assert_refused(
        gateway,
        lambda: _event(gateway, {**VALID_EVENTS["log"], "uuid": bad}),
        422,
        {"errors": ["Uuid is not a valid UUID"]},
    )


def test_an_invalid_client_uuid_on_a_check_in_is_422(gateway: GatewayHarness) -> None:
    assert_refused(
        gateway,
        lambda: _check_in(gateway, {**VALID_CHECK_IN, "uuid": "nope"}),
        422,
        {"errors": ["Uuid is not a valid UUID"]},
    )


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "application/vnd.api+json", "text/plain", None],
    ids=["json-charset", "plus-json", "text-plain", "none"],
)
def test_json_compatible_content_types_are_accepted(gateway: GatewayHarness, content_type: str | None) -> None:
    headers = {**gateway.auth}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = gateway.client.post(INGEST, content=orjson.dumps({"event": VALID_EVENTS["log"]}), headers=headers)
    assert response.status_code == 201, response.text


# --- 400 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        orjson.dumps({"message": "no envelope"}),
        orjson.dumps({"events": VALID_EVENTS["log"]}),
        orjson.dumps({"check_in": VALID_CHECK_IN}),
        orjson.dumps({"event": "a string"}),
        orjson.dumps({"event": [VALID_EVENTS["log"]]}),
        orjson.dumps({"event": None}),
        orjson.dumps({"event": {}}),
        orjson.dumps({}),
        b"",
        b"   \n",
        orjson.dumps([{"event": VALID_EVENTS["log"]}]),
        b"null",
        b'"event"',
        b"42",
    ],
    ids=[
        "no-envelope",
        "wrong-key",
        "check-in-envelope",
        "string",
        "array",
        "null",
        "empty-object",
        "empty-doc",
        "empty-body",
        "whitespace-body",
        "array-body",
        "null-body",
        "string-body",
        "number-body",
    ],
)
def test_missing_or_unusable_event_envelope_is_400(gateway: GatewayHarness, content: bytes) -> None:
    assert_refused(gateway, lambda: post(gateway, INGEST, content=content), 400, BAD_ENVELOPE_EVENT)


@pytest.mark.parametrize(
    "content",
    [
        orjson.dumps({"event": VALID_EVENTS["log"]}),
        orjson.dumps({"check_in": "nightly"}),
        orjson.dumps({"check_in": {}}),
        b"",
        orjson.dumps([VALID_CHECK_IN]),
    ],
    ids=["event-envelope", "string", "empty-object", "empty-body", "array-body"],
)
def test_missing_or_unusable_check_in_envelope_is_400(gateway: GatewayHarness, content: bytes) -> None:
    assert_refused(gateway, lambda: post(gateway, CHECK_INS, content=content), 400, BAD_ENVELOPE_CHECK_IN)


@pytest.mark.parametrize("path", [INGEST, CHECK_INS], ids=["ingest_events", "check_ins"])
@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"event": {"event_type": "log",', b"\xff\xfe\x00", b'{"event": NaN}', b"{'event': {}}"],
    ids=["garbage", "truncated", "binary", "nan", "single-quotes"],
)
def test_malformed_json_is_400_with_an_error(gateway: GatewayHarness, path: str, content: bytes) -> None:
    response = assert_refused(gateway, lambda: post(gateway, path, content=content), 400)
    assert response.json()["error"].startswith("Invalid JSON")
    assert response.json()["code"] == "invalid_json"


def _nested_event(total_depth: int) -> dict[str, Any]:
    """A valid log event whose document nests exactly ``total_depth`` containers deep."""
    inner: dict[str, Any] = {}
    node = inner
    for _ in range(total_depth - 3):  # document (1) → event (2) → context (3) → …
        node["a"] = {}
        node = node["a"]
    return {"event": {"event_type": "log", "message": "deep", "context": inner}}


def test_nesting_up_to_max_json_depth_is_accepted_and_deeper_is_400(make_gateway: MakeGateway) -> None:
    gw = make_gateway(max_json_depth=8)
    assert post(gw, INGEST, _nested_event(8)).status_code == 201
    response = assert_refused(gw, lambda: post(gw, INGEST, _nested_event(9)), 400)
    assert response.json()["code"] == "too_deep"
    assert "8" in response.json()["error"]


def test_very_deep_nesting_is_400_not_a_crash(gateway: GatewayHarness) -> None:
    content = b'{"event":' * 5000 + b"{}" + b"}" * 5000
    response = assert_refused(gateway, lambda: post(gateway, INGEST, content=content), 400)
    assert "error" in response.json()


# --- 401 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [INGEST, CHECK_INS], ids=["ingest_events", "check_ins"])
@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_token"),
        ({"Authorization": "Bearer lgst_unknown-token"}, "invalid_token"),
        ({"Authorization": "Bearer "}, "missing_token"),
        ({"Authorization": "Token lgst_whatever"}, "missing_token"),
        ({"X-Api-Key": "lgst_unknown-token"}, "invalid_token"),
        ({"X-Api-Key": ""}, "missing_token"),
        ({"X-Api-Key": "not a token"}, "malformed_token"),
        ({"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"}, "malformed_token"),
    ],
    ids=[
        "missing",
        "unknown-bearer",
        "empty-bearer",
        "other-scheme",
        "unknown-api-key",
        "empty-api-key",
        "malformed",
        "jwt",
    ],
)
def test_missing_or_unknown_token_is_401(
    gateway: GatewayHarness, path: str, headers: dict[str, str], code: str
) -> None:
    body = {"event": VALID_EVENTS["log"]} if path == INGEST else {"check_in": VALID_CHECK_IN}
    assert_refused(gateway, lambda: post(gateway, path, body, auth=False, headers=headers), 401, _unauthorized(code))


@pytest.mark.parametrize("token_name", ["forge_token", "msgpack_public_token", "msgpack_secret_key"])
@pytest.mark.parametrize("header", ["Authorization", "X-Api-Key"])
def test_a_token_of_another_kind_is_401(gateway: GatewayHarness, token_name: str, header: str) -> None:
    token = gateway.tokens[token_name]
    value = f"Bearer {token}" if header == "Authorization" else token
    assert_refused(
        gateway,
        lambda: _event(gateway, VALID_EVENTS["log"], auth=False, headers={header: value}),
        401,
        _unauthorized("wrong_token_kind"),
    )


def test_authentication_comes_before_body_validation(gateway: GatewayHarness) -> None:
    assert_refused(
        gateway, lambda: post(gateway, INGEST, content=b"{broken", auth=False), 401, _unauthorized("missing_token")
    )


# --- 422 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "errors"),
    [
        ({"message": "no type"}, ["Event type can't be blank"]),
        ({"event_type": "", "message": "m"}, ["Event type can't be blank"]),
        ({"event_type": "crash", "message": "m"}, ["Event type is not included in the list"]),
        ({"event_type": "log"}, ["Message can't be blank"]),
        ({"event_type": "error", "message": "   "}, ["Message can't be blank"]),
        ({"event_type": "metric", "message": ""}, ["Message can't be blank"]),
        ({"event_type": "log", "message": ["a", "list"]}, ["Message must be a string"]),
        ({"event_type": "span", "name": "GET /"}, ["Span id can't be blank", "Trace id can't be blank"]),
        ({"event_type": "span", "name": "GET /", "span_id": "s"}, ["Trace id can't be blank"]),
        ({"event_type": "span", "name": "GET /", "trace_id": "t"}, ["Span id can't be blank"]),
        (
            {"event_type": "span", "name": "x", "trace_id": "t", "span_id": "s", "kind": "galaxy"},
            ["Kind is not included in the list"],
        ),
        ({"event_type": "span", "trace_id": "t", "span_id": "s"}, ["Name can't be blank"]),
        (
            {"event_type": "log", "message": "m", "occurred_at": "yesterday"},
            ["Occurred at is not a valid ISO 8601 timestamp"],
        ),
        (
            {"event_type": "log", "message": "m", "occurred_at": 1700000000},
            ["Occurred at is not a valid ISO 8601 timestamp"],
        ),
        ({"event_type": "log", "message": "m", "context": "text"}, ["Context must be an object"]),
        ({"event_type": "log", "message": "m", "context": [1, 2]}, ["Context must be an object"]),
        (
            {"event_type": "transaction", "message": "m", "duration_ms": -1},
            ["Duration ms must be greater than or equal to 0"],
        ),
        (
            {"event_type": "span", "name": "x", "trace_id": "t", "span_id": "s", "durationMs": -0.5},
            ["Duration ms must be greater than or equal to 0"],
        ),
        (
            {"event_type": "transaction", "message": "m", "duration_ms": "slow"},
            ["Duration ms is not a number"],
        ),
        ({"event_type": "metric", "message": "m", "context": {"value": "high"}}, ["Value is not a number"]),
        ({"event_type": "check_in", "message": "m"}, ["Check in slug can't be blank"]),
        (
            {"event_type": "check_in", "message": "m", "check_in_slug": "s", "check_in_status": "late"},
            ["Check in status is not included in the list"],
        ),
        (
            {"event_type": "log", "occurred_at": "nope", "context": 3},
            [
                "Context must be an object",
                "Message can't be blank",
                "Occurred at is not a valid ISO 8601 timestamp",
            ],
        ),
        ({"event_type": "log", "message": "m", "level": "x" * 33}, ["Level is too long (maximum is 32 characters)"]),
        (
            {"event_type": "log", "message": "m" * (64 * 1024 + 1)},
            ["Message is too long (maximum is 65536 characters)"],
        ),
    ],
    ids=[
        "missing-type",
        "blank-type",
        "unknown-type",
        "missing-message",
        "blank-message",
        "empty-metric-message",
        "message-list",
        "span-no-ids",
        "span-no-trace",
        "span-no-span-id",
        "span-bad-kind",
        "span-no-name",
        "bad-occurred-at",
        "numeric-occurred-at",
        "context-string",
        "context-list",
        "negative-duration",
        "negative-span-duration",
        "duration-not-number",
        "metric-value-not-number",
        "check-in-event-no-slug",
        "check-in-event-bad-status",
        "several-problems",
        "level-too-long",
        "message-too-long",
    ],
)
def test_invalid_events_are_422_with_rails_style_messages(
    gateway: GatewayHarness, event: dict[str, Any], errors: list[str]
) -> None:
    assert_refused(gateway, lambda: _event(gateway, event), 422, {"errors": errors})


@pytest.mark.parametrize(
    ("check_in", "errors"),
    [
        ({"status": "ok"}, ["Slug can't be blank"]),
        ({"slug": "", "status": "ok"}, ["Slug can't be blank"]),
        ({"slug": "nightly", "status": "late"}, ["Status is not included in the list"]),
        ({"slug": "nightly", "status": "OK "}, ["Status is not included in the list"]),
        (
            {"slug": "nightly", "expected_interval_seconds": -5},
            ["Expected interval seconds must be a positive whole number of seconds"],
        ),
        (
            {"slug": "nightly", "expected_interval_seconds": 0},
            ["Expected interval seconds must be a positive whole number of seconds"],
        ),
        (
            {"slug": "nightly", "expected_interval_seconds": 1.5},
            ["Expected interval seconds must be a positive whole number of seconds"],
        ),
        ({"slug": "nightly", "expected_interval_seconds": "hourly"}, ["Expected interval seconds is not a number"]),
        ({"slug": "nightly", "expected_interval_seconds": True}, ["Expected interval seconds is not a number"]),
        (
            {"slug": "nightly", "duration_ms": -3},
            ["Duration ms must be greater than or equal to 0"],
        ),
        (
            {"slug": "nightly", "occurred_at": "soon"},
            ["Occurred at is not a valid ISO 8601 timestamp"],
        ),
        ({"status": "bad"}, ["Slug can't be blank", "Status is not included in the list"]),
    ],
    ids=[
        "missing-slug",
        "blank-slug",
        "bad-status",
        "status-not-exact",
        "negative-interval",
        "zero-interval",
        "fractional-interval",
        "text-interval",
        "bool-interval",
        "negative-duration",
        "bad-occurred-at",
        "several",
    ],
)
def test_invalid_check_ins_are_422(gateway: GatewayHarness, check_in: dict[str, Any], errors: list[str]) -> None:
    assert_refused(gateway, lambda: _check_in(gateway, check_in), 422, {"errors": errors})


def test_refusals_after_authentication_carry_rate_limit_headers(gateway: GatewayHarness) -> None:
    response = assert_refused(gateway, lambda: _event(gateway, {"event_type": "log"}), 422)
    assert response.headers["X-RateLimit-Limit"] == "1200"
    assert response.headers["X-RateLimit-Remaining"] == "1199"


# --- 413 / 415 and content encodings ----------------------------------------------------------


def test_body_over_max_body_bytes_is_413(make_gateway: MakeGateway) -> None:
    gw = make_gateway(max_body_bytes=2048)
    fits = {"event": {"event_type": "log", "message": "x" * 1500}}
    assert post(gw, INGEST, fits).status_code == 201
    big = {"event": {"event_type": "log", "message": "x" * 3000}}
    response = assert_refused(gw, lambda: post(gw, INGEST, big), 413)
    assert response.json()["code"] == "payload_too_large"
    assert response.json()["limit_bytes"] == 2048
    assert "error" in response.json()


def test_streamed_body_without_content_length_over_the_limit_is_413(make_gateway: MakeGateway) -> None:
    gw = make_gateway(max_body_bytes=2048)

    def chunks() -> Iterator[bytes]:
        yield b'{"event": {"event_type": "log", "message": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}}'

    before = raw_count(gw)
    response = gw.client.post(INGEST, content=chunks(), headers={**gw.auth, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert raw_count(gw) == before


def test_check_in_body_limit_is_its_own(make_gateway: MakeGateway) -> None:
    gw = make_gateway(max_check_in_body_bytes=1024)
    big = {"check_in": {**VALID_CHECK_IN, "release": "r" * 2000}}
    assert_refused(gw, lambda: post(gw, CHECK_INS, big), 413)
    assert post(gw, INGEST, {"event": {"event_type": "log", "message": "x" * 2000}}).status_code == 201


def test_invalid_content_length_is_400(gateway: GatewayHarness) -> None:
    body = orjson.dumps({"event": VALID_EVENTS["log"]})
    headers = {**gateway.auth, "Content-Type": "application/json", "Content-Length": "12abc"}
    # Bypass httpx's own Content-Length by sending through the raw transport request.
    request = gateway.client.build_request("POST", INGEST, content=body, headers=headers)
    request.headers["Content-Length"] = "12abc"
    before = raw_count(gateway)
    response = gateway.client.send(request)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_length"
    assert raw_count(gateway) == before


def _gzip(doc: Any) -> bytes:
    return gzip.compress(orjson.dumps(doc))


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", lambda b: gzip.compress(b)),
        ("x-gzip", lambda b: gzip.compress(b)),
        ("GZIP", lambda b: gzip.compress(b)),
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),
        ("identity", lambda b: b),
    ],
    ids=["gzip", "x-gzip", "gzip-upper", "deflate-zlib", "deflate-raw", "identity"],
)
def test_compressed_bodies_are_accepted(
    gateway: GatewayHarness, encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    event = {**VALID_EVENTS["error"], "context": {"big": "y" * 5000}}
    response = post(
        gateway, INGEST, content=encode(orjson.dumps({"event": event})), headers={"Content-Encoding": encoding}
    )
    event_id = assert_accepted_event(response)
    assert raw_record(gateway, event_id)["body"] == event


def test_gzip_check_in_is_accepted(gateway: GatewayHarness) -> None:
    response = post(
        gateway, CHECK_INS, content=_gzip({"check_in": VALID_CHECK_IN}), headers={"Content-Encoding": "gzip"}
    )
    assert_accepted_check_in(response)


def test_concatenated_gzip_members_are_one_body(gateway: GatewayHarness) -> None:
    data = orjson.dumps({"event": VALID_EVENTS["log"]})
    content = gzip.compress(data[:10]) + gzip.compress(data[10:])
    assert_accepted_event(post(gateway, INGEST, content=content, headers={"Content-Encoding": "gzip"}))


def test_gzip_whose_inflated_size_is_over_the_cap_is_413(make_gateway: MakeGateway) -> None:
    gw = make_gateway(max_inflated_bytes=4096)
    small = _gzip({"event": {"event_type": "log", "message": "x" * 3000}})
    assert post(gw, INGEST, content=small, headers={"Content-Encoding": "gzip"}).status_code == 201
    big = _gzip({"event": {"event_type": "log", "message": "x" * 10_000}})
    assert len(big) < 4096  # the wire size is fine; only the inflated size is over
    response = assert_refused(gw, lambda: post(gw, INGEST, content=big, headers={"Content-Encoding": "gzip"}), 413)
    assert response.json()["code"] == "payload_too_large"
    assert response.json()["limit_bytes"] == 4096


def test_gzip_bomb_is_413(gateway: GatewayHarness) -> None:
    bomb = gzip.compress(b" " * (50 * 1024 * 1024), compresslevel=9)
    response = assert_refused(
        gateway, lambda: post(gateway, INGEST, content=bomb, headers={"Content-Encoding": "gzip"}), 413
    )
    assert response.json()["code"] == "payload_too_large"


def test_deflate_bomb_is_413(make_gateway: MakeGateway) -> None:
    gw = make_gateway(max_inflated_bytes=64 * 1024)
    bomb = zlib.compress(b" " * (8 * 1024 * 1024), 9)
    assert_refused(gw, lambda: post(gw, INGEST, content=bomb, headers={"Content-Encoding": "deflate"}), 413)


_SMALL_EVENT = orjson.dumps({"event": {"event_type": "log", "message": "m"}})


@pytest.mark.parametrize(
    ("encoding", "content", "code"),
    [
        ("gzip", b"\x1f\x8b\x08\x00garbage-not-gzip", "invalid_gzip"),
        ("gzip", b'{"event": {"event_type": "log", "message": "plain"}}', "invalid_gzip"),
        ("gzip", gzip.compress(_SMALL_EVENT)[:-12], "invalid_gzip"),
        ("gzip", gzip.compress(_SMALL_EVENT) + b"junk", "invalid_gzip"),
        ("gzip", b"", "invalid_gzip"),
        ("deflate", b"\x00\x01\x02not deflate at all", "invalid_deflate"),
        ("deflate", zlib.compress(_SMALL_EVENT)[:-6], "invalid_deflate"),
    ],
    ids=[
        "gzip-garbage",
        "gzip-plain",
        "gzip-truncated",
        "gzip-trailing-junk",
        "gzip-empty",
        "deflate-garbage",
        "deflate-truncated",
    ],
)
def test_broken_compressed_bodies_are_400(gateway: GatewayHarness, encoding: str, content: bytes, code: str) -> None:
    response = assert_refused(
        gateway, lambda: post(gateway, INGEST, content=content, headers={"Content-Encoding": encoding}), 400
    )
    assert response.json()["code"] == code
    assert "error" in response.json()


@pytest.mark.parametrize("encoding", ["br", "compress", "zstd", "gzip, br"])
def test_unknown_content_encoding_is_415(gateway: GatewayHarness, encoding: str) -> None:
    content = orjson.dumps({"event": VALID_EVENTS["log"]})
    response = assert_refused(
        gateway, lambda: post(gateway, INGEST, content=content, headers={"Content-Encoding": encoding}), 415
    )
    assert response.json()["code"] == "unsupported_content_encoding"


@pytest.mark.parametrize("path", [INGEST, CHECK_INS], ids=["ingest_events", "check_ins"])
@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "application/msgpack", "multipart/form-data; boundary=x", "text/html"],
    ids=["form", "msgpack", "multipart", "html"],
)
def test_non_json_content_type_is_415(gateway: GatewayHarness, path: str, content_type: str) -> None:
    body = {"event": VALID_EVENTS["log"]} if path == INGEST else {"check_in": VALID_CHECK_IN}
    response = assert_refused(gateway, lambda: post(gateway, path, body, headers={"Content-Type": content_type}), 415)
    assert response.json()["code"] == "unsupported_content_type"


# --- 404 / 405 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v2/ingest_events", "/", "/api/v1/ingest_events/extra/x"])
def test_unknown_path_is_404_json(gateway: GatewayHarness, method: str, path: str) -> None:
    response = gateway.client.request(method, path, headers=gateway.auth)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": "Not Found"}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", [INGEST, CHECK_INS], ids=["ingest_events", "check_ins"])
def test_other_methods_on_post_routes_are_405_json(gateway: GatewayHarness, method: str, path: str) -> None:
    before = raw_count(gateway)
    response = gateway.client.request(method, path, headers=gateway.auth)
    assert response.status_code == 405
    assert response.json() == {"error": "Method Not Allowed"}
    assert response.headers["Allow"] == "POST"
    assert raw_count(gateway) == before


# --- 429 ---------------------------------------------------------------------------------


def _assert_rate_limited(response: Any, limit: int, window: int = 60) -> int:
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window
    assert response.json() == {
        "error": "Rate limit exceeded",
        "limit": limit,
        "window_seconds": window,
        "retry_after": retry_after,
    }
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert int(response.headers["X-RateLimit-Reset"]) > 0
    return retry_after


def test_requests_over_the_limit_per_token_and_endpoint_are_429(make_gateway: MakeGateway) -> None:
    gw = make_gateway(logister_rate_limit_requests=3)
    reset = _window_reset(gw)
    remaining = [_event(gw, VALID_EVENTS["log"]).headers["X-RateLimit-Remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]

    response = assert_refused(gw, lambda: _event(gw, VALID_EVENTS["log"]), 429)
    retry_after = _assert_rate_limited(response, 3)
    assert int(response.headers["X-RateLimit-Reset"]) == reset
    assert retry_after == math.ceil(reset - gw.clock.time())

    # The other endpoint has its own budget.
    assert _check_in(gw, VALID_CHECK_IN).status_code == 201

    # Limited even when the body is broken: the limit comes before the body.
    assert_refused(gw, lambda: post(gw, INGEST, content=b"{broken"), 429)

    gw.clock.advance(60)
    again = _event(gw, VALID_EVENTS["log"])
    assert again.status_code == 201
    assert again.headers["X-RateLimit-Remaining"] == "2"


def test_check_in_endpoint_limit_is_separate(make_gateway: MakeGateway) -> None:
    gw = make_gateway(logister_rate_limit_requests=2)
    assert [_check_in(gw, VALID_CHECK_IN).status_code for _ in range(2)] == [201, 201]
    _assert_rate_limited(assert_refused(gw, lambda: _check_in(gw, VALID_CHECK_IN), 429), 2)
    assert _event(gw, VALID_EVENTS["log"]).status_code == 201


def test_rejected_requests_count_against_the_limit(make_gateway: MakeGateway) -> None:
    gw = make_gateway(logister_rate_limit_requests=2)
    assert _event(gw, {"event_type": "log"}).status_code == 422
    assert post(gw, INGEST, content=b"").status_code == 400
    _assert_rate_limited(_event(gw, VALID_EVENTS["log"]), 2)


def test_rate_limit_window_length_is_configurable(make_gateway: MakeGateway) -> None:
    gw = make_gateway(logister_rate_limit_requests=1, logister_rate_limit_period_seconds=10)
    gw.clock.now = math.floor(gw.clock.now / 10) * 10 + 2.5
    assert _event(gw, VALID_EVENTS["log"]).status_code == 201
    response = _event(gw, VALID_EVENTS["log"])
    assert _assert_rate_limited(response, 1, window=10) == 8
    gw.clock.advance(8)
    assert _event(gw, VALID_EVENTS["log"]).status_code == 201


def _create_logister_token(gw: GatewayHarness) -> str:
    async def go() -> str:
        async with TenancyAdmin(gw.bus) as admin:
            _, secret = await admin.create_token("logister", gw.tokens["project_id"], "production", name="second")
            return secret

    return str(run(go()))


def test_the_limit_is_per_token(make_gateway: MakeGateway) -> None:
    gw = make_gateway(logister_rate_limit_requests=2)
    other = _create_logister_token(gw)
    other_auth = {"Authorization": f"Bearer {other}"}
    # The new token reaches the gateway through the control topic (refresh 0.2 s).
    wait_for_status(gw, lambda: _event(gw, VALID_EVENTS["log"], auth=False, headers=other_auth), 201)

    assert [_event(gw, VALID_EVENTS["log"]).status_code for _ in range(2)] == [201, 201]
    _assert_rate_limited(_event(gw, VALID_EVENTS["log"]), 2)
    # The second token used one request while waiting; it still has one left.
    response = _event(gw, VALID_EVENTS["log"], auth=False, headers=other_auth)
    assert response.status_code == 201
    assert response.headers["X-RateLimit-Remaining"] == "0"


def test_auth_failures_over_the_limit_are_429_per_source(make_gateway: MakeGateway) -> None:
    gw = make_gateway(auth_failure_rate_limit_requests=2)
    other = {"Authorization": f"Bearer {_create_logister_token(gw)}"}

    def poll_in_a_fresh_window() -> Any:  # polls fail while the new token is on its way
        gw.clock.advance(60)
        return _event(gw, VALID_EVENTS["log"], auth=False, headers=other)

    wait_for_status(gw, poll_in_a_fresh_window, 201)
    gw.clock.advance(60)
    bad = {"Authorization": "Bearer lgst_wrong"}
    assert_refused(gw, lambda: _event(gw, VALID_EVENTS["log"], auth=False, headers=bad), 401, UNAUTHORIZED)
    # A client at the same address that authenticates meanwhile keeps working (a shared NAT).
    assert_accepted_event(_event(gw, VALID_EVENTS["log"]))
    assert_refused(gw, lambda: _check_in(gw, VALID_CHECK_IN, auth=False), 401, _unauthorized("missing_token"))

    third = assert_refused(gw, lambda: _event(gw, VALID_EVENTS["log"], auth=False, headers=bad), 429)
    _assert_rate_limited(third, 2)
    # X-Forwarded-For from an untrusted peer does not buy a fresh budget.
    spoofed = {**bad, "X-Forwarded-For": "203.0.113.9"}
    _assert_rate_limited(
        assert_refused(gw, lambda: _event(gw, VALID_EVENTS["log"], auth=False, headers=spoofed), 429), 2
    )
    assert_accepted_event(_event(gw, VALID_EVENTS["log"]))
    assert_accepted_check_in(_check_in(gw, VALID_CHECK_IN))
    # Any other token is refused like a guess, right or wrong: a right guess must not stand out.
    _assert_rate_limited(assert_refused(gw, lambda: _event(gw, VALID_EVENTS["log"], auth=False, headers=other), 429), 2)

    gw.clock.advance(60)
    assert_refused(gw, lambda: _event(gw, VALID_EVENTS["log"], auth=False, headers=bad), 401, UNAUTHORIZED)


# --- revocation and archiving -------------------------------------------------------------------


def _logister_token_id(admin: TenancyAdmin, secret: str) -> str:
    digest = hash_token(secret)
    return next(t.id for t in admin.table.tokens.values() if t.hash == digest)


def test_a_revoked_token_is_401_within_5_seconds(gateway: GatewayHarness) -> None:
    assert _event(gateway, VALID_EVENTS["log"]).status_code == 201

    async def revoke() -> None:
        async with TenancyAdmin(gateway.bus) as admin:
            await admin.revoke_token(_logister_token_id(admin, gateway.tokens["logister_token"]))

    run(revoke())
    wait_for_status(gateway, lambda: _event(gateway, VALID_EVENTS["log"]), 401, within_s=5.0)
    api_key = {"X-Api-Key": gateway.tokens["logister_token"]}
    assert_refused(gateway, lambda: _check_in(gateway, VALID_CHECK_IN, auth=False, headers=api_key), 401, UNAUTHORIZED)
    assert_refused(gateway, lambda: _event(gateway, VALID_EVENTS["log"]), 401, UNAUTHORIZED)


def test_tokens_of_an_archived_project_are_401_within_5_seconds(gateway: GatewayHarness) -> None:
    assert _check_in(gateway, VALID_CHECK_IN).status_code == 201

    async def archive() -> None:
        async with TenancyAdmin(gateway.bus) as admin:
            await admin.archive_project(gateway.tokens["project_id"])

    run(archive())
    wait_for_status(gateway, lambda: _check_in(gateway, VALID_CHECK_IN), 401, within_s=5.0)
    assert_refused(gateway, lambda: _event(gateway, VALID_EVENTS["error"]), 401, _unauthorized("project_archived"))


# --- Logister environment variable aliases (seed "Rate limits") -----------------------------------


def test_logister_env_vars_map_onto_our_settings() -> None:
    settings = Settings.from_env(
        {
            "LOGISTER_PUBLIC_API_RATE_LIMIT_REQUESTS": "7",
            "LOGISTER_PUBLIC_API_RATE_LIMIT_PERIOD_SECONDS": "30",
            "LOGISTER_PUBLIC_API_AUTH_FAILURE_RATE_LIMIT_REQUESTS": "5",
        }
    )
    assert settings.logister_rate_limit_requests == 7
    assert settings.logister_rate_limit_period_seconds == 30
    assert settings.auth_failure_rate_limit_requests == 5


def test_defaults_match_the_seed() -> None:
    settings = Settings.from_env({})
    assert settings.logister_rate_limit_requests == 1200
    assert settings.logister_rate_limit_period_seconds == 60
    assert settings.auth_failure_rate_limit_requests == 120


def test_forgeline_names_win_over_logister_aliases() -> None:
    settings = Settings.from_env(
        {
            "LOGISTER_PUBLIC_API_RATE_LIMIT_REQUESTS": "7",
            "FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "9",
            "LOGISTER_PUBLIC_API_RATE_LIMIT_PERIOD_SECONDS": "30",
            "FORGELINE_LOGISTER_RATE_LIMIT_PERIOD_SECONDS": "45",
            "LOGISTER_PUBLIC_API_AUTH_FAILURE_RATE_LIMIT_REQUESTS": "5",
            "FORGELINE_AUTH_FAILURE_RATE_LIMIT_REQUESTS": "6",
        }
    )
    assert settings.logister_rate_limit_requests == 9
    assert settings.logister_rate_limit_period_seconds == 45
    assert settings.auth_failure_rate_limit_requests == 6


def test_a_blank_forgeline_value_falls_back_to_the_logister_alias() -> None:
    settings = Settings.from_env(
        {"FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": " ", "LOGISTER_PUBLIC_API_RATE_LIMIT_REQUESTS": "11"}
    )
    assert settings.logister_rate_limit_requests == 11


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOGISTER_PUBLIC_API_RATE_LIMIT_REQUESTS", "lots"),
        ("LOGISTER_PUBLIC_API_RATE_LIMIT_REQUESTS", "0"),
        ("LOGISTER_PUBLIC_API_RATE_LIMIT_PERIOD_SECONDS", "-60"),
        ("LOGISTER_PUBLIC_API_AUTH_FAILURE_RATE_LIMIT_REQUESTS", "1.5"),
        ("FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS", "x"),
    ],
)
def test_a_bad_value_raises_settings_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_a_bad_forgeline_value_is_reported_even_with_a_good_alias() -> None:
    with pytest.raises(SettingsError, match="FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS"):
        Settings.from_env(
            {"FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "x", "LOGISTER_PUBLIC_API_RATE_LIMIT_REQUESTS": "7"}
        )


def test_a_gateway_configured_from_logister_env_vars_enforces_them(make_gateway: MakeGateway) -> None:
    env = Settings.from_env({"LOGISTER_PUBLIC_API_RATE_LIMIT_REQUESTS": "2"})
    gw = make_gateway(logister_rate_limit_requests=env.logister_rate_limit_requests)
    first = _event(gw, VALID_EVENTS["log"])
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert _event(gw, VALID_EVENTS["log"]).status_code == 201
    _assert_rate_limited(_event(gw, VALID_EVENTS["log"]), 2)


# --- health, readiness, metrics, OpenAPI -------------------------------------------------------


def test_health_is_200(gateway: GatewayHarness) -> None:
    response = gateway.client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_is_200_with_checks(gateway: GatewayHarness) -> None:
    response = gateway.client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "checks": {"tokens_loaded": True, "bus": True, "disk_space": True}}


def test_metrics_count_gateway_requests(gateway: GatewayHarness) -> None:
    assert _event(gateway, VALID_EVENTS["log"]).status_code == 201
    assert _event(gateway, {"event_type": "log"}).status_code == 422
    response = gateway.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "forgeline_gateway_requests_total" in text
    assert 'route="/api/v1/ingest_events"' in text
    assert 'status="201"' in text


def test_openapi_lists_both_logister_paths(gateway: GatewayHarness) -> None:
    response = gateway.client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    for path in (INGEST, CHECK_INS):
        assert "post" in doc["paths"][path]
        assert "201" in doc["paths"][path]["post"]["responses"]


# --- inputs at the edges of what Python's datetime and the columns can hold --------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (INGEST, {"event": {"event_type": "log", "message": "m", "occurred_at": "0001-01-01T00:00:00+01:00"}}),
        (INGEST, {"event": {**VALID_EVENTS["span"], "started_at": "9999-12-31T23:59:59-01:00"}}),
        (CHECK_INS, {"check_in": {**VALID_CHECK_IN, "occurred_at": "0001-01-01T00:30:00+05:00"}}),
    ],
    ids=["occurred-at-year-1", "span-started-at-year-9999", "check-in-occurred-at"],
)
def test_timestamp_at_the_edge_of_the_datetime_range_is_422_not_500(
    gateway: GatewayHarness, path: str, body: dict[str, Any]
) -> None:
    response = post(gateway, path, body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"]


@pytest.mark.parametrize("duration_ms", [1e15, 1e308], ids=["1e15", "1e308"])
def test_span_with_an_absurd_duration_is_422_not_500(gateway: GatewayHarness, duration_ms: float) -> None:
    response = _event(gateway, {**VALID_EVENTS["span"], "duration_ms": duration_ms})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "event",
    [
        {"event_type": "transaction", "message": "GET /", "context": {"status_code": 1e20}},
        {"event_type": "transaction", "message": "GET /", "status": 1e20},
    ],
    ids=["context-status-code", "top-level-status"],
)
def test_an_accepted_transaction_status_code_can_be_processed(gateway: GatewayHarness, event: dict[str, Any]) -> None:
    response = _event(gateway, event)
    if response.status_code == 201:
        process_downstream(raw_record(gateway, response.json()["id"]))
    else:
        assert response.status_code == 422
