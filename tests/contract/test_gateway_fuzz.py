"""Property-based tests of the Logister routes: whatever arrives, the answer is a JSON 4xx (or a
201 for a genuinely valid payload), never a 500, and nothing refused reaches the raw log.

One gateway per test (built once, shared by that test's examples): each example only checks
what it changed (the raw log's length before and after), so examples stay independent.
Rate limits are set out of reach so that the limiter does not mask what is being fuzzed.
"""

from __future__ import annotations

import functools
import gzip
import uuid
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from forgeline.schemas import logister
from tests.conftest import GatewayHarness
from tests.contract.logister_support import (
    CHECK_INS,
    INGEST,
    ingest_context,
    process_downstream,
    raw_count,
    raw_record,
)

pytestmark = pytest.mark.contract

FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
PATHS = st.sampled_from([INGEST, CHECK_INS])


@pytest.fixture
def gw(make_gateway: Callable[..., GatewayHarness]) -> GatewayHarness:
    return make_gateway(logister_rate_limit_requests=10**9, auth_failure_rate_limit_requests=10**9)


def _send(
    gw: GatewayHarness, path: str, content: bytes, headers: dict[str, Any] | None = None, *, auth: bool = True
) -> httpx.Response:
    sent: dict[str, Any] = {"Content-Type": "application/json"}
    if auth:
        sent.update(gw.auth)
    sent.update(headers or {})
    return gw.client.post(path, content=content, headers=sent)


def _check(gw: GatewayHarness, before: int, response: httpx.Response) -> int:
    """The invariant of every answer; returns the status."""
    status = response.status_code
    assert status != 500, response.text
    assert status == 201 or 400 <= status < 500, (status, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    after = raw_count(gw)
    if status == 201:
        assert body["status"] == "accepted"
        assert after == before + 1
        # What was accepted must also get through the normalizer and writer steps.
        process_downstream(raw_record(gw, uuid.UUID(body["id"])))
    else:
        assert after == before, f"refused with {status} but the raw log grew"
        assert "error" in body or "errors" in body
    return status


# --- strategies ------------------------------------------------------------------------------

# Numbers stay within what a real clock can add to a date: unbounded ones have their own tests below.
SAFE_FLOATS = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)
SAFE_INTS = st.integers(min_value=-(10**12), max_value=10**12)
OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-30))])
TIMESTAMPS = st.builds(
    lambda dt, tz: dt.replace(tzinfo=tz).isoformat(),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2300, 12, 31)),
    OFFSETS,
)
SCALARS = st.none() | st.booleans() | SAFE_INTS | SAFE_FLOATS | st.text(max_size=40) | TIMESTAMPS
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)

EVENT_FIELDS = [
    "event_type",
    "eventType",
    "message",
    "level",
    "fingerprint",
    "occurred_at",
    "context",
    "uuid",
    "event_id",
    "name",
    "kind",
    "span_kind",
    "trace_id",
    "traceId",
    "span_id",
    "parent_span_id",
    "duration_ms",
    "durationMs",
    "started_at",
    "ended_at",
    "environment",
    "release",
    "request_id",
    "session_id",
    "user_id",
    "transaction_name",
    "check_in_slug",
    "monitor_slug",
    "check_in_status",
    "status",
    "expected_interval_seconds",
]
CHECK_IN_FIELDS = [
    "slug",
    "status",
    "expected_interval_seconds",
    "expectedIntervalSeconds",
    "environment",
    "release",
    "duration_ms",
    "trace_id",
    "request_id",
    "occurred_at",
    "context",
    "uuid",
]
BASE_EVENTS: list[dict[str, Any]] = [
    {"event_type": "error", "message": "boom", "context": {"exception": {"class": "E"}}},
    {"event_type": "log", "message": "hello", "level": "info"},
    {"event_type": "metric", "message": "db.query", "context": {"value": 1.5}},
    {"event_type": "transaction", "message": "GET /", "duration_ms": 12},
    {"event_type": "span", "name": "GET /", "trace_id": "t", "span_id": "s", "kind": "server"},
    {"event_type": "check_in", "message": "job", "check_in_slug": "job", "check_in_status": "ok"},
]
BASE_CHECK_IN: dict[str, Any] = {"slug": "nightly", "status": "ok", "expected_interval_seconds": 900}
CONTEXT_KEYS = ["value", "metric", "unit", "duration_ms", "exception", "request", "route", "method", "status_code"]


