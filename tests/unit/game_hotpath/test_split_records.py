"""Version-2 game raw records in the normalizer: one bad item is dead-lettered alone, a request
split for size expands to the same items, an unreadable record is dead-lettered whole."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgeline.bus.port import Record
from forgeline.bus.topics import RAW_FORGE, RAW_MSGPACK, TYPED_GAME_EVENTS, TYPED_PLAYERS, dead_letter_topic
from forgeline.schemas import forge, game_raw, game_structs
from services.normalizer.main import process_batch
from tests.property.game_strategies import forge_events, msgpack_batches, session_ids, v1_forge_value

pytestmark = pytest.mark.unit

TENANCY = {"organisation_id": "org", "project_id": "proj", "environment": "production"}
RECEIVED = 1_775_000_000_000
SESSIONS = session_ids("proj")


def _forge_record(items: list[Any], ids: list[str], offset: int = 7) -> Record:
    envelope = {**TENANCY, "token_id": "tok", "received_at": RECEIVED}
    [value] = game_raw.forge_events_values(envelope, orjson.dumps(items), ids)
    return Record(RAW_FORGE, 0, offset, b"key", value, 0)


def _ids(count: int) -> list[str]:
    return [str(i) for i in forge.event_ids("proj", "production", "d" * 64, count)]


def test_one_bad_item_of_a_request_is_dead_lettered_alone_as_its_version_1_record() -> None:
    good = {"sessionId": SESSIONS[0], "type": "level_start"}
    bad = {"sessionId": SESSIONS[0], "type": "x" * 500}  # too long: only a bug or a replay gets it here
    ids = _ids(3)
    out = process_batch([_forge_record([good, bad, good], ids)])
    typed = [o for o in out if o.topic == TYPED_GAME_EVENTS]
    assert [orjson.loads(o.value)["event_id"] for o in typed] == [ids[0], ids[2]]
    [letter] = [o for o in out if o.topic == dead_letter_topic("normalizer")]
    assert letter.value == v1_forge_value(TENANCY, "tok", RECEIVED, ids[1], bad)
    headers = dict(letter.headers)
    assert headers["reason"] == b"invalid_payload" and headers["source_offset"] == b"7"
    assert letter.key == b"key"


def test_a_record_that_is_no_version_2_request_is_dead_lettered_whole() -> None:
    value = orjson.dumps({"v": 2, "route": "events", **TENANCY, "received_at": RECEIVED, "ids": ["a"], "items": []})
    [letter] = process_batch([Record(RAW_FORGE, 0, 1, None, value, 0)])
    assert letter.topic == dead_letter_topic("normalizer") and letter.value == value
    assert dict(letter.headers)["reason"] == b"bad_raw_record"


@settings(max_examples=30, deadline=None, database=None)
@given(items=st.lists(forge_events("proj", SESSIONS), min_size=1, max_size=30), limit=st.integers(1, 2000))
def test_a_forge_request_split_for_size_expands_to_the_same_items(items: list[Any], limit: int) -> None:
    envelope = {**TENANCY, "token_id": "tok", "received_at": RECEIVED}
    ids = _ids(len(items))
    whole = game_raw.forge_events_values(envelope, orjson.dumps(items), ids)
    parts = game_raw.forge_events_values(envelope, orjson.dumps(items), ids, limit=limit)
    assert len(whole) == 1
    assert all(len(orjson.loads(p)["items"]) == 1 or len(p) <= limit + 4096 for p in parts)
    views = [v for p in parts for v in game_raw.v1_views(RAW_FORGE, p)]
    assert views == game_raw.v1_views(RAW_FORGE, whole[0])


@settings(max_examples=30, deadline=None, database=None)
@given(items=msgpack_batches("app"), limit=st.integers(1, 4000))
def test_a_msgpack_request_split_for_size_expands_to_the_same_items(items: list[Any], limit: int) -> None:
    envelope = {**TENANCY, "app_id": "app", "token_id": "tok", "received_at": RECEIVED}
    body = msgpack.packb(items)
    whole = game_raw.msgpack_events_values(envelope, body, "f" * 64)
    parts = game_raw.msgpack_events_values(envelope, body, "f" * 64, limit=limit)
    assert len(whole) == 1
    for part in parts:
        packed = orjson.loads(part)["packed"]
        assert len(msgpack.unpackb(base64.b64decode(packed))) == 1 or len(packed) <= limit + 8
    views = [v for p in parts for v in game_raw.v1_views(RAW_MSGPACK, p)]
    # NaN != NaN: compare what the records say, as JSON
    assert orjson.dumps(views) == orjson.dumps(game_raw.v1_views(RAW_MSGPACK, whole[0]))


@pytest.mark.parametrize(
    "session",
    [session_ids("another-project", 1)[0], "{" + SESSIONS[0] + "}", SESSIONS[0].upper()],
    ids=["another-projects", "braces", "upper-case"],
)
def test_the_compiled_row_keeps_normalize_events_session_rule(session: str) -> None:
    ctx = forge.ForgeContext("org", "proj", "production", datetime(2026, 2, 12, tzinfo=UTC))
    event = {"sessionId": session, "type": "level_start"}
    row = game_structs.forge_event_row(event, ctx, "00000000-0000-4000-8000-000000000001")
    _, expected = forge.normalize_event(event, ctx, uuid.UUID("00000000-0000-4000-8000-000000000001"))
    assert row == expected


def test_one_bad_msgpack_item_is_dead_lettered_alone_as_its_version_1_record() -> None:
    good = {"app_id": "app", "player_id": "p", "event_name": "Create_Player", "timestamp": "2026-02-12T10:00:00Z"}
    bad = {**good, "app_id": "another-app"}  # the gateway refuses it; a hand-made record may not
    envelope = {**TENANCY, "app_id": "app", "token_id": "tok", "received_at": RECEIVED}
    [value] = game_raw.msgpack_events_values(envelope, msgpack.packb([good, bad, good]), "e" * 64)
    out = process_batch([Record(RAW_MSGPACK, 0, 3, b"key", value, 0)])
    views = game_raw.v1_views(RAW_MSGPACK, value)
    typed = [orjson.loads(o.value)["event_id"] for o in out if o.topic == TYPED_PLAYERS]
    assert typed == [views[0]["id"], views[2]["id"]]
    [letter] = [o for o in out if o.topic == dead_letter_topic("normalizer")]
    assert orjson.loads(letter.value) == views[1]
    assert dict(letter.headers)["reason"] == b"invalid_payload"
