"""The compiled fast path (forgeline.schemas.game_structs) never accepts what the Python
validators refuse, and accepts the valid requests the clients send (so it is used at all)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgeline.schemas import forge, game_structs
from forgeline.schemas import msgpack as msgpack_schema
from forgeline.schemas.checks import Invalid
from forgeline.schemas.common import json_depth_exceeds
from tests.property.game_strategies import JSON_VALUES, forge_events, msgpack_items, session_ids

pytestmark = pytest.mark.unit

PROJECT, ENVIRONMENT, APP = "proj", "production", "app"
SESSIONS = session_ids(PROJECT) + session_ids("other-project", 1)
NOW = datetime(2026, 2, 12, tzinfo=UTC)
PROPERTY = settings(max_examples=300, deadline=None, database=None)

FORGE_KEYS = ["sessionId", "type", "timestamp", "severity", "properties", "projectId", "environment", "other"]
ODD_TEXT = st.sampled_from(
    ["", " ", "\u2003", "x" * 65, "x" * 129, "x" * 300, "2026-02-12", "2026-13-01T00:00:00Z", "low", "other"]
)
ODD_VALUES = st.one_of(
    ODD_TEXT,
    ODD_TEXT,
    JSON_VALUES,
    st.sampled_from(SESSIONS + [SESSIONS[0].upper(), "{" + SESSIONS[0] + "}", "-" * 40 + SESSIONS[0]]),
    st.sampled_from([PROJECT, ENVIRONMENT, "staging", {"a": {"b": {"c": [[[]]]}}}, {}, []]),
)


def forge_slow_ok(raw: bytes, max_depth: int) -> bool:
    """What POST /v1/ingest/events accepts today (services/gateway/routes/forge.py, step by step)."""
    if not raw.strip():
        return False
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    if json_depth_exceeds(doc, max_depth) or doc is None:
        return False
    try:
        items, batch = forge.event_items(doc)
    except Invalid:
        return False
    for item in items:
        if isinstance(item, dict) and (
            item.get("projectId") not in (None, PROJECT) or item.get("environment") not in (None, ENVIRONMENT)
        ):
            return False
    if forge.check_events(items, batch, NOW):
        return False
    return not any(forge.foreign_references(item, PROJECT) for item in items)


@st.composite
def mutated_forge_bodies(draw: st.DrawFn) -> Any:
    events = draw(st.lists(forge_events(PROJECT, SESSIONS[:-1]), min_size=1, max_size=4))
    for event in events:
        event.pop("extra", None)
    event = draw(st.sampled_from(events))  # one change, so that the rest stays valid
    key = draw(st.sampled_from(FORGE_KEYS))
    if draw(st.integers(0, 3)) == 0:
        event.pop(key, None)
    else:
        event[key] = draw(ODD_VALUES)
    if len(events) == 1 and draw(st.booleans()):
        return events[0]
    return draw(st.sampled_from([events] * 6 + [events * 60, [], "text", None, [events[0], 1]]))


@PROPERTY
@given(body=mutated_forge_bodies(), max_depth=st.sampled_from([1, 2, 3, 4, 6, 32]))
def test_the_forge_fast_path_accepts_only_what_the_validators_accept(body: Any, max_depth: int) -> None:
    raw = orjson.dumps(body)
    fast = game_structs.forge_events(raw, PROJECT, ENVIRONMENT, max_depth)
    slow = forge_slow_ok(raw, max_depth)
    if fast is not None:
        assert slow, "the fast path accepted a body the validators refuse"
        assert fast[1] == isinstance(body, list) and len(fast[0]) == (len(body) if isinstance(body, list) else 1)


@PROPERTY
@given(events=st.lists(forge_events(PROJECT, SESSIONS[:-1]), min_size=1, max_size=30))
def test_the_forge_fast_path_accepts_valid_batches_of_known_fields(events: list[dict[str, Any]]) -> None:
    for event in events:
        event.pop("extra", None)
    raw = orjson.dumps(events)
    assert forge_slow_ok(raw, 32)
    assert game_structs.forge_events(raw, PROJECT, ENVIRONMENT, 32) is not None


@PROPERTY
@given(
    raw=st.binary(max_size=64) | st.sampled_from([b"", b" ", b"null", b"[]", b'{"a":1}', b"[{}]", b"\xef\xbb\xbf{}"])
)
def test_the_forge_fast_path_refuses_bytes_that_are_no_valid_body(raw: bytes) -> None:
    if game_structs.forge_events(raw, PROJECT, ENVIRONMENT, 32) is not None:
        assert forge_slow_ok(raw, 32)


# --- MessagePack -------------------------------------------------------------------------------

MSGPACK_KEYS = [
    "app_id", "player_id", "build_id", "event_name", "funnel_step_name", "session_id", "level_id", "region",
    "hardware", "input_method", "custom_data", "position", "positions", "status", "fps", "timestamp",
    "timestamp_start", "timestamp_end", "other",
]  # fmt: skip
PACKED_ODD = st.one_of(
    ODD_VALUES,
    st.sampled_from(
        [
            b"bytes",
            msgpack.ExtType(5, b"x"),
            {1: "int key"},
            {"nested": {2: "int key"}},
            {"blob": b"x"},
            [1.0, 2.0, float("nan")],
            [1.0, 2.0, float("inf")],
            [True, 1.0, 2.0],
            [1, 2, 3],
            [1.0, 2.0],
            [0.0] * 6,
            {"mean": 60, "low_5": float("nan")},
            {"mean": True},
            {"mean": None},
            {"mean": 1, "x": 2},
            "Create_Player",
            "2026-02-12T10:00:00Z",
            "2000-02-12T10:00:00Z",
            APP,
        ]
    ),
    st.floats(),
)


def msgpack_slow_ok(raw: bytes, max_depth: int, max_items: int) -> bool:
    """What POST /api/events accepts today (services/gateway/routes/msgpack.py, step by step)."""
    try:
        docs, batch = msgpack_schema.items(msgpack_schema.decode(raw, max_depth))
    except Invalid:
        return False
    if len(docs) > max_items or msgpack_schema.foreign_app_ids(docs, APP):
        return False
    return not msgpack_schema.check_items(docs, batch)


@st.composite
def mutated_msgpack_bodies(draw: st.DrawFn) -> bytes:
    items = draw(st.lists(msgpack_items(APP), min_size=1, max_size=4))
    for item in items:
        item.pop("extra", None)
    item = draw(st.sampled_from(items))  # one change, so that the rest stays valid
    key = draw(st.sampled_from(MSGPACK_KEYS))
    change = draw(st.integers(0, 4))
    if change == 0:
        item.pop(key, None)
    elif change == 1 and "timestamp_end" in item:  # a trajectory ending before it starts (or not)
        item["timestamp_start"], item["timestamp_end"] = item["timestamp_end"], item["timestamp_start"]
    else:
        item[key] = draw(PACKED_ODD)
    body: Any = items[0] if len(items) == 1 and draw(st.booleans()) else items
    raw = msgpack.packb(body, use_bin_type=True)
    return draw(st.sampled_from([raw] * 6 + [raw + b"\x00", raw[:-1], msgpack.packb([]), msgpack.packb(None)]))


@PROPERTY
@given(raw=mutated_msgpack_bodies(), max_depth=st.sampled_from([1, 2, 3, 4, 6, 32]), max_items=st.integers(1, 5))
def test_the_msgpack_fast_path_accepts_only_what_the_validators_accept(
    raw: bytes, max_depth: int, max_items: int
) -> None:
    if game_structs.msgpack_items(raw, APP, max_depth, max_items) is not None:
        assert msgpack_slow_ok(raw, max_depth, max_items), "the fast path accepted a body the validators refuse"


@PROPERTY
@given(items=st.lists(msgpack_items(APP), min_size=1, max_size=30))
def test_the_msgpack_fast_path_accepts_valid_batches_of_known_fields(items: list[dict[str, Any]]) -> None:
    for item in items:
        item.pop("extra", None)
    raw = msgpack.packb(items, use_bin_type=True)
    assert msgpack_slow_ok(raw, 32, 1000)
    fast = game_structs.msgpack_items(raw, APP, 32, 1000)
    assert fast is not None and len(fast) == len(items)


@PROPERTY
@given(items=st.lists(msgpack_items(APP), min_size=1, max_size=3), max_depth=st.integers(1, 4), single=st.booleans())
def test_the_msgpack_fast_path_keeps_the_depth_limit(items: list[dict[str, Any]], max_depth: int, single: bool) -> None:
    raw = msgpack.packb(items[0] if single else items, use_bin_type=True)
    if game_structs.msgpack_items(raw, APP, max_depth, 1000) is not None:
        assert msgpack_slow_ok(raw, max_depth, 1000)


LONG_TEXT = st.sampled_from(["x" * 64, "x" * 65, "x" * 128, "x" * 129, "x" * 256, "x" * 257, " ", ""])


@PROPERTY
@given(items=st.lists(msgpack_items(APP), min_size=1, max_size=3), key=st.sampled_from(MSGPACK_KEYS), text=LONG_TEXT)
def test_the_msgpack_fast_path_keeps_every_text_rule(items: list[dict[str, Any]], key: str, text: str) -> None:
    items[0][key] = text
    raw = msgpack.packb(items, use_bin_type=True)
    if game_structs.msgpack_items(raw, APP, 32, 1000) is not None:
        assert msgpack_slow_ok(raw, 32, 1000)


@PROPERTY
@given(
    events=st.lists(forge_events(PROJECT, SESSIONS[:-1]), min_size=1, max_size=3),
    key=st.sampled_from(FORGE_KEYS),
    text=LONG_TEXT,
)
def test_the_forge_fast_path_keeps_every_text_rule(events: list[dict[str, Any]], key: str, text: str) -> None:
    events[0][key] = text
    raw = orjson.dumps(events)
    if game_structs.forge_events(raw, PROJECT, ENVIRONMENT, 32) is not None:
        assert forge_slow_ok(raw, 32)


NOT_FINITE = st.sampled_from([float("nan"), float("inf"), float("-inf")])


@PROPERTY
@given(
    items=st.lists(msgpack_items(APP), min_size=1, max_size=3),
    key=st.sampled_from(["position", "positions", "fps"]),
    bad=NOT_FINITE,
    at=st.integers(0, 2),
)
def test_the_msgpack_fast_path_keeps_numbers_finite(items: list[dict[str, Any]], key: str, bad: float, at: int) -> None:
    value: Any = {"mean": 60.0, "low_5": 50.0, "low_1": 40.0} if key == "fps" else [1.0, 2.0, 3.0]
    if key == "fps":
        value[("mean", "low_5", "low_1")[at]] = bad
    else:
        value[at] = bad
    items[0][key] = value
    raw = msgpack.packb(items, use_bin_type=True)
    if game_structs.msgpack_items(raw, APP, 32, 1000) is not None:
        assert msgpack_slow_ok(raw, 32, 1000)


# --- rows in the normalizer ----------------------------------------------------------------------

CTX = forge.ForgeContext("org", PROJECT, ENVIRONMENT, NOW)


@PROPERTY
@given(body=mutated_forge_bodies())
def test_the_compiled_row_is_normalize_events_row(body: Any) -> None:
    event_id = "00000000-0000-4000-8000-000000000001"
    for event in body if isinstance(body, list) else [body]:
        row = game_structs.forge_event_row(event, CTX, event_id)
        try:
            _, expected = forge.normalize_event(event, CTX, uuid.UUID(event_id))
        except Invalid:
            assert row is None, "a row for an event normalize_event refuses"
            continue
        if row is not None:
            assert orjson.dumps(row) == orjson.dumps(expected)


APP_CTX = msgpack_schema.AppContext("org", PROJECT, ENVIRONMENT, APP, NOW)


@PROPERTY
@given(raw=mutated_msgpack_bodies())
def test_the_compiled_msgpack_rows_are_normalizes_rows(raw: bytes) -> None:
    try:
        docs, _ = msgpack_schema.items(msgpack_schema.decode(raw, 32))
    except Invalid:
        return
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(len(docs))]
    rows = game_structs.msgpack_rows(raw, APP_CTX, ids)
    if rows is None:
        return
    for doc, event_id, made in zip(docs, ids, rows, strict=True):
        try:
            expected = msgpack_schema.normalize(doc, APP_CTX, uuid.UUID(event_id))
        except Invalid:
            assert made is None, "a row for an item normalize refuses"
            continue
        if made is not None:
            assert made[0] is expected[0]
            assert orjson.dumps(made[1]) == orjson.dumps(expected[1])