def _expected_status(normalize: Any, raw: dict[str, Any]) -> tuple[int, list[str] | None]:
    try:
        normalize(raw, ingest_context())
    except logister.Invalid as err:
        return 422, err.errors
    return 201, None


# --- properties ------------------------------------------------------------------------------


@FUZZ
@given(path=PATHS, content=st.binary(max_size=600))
def test_random_bytes_are_a_json_4xx(gw: GatewayHarness, path: str, content: bytes) -> None:
    before = raw_count(gw)
    status = _check(gw, before, _send(gw, path, content))
    assert status in (400, 422)


@FUZZ
@given(path=PATHS, text=st.text(max_size=300))
def test_random_text_and_json_fragments_are_a_json_4xx(gw: GatewayHarness, path: str, text: str) -> None:
    before = raw_count(gw)
    for content in (text.encode(), ('{"event": ' + text).encode(), ('{"check_in": {' + text + "}}").encode()):
        status = _check(gw, before, _send(gw, path, content))
        if status == 201:
            before += 1


@FUZZ
@given(path=PATHS, doc=JSON_VALUES)
def test_random_json_documents_never_fail_the_gateway(gw: GatewayHarness, path: str, doc: Any) -> None:
    before = raw_count(gw)
    _check(gw, before, _send(gw, path, orjson.dumps(doc)))


@FUZZ
@given(path=PATHS, envelope=st.sampled_from(["event", "EVENT", "check_in", "CHECK_IN"]), inner=JSON_VALUES)
def test_random_json_inside_an_envelope_never_fails_the_gateway(
    gw: GatewayHarness, path: str, envelope: str, inner: Any
) -> None:
    before = raw_count(gw)
    _check(gw, before, _send(gw, path, orjson.dumps({envelope: inner})))


@settings(FUZZ, max_examples=120)
@given(base=st.sampled_from(BASE_EVENTS), field=st.sampled_from(EVENT_FIELDS), value=JSON_VALUES)
def test_any_value_at_any_event_field_gives_the_validators_answer(
    gw: GatewayHarness, base: dict[str, Any], field: str, value: Any
) -> None:
    event = {**base, field: value}
    expected, errors = _expected_status(logister.normalize_event, event)
    before = raw_count(gw)
    response = _send(gw, INGEST, orjson.dumps({"event": event}))
    assert _check(gw, before, response) == expected, response.text
    if errors is not None:
        assert response.json() == {"errors": errors}


@settings(FUZZ, max_examples=60)
@given(base=st.sampled_from(BASE_EVENTS), key=st.sampled_from(CONTEXT_KEYS), value=JSON_VALUES)
def test_any_value_at_any_context_field_gives_the_validators_answer(
    gw: GatewayHarness, base: dict[str, Any], key: str, value: Any
) -> None:
    context = base.get("context")
    event = {**base, "context": {**(context if isinstance(context, dict) else {}), key: value}}
    expected, errors = _expected_status(logister.normalize_event, event)
    before = raw_count(gw)
    response = _send(gw, INGEST, orjson.dumps({"event": event}))
    assert _check(gw, before, response) == expected, response.text
    if errors is not None:
        assert response.json() == {"errors": errors}


@settings(FUZZ, max_examples=60)
@given(field=st.sampled_from(CHECK_IN_FIELDS), value=JSON_VALUES)
def test_any_value_at_any_check_in_field_gives_the_validators_answer(
    gw: GatewayHarness, field: str, value: Any
) -> None:
    check_in = {**BASE_CHECK_IN, field: value}
    expected, errors = _expected_status(logister.normalize_check_in, check_in)
    if field == "uuid" and value is not None:
        # The gateway reads the client id first; an unusable one is a 422 on its own.
        try:
            uuid.UUID(str(value))
        except ValueError:
            expected, errors = 422, ["Uuid is not a valid UUID"]
    before = raw_count(gw)
    response = _send(gw, CHECK_INS, orjson.dumps({"check_in": check_in}))
    assert _check(gw, before, response) == expected, response.text
    if errors is not None:
        assert response.json() == {"errors": errors}


