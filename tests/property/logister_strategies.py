"""Hypothesis strategies of Logister events (not a test module): valid ones of every type, and
events in the fast path's common shape with values valid or not."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

TEXT = st.text(string.ascii_letters + string.digits + " -_.:/é", max_size=24)
WORD = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=16)
NUMBER = st.one_of(st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6, allow_nan=False))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
TIMESTAMP = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2199, 1, 1), timezones=st.just(UTC)).map(
    lambda at: at.isoformat()
)
CONTEXT_EXTRA = st.dictionaries(
    WORD.filter(lambda k: k not in ("environment", "release", "trace_id", "status", "kind", "span_kind")),
    st.one_of(SCALAR, st.dictionaries(WORD, SCALAR, max_size=3), st.lists(SCALAR, max_size=3)),
    max_size=4,
)


@st.composite
def valid_event(draw: st.DrawFn) -> dict[str, Any]:
    """A valid ``event`` envelope content of any type (without its uuid)."""
    event_type = draw(st.sampled_from(["error", "log", "metric", "transaction", "span", "check_in"]))
    context: dict[str, Any] = draw(CONTEXT_EXTRA)
    event: dict[str, Any] = {"event_type": event_type, "message": draw(WORD)}
    if draw(st.booleans()):
        event["level"] = draw(st.sampled_from(["info", "warning", "ERROR", "debug"]))
    if draw(st.booleans()):
        event["occurred_at"] = draw(TIMESTAMP)
    for field in ("environment", "release", "trace_id", "request_id", "user_id"):
        where = draw(st.sampled_from(["none", "context", "top"]))
        if where != "none":
            (context if where == "context" else event)[field] = draw(WORD)
    if event_type == "error" and draw(st.booleans()):
        context["exception"] = {"class": draw(WORD), "message": draw(TEXT)}
        event["fingerprint"] = draw(WORD)
    elif event_type == "metric":
        context["value"] = draw(NUMBER)
        context["unit"] = draw(st.sampled_from(["ms", "", "bytes"]))
    elif event_type == "transaction":
        context["duration_ms"] = draw(st.floats(0, 1e5))
        context["status_code"] = draw(st.integers(100, 599))
        context["route"] = draw(WORD)
    elif event_type == "span":
        context["trace_id"] = draw(WORD)
        context["span_id"] = draw(WORD)
        context["kind"] = draw(st.sampled_from(["server", "db", "http", "internal"]))
        context["duration_ms"] = draw(st.floats(0, 1e5))
    elif event_type == "check_in":
        context["check_in_slug"] = draw(WORD)
        context["check_in_status"] = draw(st.sampled_from(["ok", "error"]))
    if context or draw(st.booleans()):
        event["context"] = context
    return event


# Each makes any valid event invalid (whatever its type), with one error message.
INVALID_CHANGES: list[dict[str, Any]] = [
    {"event_type": "nonsense"},
    {"occurred_at": "yesterday-ish"},
    {"context": {"environment": "x" * 300}},
    {"level": "l" * 40},
]


@st.composite
def common_shape_event(draw: st.DrawFn) -> dict[str, Any]:
    """An error or log in the fast path's common shape, each rule's value valid or not: the
    fast path must agree exactly with the full validator on these."""
    short = st.one_of(st.none(), st.just(""), WORD, st.just("s" * 256), st.just("s" * 257))
    short_at_top = st.one_of(st.none(), st.just(""), WORD, st.just("s" * 256))
    event: dict[str, Any] = {
        "event_type": draw(st.sampled_from(["error", "log"])),
        "message": draw(st.one_of(WORD, st.just(""), st.just(" \t"), TEXT)),
    }
    optional = {
        "level": st.one_of(st.none(), st.just(""), WORD, st.just("L" * 32), st.just("L" * 33)),
        "fingerprint": short,
        "occurred_at": st.one_of(st.none(), st.just(""), TIMESTAMP, st.just("not a time"), st.just("2026-13-01")),
        # Top level, a value over 256 falls back even where context overrides it (valid there).
        "environment": short_at_top,
        "release": short_at_top,
        "user_id": short_at_top,
        "duration_ms": SCALAR,
        "span_id": SCALAR,
    }
    for field, values in optional.items():
        if draw(st.booleans()):
            event[field] = draw(values)
    if draw(st.booleans()):
        context: dict[str, Any] = draw(CONTEXT_EXTRA)
        for field in ("environment", "trace_id", "session_id"):
            if draw(st.booleans()):
                context[field] = draw(short)
        event["context"] = context
    return event


@st.composite
def any_shape_event(draw: st.DrawFn) -> dict[str, Any]:
    """Anything an envelope might hold: other types, camelCase or unknown keys, ints and
    objects where strings belong, deep nesting. Only the one-way property holds here."""
    base: dict[str, Any] = draw(st.one_of(valid_event(), common_shape_event()))
    extra = draw(
        st.dictionaries(
            st.sampled_from(["eventType", "EVENT_TYPE", "Message", "unknown", "environment", "uuid", "context"]),
            st.one_of(
                SCALAR,
                st.sampled_from(["log", "error", "span"]),
                st.dictionaries(WORD, st.one_of(SCALAR, st.dictionaries(WORD, st.dictionaries(WORD, SCALAR)))),
                st.integers(-(10**30), 10**30),
            ),
            max_size=3,
        )
    )
    return {**base, **extra}
