"""forgeline.schemas.logister / common: the Logister wire format → typed records, as pure functions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from forgeline.ids import legacy_id
from forgeline.schemas.common import humanize, json_depth_exceeds, parse_timestamp, snake_case, snake_keys, to_millis
from forgeline.schemas.logister import (
    DEFAULT_EXPECTED_INTERVAL_SECONDS,
    IngestContext,
    Invalid,
    MissingEnvelope,
    client_event_id,
    extract_envelope,
    normalize_check_in,
    normalize_event,
)
from forgeline.schemas.records import CHECK_IN, ERROR, LOG, METRIC, SPAN, TRANSACTION

pytestmark = pytest.mark.unit

RECEIVED = datetime(2026, 5, 22, 12, 0, tzinfo=UTC)
EVENT_ID = uuid.UUID("0f0e0d0c-0b0a-4908-8706-050403020100")


def ctx(event_id: uuid.UUID = EVENT_ID, environment: str = "production") -> IngestContext:
    return IngestContext(
        event_id=event_id,
        organisation_id="org-1",
        project_id="proj-1",
        default_environment=environment,
        received_at=RECEIVED,
    )


def event(**fields: Any) -> dict[str, Any]:
    kind, record = normalize_event(fields, ctx())
    record["_kind"] = kind
    return record


def errors_of(fields: dict[str, Any], check_in: bool = False) -> list[str]:
    with pytest.raises(Invalid) as info:
        (normalize_check_in if check_in else normalize_event)(fields, ctx())
    return info.value.errors


# --- snake_case / snake_keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("eventType", "event_type"),
        ("traceId", "trace_id"),
        ("durationMs", "duration_ms"),
        ("transactionName", "transaction_name"),
        ("requestId", "request_id"),
        ("parentSpanId", "parent_span_id"),
        ("expectedIntervalSeconds", "expected_interval_seconds"),
        ("checkInSlug", "check_in_slug"),
        ("EventType", "event_type"),
        ("traceID", "trace_id"),
        ("event_type", "event_type"),
        ("message", "message"),
        ("EVENT", "event"),
        ("uuid", "uuid"),
        ("", ""),
    ],
)
def test_snake_case(key: str, expected: str) -> None:
    assert snake_case(key) == expected


def test_snake_case_leaves_keys_with_underscores_alone() -> None:
    assert snake_case("event_Type") == "event_Type"
    assert snake_case("trace_ID") == "trace_ID"


def test_snake_keys_converts_top_level_keys_only() -> None:
    doc = {"eventType": "log", "context": {"traceId": "t"}, "message": "m"}
    assert snake_keys(doc) == {"event_type": "log", "context": {"traceId": "t"}, "message": "m"}


@pytest.mark.parametrize(
    "doc",
    [{"traceId": "camel", "trace_id": "snake"}, {"trace_id": "snake", "traceId": "camel"}],
    ids=["camel-first", "snake-first"],
)
def test_snake_keys_prefers_the_snake_spelling_whichever_comes_first(doc: dict[str, Any]) -> None:
    assert snake_keys(doc) == {"trace_id": "snake"}


def test_snake_keys_does_not_modify_its_input() -> None:
    doc = {"eventType": "log"}
    snake_keys(doc)
    assert doc == {"eventType": "log"}


def test_humanize_gives_rails_style_attribute_names() -> None:
    assert humanize("event_type") == "Event type"
    assert humanize("expected_interval_seconds") == "Expected interval seconds"
    assert humanize("uuid") == "Uuid"


# --- parse_timestamp -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-02-14T12:00:00Z", datetime(2026, 2, 14, 12, tzinfo=UTC)),
        ("2026-02-14T12:00:00+00:00", datetime(2026, 2, 14, 12, tzinfo=UTC)),
        ("2026-02-14T14:30:00+02:30", datetime(2026, 2, 14, 12, tzinfo=UTC)),
        ("2026-02-14T07:00:00-05:00", datetime(2026, 2, 14, 12, tzinfo=UTC)),
        ("2026-02-14T12:00:00", datetime(2026, 2, 14, 12, tzinfo=UTC)),  # naive: taken as UTC
        ("2026-02-14T12:00:00.250Z", datetime(2026, 2, 14, 12, 0, 0, 250_000, tzinfo=UTC)),
        ("2026-02-14", datetime(2026, 2, 14, tzinfo=UTC)),
        ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),
        ("2200-12-31T23:59:59Z", datetime(2200, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_accepts_iso_8601_and_returns_aware_utc(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value",
    [
        None,
        1_700_000_000,
        1.5,
        True,
        ["2026-02-14T12:00:00Z"],
        {"at": "2026-02-14T12:00:00Z"},
        "",
        "yesterday",
        "2026-02-30T00:00:00Z",
        "2026-13-01",
        "26-02-14",  # shorter than a date
        "2026-02-14T12:00:00Z" + " " * 60,  # longer than 64 characters
        "1969-12-31T23:59:59Z",
        "1970-01-01T05:00:00+06:00",  # 1969 in UTC
        "2201-01-01T00:00:00Z",
        "Sat, 14 Feb 2026 12:00:00 GMT",
    ],
)
def test_parse_timestamp_rejects_what_is_not_a_usable_timestamp(value: object) -> None:
    assert parse_timestamp(value) is None


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_parse_timestamp_returns_none_at_the_edges_of_datetime(text: str) -> None:
    assert parse_timestamp(text) is None


def test_to_millis() -> None:
    assert to_millis(datetime(1970, 1, 1, 0, 0, 1, 500_000, tzinfo=UTC)) == 1500


# --- json_depth_exceeds ---------------------------------------------------------------------------


def _nest(depth: int, container: str = "dict") -> Any:
    doc: Any = 1
    for level in range(depth):
        if container == "dict" or (container == "mixed" and level % 2):
            doc = {"a": doc}
        else:
            doc = [doc]
    return doc


@pytest.mark.parametrize("container", ["dict", "list", "mixed"])
def test_json_depth_exceeds_counts_nested_containers(container: str) -> None:
    doc = _nest(5, container)
    assert not json_depth_exceeds(doc, 5)
    assert json_depth_exceeds(doc, 4)


def test_json_depth_of_scalars_and_empty_containers() -> None:
    assert not json_depth_exceeds("text", 0)
    assert not json_depth_exceeds(None, 1)
    assert not json_depth_exceeds({}, 1)
    assert json_depth_exceeds({}, 0)
    assert json_depth_exceeds([], 0)


def test_json_depth_looks_at_every_branch() -> None:
    doc = {"shallow": 1, "list": [1, 2, {"deep": [[[]]]}], "other": {}}
    # doc (1) → list (2) → {"deep"} (3) → [ (4) → [ (5) → [ (6)
    assert not json_depth_exceeds(doc, 6)
    assert json_depth_exceeds(doc, 5)


def test_json_depth_handles_documents_deeper_than_the_recursion_limit() -> None:
    doc = _nest(5_000, "list")  # five times Python's default recursion limit
    assert json_depth_exceeds(doc, 32) is True
    assert json_depth_exceeds(doc, 5_000) is False


# --- envelopes and client ids -----------------------------------------------------------------------


def test_extract_envelope_takes_either_spelling() -> None:
    inner = {"event_type": "log"}
    assert extract_envelope({"event": inner}, ("event", "EVENT")) is inner
    assert extract_envelope({"EVENT": inner}, ("event", "EVENT")) is inner
    assert extract_envelope({"event": "x", "EVENT": inner}, ("event", "EVENT")) is inner


@pytest.mark.parametrize(
    "doc",
    [None, [], [{"event": {"a": 1}}], "event", {}, {"event": {}}, {"event": []}, {"event": "x"}, {"Event": {"a": 1}}],
)
def test_extract_envelope_missing_names_the_canonical_key(doc: object) -> None:
    with pytest.raises(MissingEnvelope, match="^param is missing or the value is empty: event$"):
        extract_envelope(doc, ("event", "EVENT"))


def test_client_event_id() -> None:
    value = uuid.uuid4()
    assert client_event_id({"uuid": str(value)}) == value
    assert client_event_id({"event_id": str(value)}) == value
    assert client_event_id({"uuid": str(value).upper()}) == value
    assert client_event_id({}) is None
    assert client_event_id({"uuid": None}) is None
    with pytest.raises(Invalid) as info:
        client_event_id({"uuid": "nope"})
    assert info.value.errors == ["Uuid is not a valid UUID"]


# --- normalize_event: identity and common fields ----------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [("error", ERROR), ("log", LOG), ("metric", METRIC), ("transaction", TRANSACTION)],
)
def test_every_column_of_the_kind_is_present(event_type: str, kind: Any) -> None:
    record = event(event_type=event_type, message="m")
    assert record.pop("_kind") is kind
    assert set(kind.column_names) <= set(record)


def test_span_and_check_in_records_have_every_column() -> None:
    span = event(event_type="span", name="n", trace_id="t", span_id="s")
    assert span.pop("_kind") is SPAN
    assert set(SPAN.column_names) <= set(span)
    check_in = event(event_type="check_in", message="m", check_in_slug="job")
    assert check_in.pop("_kind") is CHECK_IN
    assert set(CHECK_IN.column_names) <= set(check_in)
    _, direct = normalize_check_in({"slug": "job"}, ctx())
    assert set(CHECK_IN.column_names) <= set(direct)


def test_identity_fields_come_from_the_ingest_context() -> None:
    record = event(event_type="log", message="m")
    assert record["event_id"] == str(EVENT_ID)
    assert record["organisation_id"] == "org-1"
    assert record["project_id"] == "proj-1"
    assert record["received_at"] == to_millis(RECEIVED)


def test_legacy_id_is_deterministic_from_the_event_id() -> None:
    first = normalize_event({"event_type": "log", "message": "a"}, ctx())[1]["legacy_id"]
    second = normalize_event({"event_type": "error", "message": "b"}, ctx())[1]["legacy_id"]
    assert first == second == legacy_id(EVENT_ID) == int.from_bytes(EVENT_ID.bytes[:6], "big")
    assert 0 <= first < 2**48  # exact in a JavaScript number
    other = uuid.UUID("ffeeddcc-bbaa-4998-8776-655443322110")
    assert normalize_event({"event_type": "log", "message": "a"}, ctx(other))[1]["legacy_id"] == legacy_id(other)
    assert legacy_id(other) != first


def test_check_in_legacy_id_is_deterministic_too() -> None:
    assert normalize_check_in({"slug": "job"}, ctx())[1]["legacy_id"] == legacy_id(EVENT_ID)


@pytest.mark.parametrize(
    ("event_type", "level"),
    [("error", "error"), ("log", "info"), ("metric", "info"), ("transaction", "info"), ("span", "info")],
)
def test_default_level_is_error_for_errors_else_info(event_type: str, level: str) -> None:
    fields: dict[str, Any] = {"event_type": event_type, "message": "m", "trace_id": "t", "span_id": "s"}
    assert event(**fields)["level"] == level


def test_level_is_kept_lowercased() -> None:
    assert event(event_type="error", message="m", level="FATAL")["level"] == "fatal"
    assert event(event_type="log", message="m", level="warn")["level"] == "warn"


def test_occurred_at_defaults_to_received_at() -> None:
    assert event(event_type="log", message="m")["occurred_at"] == to_millis(RECEIVED)
    assert normalize_check_in({"slug": "job"}, ctx())[1]["occurred_at"] == to_millis(RECEIVED)


def test_occurred_at_when_sent() -> None:
    record = event(event_type="log", message="m", occurred_at="2026-02-14T12:00:00Z")
    assert record["occurred_at"] == to_millis(datetime(2026, 2, 14, 12, tzinfo=UTC))


def test_environment_from_context_or_top_level_else_the_tokens() -> None:
    assert event(event_type="log", message="m")["environment"] == "production"
    assert event(event_type="log", message="m", environment="staging")["environment"] == "staging"
    record = event(event_type="log", message="m", environment="staging", context={"environment": "qa"})
    assert record["environment"] == "qa"


def test_camel_case_fields_are_normalized() -> None:
    record = event(
        eventType="transaction",
        message="GET /",
        traceId="t-1",
        requestId="r-1",
        sessionId="s-1",
        userId=42,
        transactionName="Home#index",
        durationMs=12.5,
    )
    assert record["_kind"] is TRANSACTION
    assert (record["trace_id"], record["request_id"], record["session_id"], record["user_id"]) == (
        "t-1",
        "r-1",
        "s-1",
        "42",
    )
    assert record["transaction_name"] == "Home#index"
    assert record["duration_ms"] == 12.5


def test_convenience_fields_are_copied_into_context_unless_set() -> None:
    record = event(
        event_type="error",
        message="m",
        release="1.0",
        traceId="t-1",
        request_id="top",
        context={"request_id": "inner", "user_id": None},
        user_id=7,
        not_a_convenience_field="dropped",
    )
    context = orjson.loads(record["context"])
    assert context == {"request_id": "inner", "user_id": 7, "release": "1.0", "trace_id": "t-1"}


def test_context_is_a_json_string_and_input_is_not_modified() -> None:
    raw = {"event_type": "log", "message": "m", "trace_id": "t", "context": {"nested": {"a": [1, 2]}}}
    record = event(**raw)
    assert orjson.loads(record["context"]) == {"nested": {"a": [1, 2]}, "trace_id": "t"}
    assert raw["context"] == {"nested": {"a": [1, 2]}}


def test_every_problem_is_reported_together() -> None:
    assert errors_of({"event_type": "nope", "occurred_at": "x", "context": 1, "level": 5 * "xxxxxxxx"}) == [
        "Event type is not included in the list",
        "Context must be an object",
        "Message can't be blank",
        "Level is too long (maximum is 32 characters)",
        "Occurred at is not a valid ISO 8601 timestamp",
    ]


def test_numbers_are_accepted_where_strings_are_expected() -> None:
    record = event(event_type="log", message=404, trace_id=123)
    assert (record["message"], record["trace_id"]) == ("404", "123")


@pytest.mark.parametrize("value", [True, [1], {"a": 1}])
def test_non_scalar_strings_are_refused(value: Any) -> None:
    assert errors_of({"event_type": "log", "message": value}) == ["Message must be a string"]


# --- errors and logs ---------------------------------------------------------------------------------


def test_error_fingerprint_falls_back_to_the_first_message_line() -> None:
    record = event(event_type="error", message="  NoMethodError: undefined method  \n  from app.rb:3\n")
    assert record["fingerprint"] == "NoMethodError: undefined method"


def test_error_fingerprint_fallback_is_capped() -> None:
    assert event(event_type="error", message="x" * 1000)["fingerprint"] == "x" * 256


def test_explicit_fingerprint_wins() -> None:
    assert event(event_type="error", message="boom", fingerprint="checkout")["fingerprint"] == "checkout"


def test_log_fingerprint_has_no_fallback() -> None:
    assert event(event_type="log", message="hello")["fingerprint"] == ""
    assert event(event_type="log", message="hello", fingerprint="f")["fingerprint"] == "f"


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"exception": {"class": "NoMethodError", "message": "x"}}, "NoMethodError"),
        ({"exception": {"type": "ValueError"}}, "ValueError"),
        ({"exception": {"class": "A", "type": "B"}}, "A"),
        ({"exception": "NoMethodError"}, ""),
        ({}, ""),
    ],
)
def test_exception_class_from_context(context: dict[str, Any], expected: str) -> None:
    assert event(event_type="error", message="m", context=context)["exception_class"] == expected


# --- metrics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "value", "unit"),
    [
        ({"value": 3.5}, 3.5, ""),
        ({"value": 2, "unit": "ms"}, 2.0, "ms"),
        ({"metric": {"value": 7, "unit": "queries"}}, 7.0, "queries"),
        ({"value": 1, "metric": {"value": 9}}, 1.0, ""),
        ({"value": "2.5"}, 2.5, ""),
        ({}, None, ""),
    ],
    ids=["value", "value-unit", "metric-value", "value-wins", "numeric-string", "none"],
)
def test_metric_value_and_unit(context: dict[str, Any], value: float | None, unit: str) -> None:
    record = event(event_type="metric", message="db.query", context=context)
    assert record["name"] == "db.query"
    assert record["value"] == value
    assert record["unit"] == unit


@pytest.mark.parametrize("bad", ["lots", True, [1], "inf", "nan"])
def test_metric_value_must_be_a_number(bad: Any) -> None:
    assert errors_of({"event_type": "metric", "message": "m", "context": {"value": bad}}) == ["Value is not a number"]


def test_metric_duration_from_convenience_field() -> None:
    assert event(event_type="metric", message="db.query", duration_ms=3)["duration_ms"] == 3.0


# --- transactions ------------------------------------------------------------------------------


def test_transaction_name_falls_back_to_the_message() -> None:
    assert event(event_type="transaction", message="GET /checkout")["transaction_name"] == "GET /checkout"
    record = event(event_type="transaction", message="GET /checkout", transaction_name="Checkout#show")
    assert record["transaction_name"] == "Checkout#show"


def test_transaction_request_fields() -> None:
    record = event(
        event_type="transaction",
        message="m",
        context={"request": {"method": "POST", "route": "POST /checkout"}, "status_code": 201},
    )
    assert (record["method"], record["route"], record["status_code"]) == ("POST", "POST /checkout", 201)
    top = event(event_type="transaction", message="m", status=503, context={"route": "/r", "method": "GET"})
    assert (top["method"], top["route"], top["status_code"]) == ("GET", "/r", 503)
    assert event(event_type="transaction", message="m")["status_code"] is None
    assert event(event_type="transaction", message="m", duration_ms=None)["duration_ms"] is None


def test_every_record_normalize_event_accepts_is_serialisable() -> None:
    try:
        _, record = normalize_event(
            {"event_type": "transaction", "message": "m", "context": {"status_code": 1e20}}, ctx()
        )
    except Invalid:
        return
    orjson.dumps(record)


# --- spans --------------------------------------------------------------------------------------


def span(**fields: Any) -> dict[str, Any]:
    return event(event_type="span", trace_id="t", span_id="s", **fields)


def test_span_kind_defaults_to_internal() -> None:
    assert span(name="n")["kind"] == "internal"


@pytest.mark.parametrize(
    "kind", ["server", "browser", "db", "render", "http", "cache", "queue", "resource", "app", "internal"]
)
def test_every_seed_span_kind_is_accepted(kind: str) -> None:
    assert span(name="n", kind=kind)["kind"] == kind


def test_span_kind_from_span_kind_field() -> None:
    assert span(name="n", spanKind="db")["kind"] == "db"
    assert span(name="n", kind="http", span_kind="db")["kind"] == "http"


def test_a_blank_span_kind_means_internal() -> None:
    assert span(name="n", kind="")["kind"] == "internal"


@pytest.mark.parametrize("kind", ["SERVER", "database", "client", 3])
def test_unknown_span_kinds_are_refused(kind: Any) -> None:
    fields = {"event_type": "span", "name": "n", "trace_id": "t", "span_id": "s", "kind": kind}
    assert errors_of(fields) == ["Kind is not included in the list"]


def test_span_name_falls_back_to_message() -> None:
    assert span(message="SELECT 1")["name"] == "SELECT 1"
    assert span(name="n", message="m")["name"] == "n"
    assert "message" not in span(name="n")


def test_span_ended_at_is_started_at_plus_duration() -> None:
    record = span(name="n", started_at="2026-05-22T12:00:00Z", duration_ms=245.7)
    started = to_millis(datetime(2026, 5, 22, 12, tzinfo=UTC))
    assert record["started_at"] == started
    assert record["ended_at"] == started + 245
    assert record["duration_ms"] == 245.7
    assert record["occurred_at"] == started  # no occurred_at: the span's start


def test_span_duration_is_derived_from_ended_at() -> None:
    record = span(name="n", started_at="2026-05-22T12:00:00Z", ended_at="2026-05-22T12:00:01.5Z")
    assert record["duration_ms"] == 1500.0
    assert record["ended_at"] - record["started_at"] == 1500


def test_span_ending_before_it_starts_has_zero_duration() -> None:
    assert span(name="n", started_at="2026-05-22T12:00:01Z", ended_at="2026-05-22T12:00:00Z")["duration_ms"] == 0.0


def test_span_without_timing_starts_at_occurred_at_or_receipt() -> None:
    received = span(name="n")
    assert received["started_at"] == received["ended_at"] == to_millis(RECEIVED)
    assert received["duration_ms"] == 0.0
    occurred = span(name="n", occurred_at="2026-01-01T00:00:00Z")
    assert occurred["started_at"] == to_millis(datetime(2026, 1, 1, tzinfo=UTC))


def test_span_fields() -> None:
    record = span(
        name="GET /",
        parentSpanId="root",
        status="ok",
        context={"service": "checkout-api", "route": "GET /"},
    )
    assert (record["span_id"], record["parent_span_id"], record["status"]) == ("s", "root", "ok")
    assert (record["service"], record["route"]) == ("checkout-api", "GET /")


def test_span_requires_trace_and_span_ids_but_not_message() -> None:
    assert errors_of({"event_type": "span", "name": "n"}) == ["Span id can't be blank", "Trace id can't be blank"]
    assert span(name="n")["name"] == "n"


@pytest.mark.parametrize("duration", [1e15, 1e308])
def test_span_with_an_absurd_duration_is_invalid(duration: float) -> None:
    with pytest.raises(Invalid):
        normalize_event(
            {"event_type": "span", "name": "n", "trace_id": "t", "span_id": "s", "duration_ms": duration}, ctx()
        )


# --- check-ins -------------------------------------------------------------------------------------


def test_check_in_defaults() -> None:
    kind, record = normalize_check_in({"slug": "nightly"}, ctx())
    assert kind is CHECK_IN
    assert record["slug"] == "nightly"
    assert record["status"] == "ok"
    assert record["expected_interval_seconds"] == DEFAULT_EXPECTED_INTERVAL_SECONDS == 300
    assert record["environment"] == "production"
    assert record["duration_ms"] is None
    assert record["source"] == "check_ins"
    assert record["release"] == record["trace_id"] == record["request_id"] == ""


def test_check_in_fields() -> None:
    _, record = normalize_check_in(
        {
            "slug": "nightly-reconcile",
            "status": "error",
            "expectedIntervalSeconds": "900",
            "environment": "staging",
            "release": "2026.03.02",
            "durationMs": 1234.5,
            "traceId": "t",
            "requestId": "r",
            "occurredAt": "2026-02-14T12:00:00Z",
        },
        ctx(),
    )
    assert (record["status"], record["expected_interval_seconds"], record["environment"]) == ("error", 900, "staging")
    assert (record["release"], record["duration_ms"], record["trace_id"], record["request_id"]) == (
        "2026.03.02",
        1234.5,
        "t",
        "r",
    )
    assert record["occurred_at"] == to_millis(datetime(2026, 2, 14, 12, tzinfo=UTC))
    assert orjson.loads(record["context"])["release"] == "2026.03.02"


BAD_INTERVAL = "Expected interval seconds must be a positive whole number of seconds"


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({}, ["Slug can't be blank"]),
        ({"slug": "  "}, ["Slug can't be blank"]),
        ({"slug": "s", "status": "missed"}, ["Status is not included in the list"]),
        ({"slug": "s", "expected_interval_seconds": 0}, [BAD_INTERVAL]),
        ({"slug": "s", "expected_interval_seconds": 0.5}, [BAD_INTERVAL]),
        ({"slug": "s", "expected_interval_seconds": 367 * 86400}, [BAD_INTERVAL]),
        ({"slug": "s", "expected_interval_seconds": "weekly"}, ["Expected interval seconds is not a number"]),
        ({"slug": "s", "context": []}, ["Context must be an object"]),
    ],
    ids=[
        "missing-slug",
        "blank-slug",
        "bad-status",
        "zero-interval",
        "fractional-interval",
        "over-a-year",
        "text",
        "context",
    ],
)
def test_check_in_validation(fields: dict[str, Any], errors: list[str]) -> None:
    assert errors_of(fields, check_in=True) == errors


def test_check_in_interval_accepts_a_whole_float() -> None:
    assert (
        normalize_check_in({"slug": "s", "expected_interval_seconds": 60.0}, ctx())[1]["expected_interval_seconds"]
        == 60
    )


@pytest.mark.parametrize(
    ("fields", "slug"),
    [
        ({"check_in_slug": "a"}, "a"),
        ({"monitor_slug": "b"}, "b"),
        ({"check_in_slug": "a", "monitor_slug": "b"}, "a"),
        ({"checkInSlug": "c"}, "c"),
        ({"context": {"check_in_slug": "d"}}, "d"),
        ({"monitorSlug": "e", "context": {"check_in_slug": ""}}, "e"),
    ],
    ids=["check-in-slug", "monitor-slug", "check-in-slug-wins", "camel", "in-context", "blank-falls-through"],
)
def test_check_in_event_slug_derivation(fields: dict[str, Any], slug: str) -> None:
    record = event(event_type="check_in", message="m", **fields)
    assert record["_kind"] is CHECK_IN
    assert record["slug"] == slug


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({}, "ok"),
        ({"check_in_status": "error"}, "error"),
        ({"status": "error"}, "error"),
        ({"check_in_status": "ok", "status": "error"}, "ok"),
        ({"checkInStatus": "error"}, "error"),
    ],
    ids=["default", "check-in-status", "status", "check-in-status-wins", "camel"],
)
def test_check_in_event_status_derivation(fields: dict[str, Any], status: str) -> None:
    assert event(event_type="check_in", message="m", check_in_slug="s", **fields)["status"] == status


def test_check_in_event_record_shape() -> None:
    record = event(
        event_type="check_in", message="m", check_in_slug="s", expected_interval_seconds=60, duration_ms=5, release="r"
    )
    assert record["source"] == "ingest_events"
    assert record["expected_interval_seconds"] == 60
    assert record["duration_ms"] == 5.0
    assert record["release"] == "r"
    for dropped in ("level", "message", "session_id", "user_id"):
        assert dropped not in record
    assert event(event_type="check_in", message="m", check_in_slug="s")["expected_interval_seconds"] == 300


def test_check_in_event_requires_a_slug_and_a_known_status() -> None:
    assert errors_of({"event_type": "check_in", "message": "m", "check_in_status": "late"}) == [
        "Check in slug can't be blank",
        "Check in status is not included in the list",
    ]


def test_received_at_offsets_do_not_matter() -> None:
    shifted = IngestContext(EVENT_ID, "o", "p", "production", RECEIVED.astimezone(timezone(timedelta(hours=5))))
    assert normalize_event({"event_type": "log", "message": "m"}, shifted)[1]["received_at"] == to_millis(RECEIVED)