@settings(FUZZ, max_examples=20)
@given(
    path=PATHS,
    field=st.sampled_from(["message", "name", "trace_id", "slug", "release", "fingerprint", "context"]),
    size=st.sampled_from([255, 256, 257, 65_536, 65_537, 70_000, 1024 * 1024 + 1, 3 * 1024 * 1024]),
)
def test_huge_strings_are_201_422_or_413(gw: GatewayHarness, path: str, field: str, size: int) -> None:
    value: Any = {"blob": "x" * size} if field == "context" else "x" * size
    if path == INGEST:
        doc = {"event": {**BASE_EVENTS[4], "message": "m", field: value}}
    else:
        doc = {"check_in": {**BASE_CHECK_IN, field: value}}
    before = raw_count(gw)
    status = _check(gw, before, _send(gw, path, orjson.dumps(doc)))
    assert status in (201, 413, 422)
    if size > 1024 * 1024:
        assert status == 413


@settings(FUZZ, max_examples=30)
@given(
    path=PATHS,
    depth=st.integers(min_value=1, max_value=3000),
    kinds=st.lists(st.sampled_from(["list", "dict"]), min_size=1, max_size=4),
)
def test_deeply_nested_bodies_are_a_json_4xx_or_201(
    gw: GatewayHarness, path: str, depth: int, kinds: list[str]
) -> None:
    opening, closing = [], []
    for level in range(depth):
        if kinds[level % len(kinds)] == "list":
            opening.append(b"[")
            closing.append(b"]")
        else:
            opening.append(b'{"a":')
            closing.append(b"}")
    nested = b"".join(opening) + b"1" + b"".join(reversed(closing))
    envelope = (
        b'{"event":{"event_type":"log","message":"m","context":{"n":'
        if path == INGEST
        else b'{"check_in":{"slug":"s","context":{"n":'
    )
    content = envelope + nested + b"}}}"
    before = raw_count(gw)
    status = _check(gw, before, _send(gw, path, content))
    # document (1) → envelope (2) → context (3) → the nested containers (4 …).
    if 3 + depth > gw.settings.max_json_depth:
        assert status == 400
    else:
        assert status == 201


@functools.cache
def _bombs() -> list[tuple[str, bytes]]:
    zeros = b"\0" * (50 * 1024 * 1024)
    spaces = b'{"event": {"event_type": "log", "message": "' + b" " * (20 * 1024 * 1024) + b'"}}'
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    return [
        ("gzip", gzip.compress(zeros, compresslevel=9)),
        ("gzip", gzip.compress(spaces, compresslevel=9)),
        ("gzip", gzip.compress(b"{}") + gzip.compress(zeros, compresslevel=9)),
        ("deflate", zlib.compress(zeros, 9)),
        ("deflate", raw.compress(zeros) + raw.flush()),
    ]


@settings(FUZZ, max_examples=15)
@given(path=PATHS, index=st.integers(min_value=0, max_value=4), cut=st.integers(min_value=0, max_value=200))
def test_compression_bombs_and_truncations_are_a_json_4xx(gw: GatewayHarness, path: str, index: int, cut: int) -> None:
    encoding, bomb = _bombs()[index]
    before = raw_count(gw)
    status = _check(gw, before, _send(gw, path, bomb, {"Content-Encoding": encoding}))
    assert status == 413
    truncated = bomb[: max(len(bomb) - cut - 1, 0)]
    assert _check(gw, before, _send(gw, path, truncated, {"Content-Encoding": encoding})) in (400, 413)


@FUZZ
@given(
    path=PATHS,
    encoding=st.sampled_from(["gzip", "deflate", "x-gzip", "identity", ""]),
    payload=st.sampled_from(BASE_EVENTS) | JSON_VALUES,
    flip=st.integers(min_value=0, max_value=10_000),
)
def test_compressed_random_payloads_with_a_flipped_byte(
    gw: GatewayHarness, path: str, encoding: str, payload: Any, flip: int
) -> None:
    doc = orjson.dumps({"event": payload} if path == INGEST else {"check_in": payload})
    if encoding in ("gzip", "x-gzip"):
        body = bytearray(gzip.compress(doc))
    elif encoding == "deflate":
        body = bytearray(zlib.compress(doc))
    else:
        body = bytearray(doc)
    body[flip % len(body)] ^= 0xFF
    before = raw_count(gw)
    _check(gw, before, _send(gw, path, bytes(body), {"Content-Encoding": encoding}))


HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"))


