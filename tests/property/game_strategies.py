"""Hypothesis strategies of valid Forge Logger events and MessagePack items, and the version-1 path.

``v1_forge_value`` / ``v1_msgpack_value`` build the raw record the gateway appended per item
before requests became one record (envelope version 1): the reference the split path must
match byte for byte.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import strategies as st

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.schemas import forge
from services.normalizer.steps import normalize

Doc = dict[str, Any]

# Text a client may send: any UTF-8 (no lone surrogates, which neither JSON nor MessagePack carry).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=24)
NAME = TEXT.filter(lambda s: bool(s.strip()))
INTS = st.integers(-(2**63), 2**63 - 1)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | INTS | FINITE | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
JSON_OBJECTS = st.dictionaries(TEXT, JSON_VALUES, max_size=4)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """ISO 8601 text the gateway accepts: Z, an offset, or none (UTC), with or without fractions."""
    moment = draw(st.datetimes(datetime(2001, 1, 1), datetime(2035, 1, 1)))
    offset = draw(st.sampled_from([None, timedelta(0), timedelta(hours=2), timedelta(hours=-5, minutes=-30)]))
    if offset is None:
        return moment.isoformat()
    text = moment.replace(tzinfo=timezone(offset)).isoformat()
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


def _optional(draw: st.DrawFn, doc: Doc, key: str, values: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        doc[key] = draw(values)


@st.composite
def forge_events(draw: st.DrawFn, project_id: str, sessions: list[str]) -> Doc:
    """One valid Forge Logger event citing one of ``sessions`` (owned by ``project_id``)."""
    event: Doc = {
        "sessionId": draw(st.sampled_from(sessions)),
        "type": draw(st.sampled_from(["level_start", "crash", "Exception", "boss_fight"]) | NAME),
    }
    _optional(draw, event, "timestamp", timestamps())
    _optional(draw, event, "severity", st.sampled_from(forge.SEVERITIES))
    props = st.fixed_dictionaries({}, optional={"message": NAME, "exceptionClass": NAME, "build": NAME})
    _optional(draw, event, "properties", (props | JSON_OBJECTS).map(dict))
    _optional(draw, event, "projectId", st.just(project_id))
    _optional(draw, event, "environment", st.just("production"))
    _optional(draw, event, "extra", JSON_VALUES)
    return event


def forge_batches(project_id: str, sessions: list[str]) -> st.SearchStrategy[list[Doc]]:
    return st.lists(forge_events(project_id, sessions), min_size=1, max_size=forge.MAX_BATCH_EVENTS)


CUSTOM = st.dictionaries(TEXT, JSON_VALUES | st.just(float("nan")), max_size=3)  # NaN: MessagePack carries it
POSITION = st.lists(FINITE, min_size=3, max_size=3)


@st.composite
def msgpack_items(draw: st.DrawFn, app_id: str) -> Doc:
    """One valid MessagePack item of any of the four kinds."""
    item: Doc = {"app_id": app_id, "player_id": draw(NAME)}
    _optional(draw, item, "build_id", NAME)
    kind = draw(st.sampled_from(["player", "funnel", "gameplay", "realtime"]))
    if kind == "player":
        item |= {"event_name": "Create_Player", "timestamp": draw(timestamps())}
        _optional(draw, item, "region", NAME)
        _optional(draw, item, "hardware", CUSTOM)
    elif kind == "funnel":
        item |= {"funnel_step_name": draw(NAME), "session_id": draw(NAME), "timestamp": draw(timestamps())}
        _optional(draw, item, "level_id", NAME)
    elif kind == "gameplay":
        name = draw(NAME.filter(lambda s: len(s) <= 128 and s != "Create_Player"))
        item |= {"event_name": name, "session_id": draw(NAME), "timestamp": draw(timestamps())}
        _optional(draw, item, "level_id", NAME)
        _optional(draw, item, "input_method", NAME)
        _optional(draw, item, "custom_data", CUSTOM)
        _optional(draw, item, "position", POSITION)
    else:
        start = draw(st.datetimes(datetime(2001, 1, 1), datetime(2035, 1, 1), timezones=st.just(UTC)))
        end = start + draw(st.timedeltas(timedelta(0), timedelta(hours=2)))
        points = draw(st.integers(1, 20))
        item |= {
            "session_id": draw(NAME),
            "positions": draw(
                st.lists(FINITE | INTS.map(lambda i: i % 10_000), min_size=3 * points, max_size=3 * points)
            ),
            "timestamp_start": start.isoformat(),
            "timestamp_end": end.isoformat(),
        }
        _optional(draw, item, "level_id", NAME)
        _optional(draw, item, "status", NAME)
        fps = st.fixed_dictionaries({}, optional={k: FINITE | st.integers(0, 500) for k in ("mean", "low_5", "low_1")})
        _optional(draw, item, "fps", fps.map(dict))
    _optional(draw, item, "extra", JSON_VALUES)
    return item


def msgpack_batches(app_id: str, max_size: int = 40) -> st.SearchStrategy[list[Doc]]:
    return st.lists(msgpack_items(app_id), min_size=1, max_size=max_size)


# --- the version-1 path: one raw record per item, as the gateway appended them before ----------


def v1_forge_value(
    tenancy: Doc, token_id: str, received_at: int, event_id: str, item: Any, route: str = "event"
) -> bytes:
    envelope = {"v": 1, "route": route, **tenancy, "token_id": token_id, "received_at": received_at}
    return orjson.dumps({**envelope, "id": event_id, "body": item})


def v1_msgpack_value(tenancy: Doc, app_id: str, token_id: str, received_at: int, event_id: str, doc: Any) -> bytes:
    value = {"v": 1, "id": event_id, **tenancy, "app_id": app_id, "token_id": token_id,
             "received_at": received_at, "body": doc}  # fmt: skip
    return orjson.dumps(value)


def record(topic: str, value: bytes, key: bytes | None = None, offset: int = 0) -> Record:
    return Record(topic, 0, offset, key, value, 0)


def typed_of(records: list[Record]) -> list[tuple[str, bytes | None, bytes]]:
    """What the normalizer appends for ``records`` (typed records and game errors), comparable;
    every item of them normalizes (no failed item)."""
    out: list[OutgoingRecord] = []
    for r in records:
        typed, failed, _ = normalize(r)
        assert failed == [], failed
        out += typed
    return [(o.topic, o.key, o.value) for o in out]


def session_ids(project_id: str, count: int = 3) -> list[str]:
    return [str(forge.new_session_id(project_id)) for _ in range(count)]


@st.composite
def session_bodies(draw: st.DrawFn) -> Doc:
    """A valid POST /v1/ingest/sessions body."""
    short = NAME.filter(lambda s: len(s) <= 64)
    build: Doc = {"version": draw(short), "platform": draw(short)}
    _optional(draw, build, "gitCommit", short)
    _optional(draw, build, "channel", st.sampled_from(forge.BUILD_CHANNELS))
    body: Doc = {"build": build}
    player = st.fixed_dictionaries({}, optional={"externalId": NAME, "deviceId": NAME}).map(dict)
    _optional(draw, body, "player", player)
    _optional(draw, body, "metadata", JSON_OBJECTS)
    return body