@FUZZ
@given(
    path=PATHS,
    token=HEADER_TEXT,
    header=st.sampled_from(["Authorization", "X-Api-Key", "authorization"]),
    scheme=st.sampled_from(["Bearer ", "bearer ", "Basic ", "", "Bearer\t"]),
)
def test_random_bad_tokens_are_401(gw: GatewayHarness, path: str, token: str, header: str, scheme: str) -> None:
    value = (scheme + token) if header.lower() == "authorization" else token
    doc = {"event": BASE_EVENTS[1]} if path == INGEST else {"check_in": BASE_CHECK_IN}
    before = raw_count(gw)
    response = _send(gw, path, orjson.dumps(doc), {header: value.encode("latin-1")}, auth=False)
    assert _check(gw, before, response) == 401
    body = response.json()
    assert body["error"] == "Unauthorized" and set(body) == {"error", "code"}
    assert body["code"] in ("missing_token", "malformed_token", "invalid_token", "wrong_token_kind")


TOKEN_CHARS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=20
)
RESERVED = {
    "content-length",
    "content-type",
    "content-encoding",
    "host",
    "transfer-encoding",
    "authorization",
    "x-api-key",
}


@settings(FUZZ, max_examples=60)
@given(
    path=PATHS,
    extra=st.dictionaries(
        TOKEN_CHARS.filter(lambda n: n.lower() not in RESERVED),
        HEADER_TEXT.map(lambda v: v.strip()),
        max_size=5,
    ),
    content_type=st.none() | st.sampled_from(["application/json", "text/plain", "application/msgpack"]) | HEADER_TEXT,
    content_encoding=st.none() | st.sampled_from(["gzip", "deflate", "identity", "br"]) | HEADER_TEXT,
)
def test_random_headers_on_a_valid_payload_are_201_or_a_json_4xx(
    gw: GatewayHarness,
    path: str,
    extra: dict[str, str],
    content_type: str | None,
    content_encoding: str | None,
) -> None:
    headers: dict[str, Any] = {k: v.encode("latin-1") for k, v in extra.items()}
    if content_type is not None:
        headers["Content-Type"] = content_type.encode("latin-1")
    if content_encoding is not None:
        headers["Content-Encoding"] = content_encoding.encode("latin-1")
    doc = orjson.dumps({"event": BASE_EVENTS[0]} if path == INGEST else {"check_in": BASE_CHECK_IN})
    before = raw_count(gw)
    sent = {k.lower(): v for k, v in headers.items()}
    ctype = sent.get("content-type", b"application/json").decode("latin-1").split(";")[0].strip().lower()
    encoding = sent.get("content-encoding", b"").decode("latin-1").strip().lower()
    status = _check(gw, before, _send(gw, path, doc, headers))
    json_ok = ctype in ("", "application/json", "text/json", "text/plain") or ctype.endswith("+json")
    if not json_ok:
        assert status == 415
    elif encoding in ("", "identity"):
        assert status == 201
    elif encoding in ("gzip", "x-gzip", "deflate"):
        assert status == 400  # the body was not actually compressed
    else:
        assert status == 415


# --- known bugs: the same properties with unbounded numbers and timestamps --------------------------


@settings(FUZZ, max_examples=10)
@given(duration=st.floats(min_value=0, allow_nan=False, allow_infinity=False))
@example(duration=1e308)
def test_any_span_duration_is_201_or_422(gw: GatewayHarness, duration: float) -> None:
    before = raw_count(gw)
    response = _send(gw, INGEST, orjson.dumps({"event": {**BASE_EVENTS[4], "duration_ms": duration}}))
    assert _check(gw, before, response) in (201, 422)


@settings(FUZZ, max_examples=10)
@given(when=st.datetimes(), tz=OFFSETS)
@example(when=datetime(1, 1, 1), tz=timezone(timedelta(hours=14)))
def test_any_iso_timestamp_is_201_or_422(gw: GatewayHarness, when: datetime, tz: timezone) -> None:
    before = raw_count(gw)
    occurred_at = when.replace(tzinfo=tz).isoformat()
    response = _send(gw, INGEST, orjson.dumps({"event": {**BASE_EVENTS[1], "occurred_at": occurred_at}}))
    assert _check(gw, before, response) in (201, 422)


def test_timestamps_strategy_stays_inside_datetime_range() -> None:
    # Guard for the strategies above: offsets applied to 1900..2300 never overflow.
    for tz in (timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-30))):
        datetime(1900, 1, 1, tzinfo=tz).astimezone(UTC)
        datetime(2300, 12, 31, 23, 59, tzinfo=tz).astimezone(UTC)
