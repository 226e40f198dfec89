"""Compiled validation of the game event schemas (msgspec Structs): the fast path.

``forge_events`` (a Forge Logger events body) and ``msgpack_items`` (a MessagePack events
body) decode and type-check a whole request in msgspec's C code, then test in a few Python
comparisons per item what a type cannot say (non-blank text, lengths, timestamps, session
ownership, nesting depth). They return the items only when the validators of ``forge.py`` and
``msgpack.py`` accept the request, and None for anything else: the caller then runs those
validators, which name every problem with the exact messages the API documents. So the fast
path never changes an answer; it only skips the Python walk for the requests that pass.

It is deliberately narrower than the validators (the equivalence is easy to see and is
property-tested): unknown fields, explicit nulls in MessagePack items, and fields of the
wrong type all take the slow path, which accepts or refuses them as it always did.

The normalizer shares it: ``forge_event_row`` builds an event's row from the same Struct when
the event is valid (the row ``forge.normalize_event`` builds, byte for byte once encoded), and
returns None otherwise, so that ``forge.normalize_event`` raises the problem; ``msgpack_rows``
does the same for the items of a MessagePack body (``msgpack.normalize``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import msgspec
import orjson

from forgeline.schemas.checks import _as_uuid
from forgeline.schemas.common import json_depth_exceeds, parse_timestamp, to_millis
from forgeline.schemas.forge import MAX_BATCH_EVENTS, NO_SESSION, SESSION_ID, ForgeContext, _cited_ok
from forgeline.schemas.msgpack import MAX_POSITIONS, PLAYER_EVENT_NAME, AppContext, _unplain
from forgeline.schemas.records import FUNNEL_STEP, GAMEPLAY_EVENT, PLAYER, TRAJECTORY, RecordKind

Row = dict[str, Any]
_UUID_TEXT = 64  # checks._as_uuid: longer text is never a UUID
_SHORT = 256  # checks.Check.string's default max_len

Severity = Literal["low", "medium", "high", "critical"]  # forge.SEVERITIES (a unit test holds them equal)

__all__ = ["ForgeEvent", "MsgpackItem", "forge_event_row", "forge_events", "msgpack_items", "msgpack_rows"]


class ForgeEvent(msgspec.Struct, forbid_unknown_fields=True):
    """One Forge Logger event (seed "Events") as the fast path accepts it."""

    sessionId: str  # noqa: N815 - the wire name
    type: str
    timestamp: str | None = None
    severity: Severity | None = None
    properties: dict[str, Any] | None = None
    projectId: str | None = None  # noqa: N815 - the wire name
    environment: str | None = None


Scalar = str | int | float | bool | None


class FlatForgeEvent(ForgeEvent, forbid_unknown_fields=True):
    """An event whose properties hold no object or array: nothing to walk for the depth limit."""

    properties: dict[str, Scalar] | None = None


_FORGE_BODY = list[ForgeEvent] | ForgeEvent
_FLAT_FORGE_BODY = list[FlatForgeEvent] | FlatForgeEvent


def _text(value: str, max_len: int = _SHORT) -> bool:
    """What Check.string accepts for a present value: not blank, at most ``max_len`` characters."""
    return len(value) <= max_len and not value.isspace() and value != ""


def forge_events(raw: bytes, project_id: str, environment: str, max_depth: int) -> tuple[list[ForgeEvent], bool] | None:
    """(events, was_batch) when POST /v1/ingest/events would accept ``raw`` whole, else None.

    ``raw`` is parsed by orjson, as the normalizer parses it again: the two never disagree on
    what the bytes say (duplicate keys, escapes, number ranges).
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    try:
        body: list[ForgeEvent] | ForgeEvent = msgspec.convert(doc, _FLAT_FORGE_BODY)
        flat = True
    except msgspec.ValidationError:
        try:
            body, flat = msgspec.convert(doc, _FORGE_BODY), False
        except msgspec.ValidationError:
            return None
    batch = isinstance(body, list)
    events = body if isinstance(body, list) else [body]
    # The whole body nests at most max_depth: [ (1) { (2) "properties": { (3) ...
    props_depth = max_depth - (2 if batch else 1)
    if not 1 <= len(events) <= MAX_BATCH_EVENTS or props_depth < 0:
        return None
    for event in events:
        if (event.projectId is not None and event.projectId != project_id) or (
            event.environment is not None and event.environment != environment
        ):
            return None
        if not _text(event.type, 128) or (event.timestamp is not None and parse_timestamp(event.timestamp) is None):
            return None
        props = event.properties
        if props is not None and (props_depth < 1 or (not flat and json_depth_exceeds(props, props_depth))):
            return None
        # Owned by the token's project implies a UUID; the length is Check.uuid's.
        if len(event.sessionId) > _UUID_TEXT or not _cited_ok(event.sessionId, SESSION_ID, project_id):
            return None
    return events, batch


# --- MessagePack ---------------------------------------------------------------------------------

Unset = msgspec.UnsetType
UNSET = msgspec.UNSET


class Fps(msgspec.Struct, forbid_unknown_fields=True):
    mean: float | Unset = UNSET
    low_5: float | Unset = UNSET
    low_1: float | Unset = UNSET


class MsgpackItem(msgspec.Struct, forbid_unknown_fields=True):
    """One MessagePack item of any kind (seed "Event Schemas"); absent fields are UNSET.

    No field accepts nil: an explicit nil changes which kind is inferred, so it takes the
    slow path.
    """

    app_id: str
    player_id: str
    build_id: str | Unset = UNSET
    event_name: str | Unset = UNSET
    funnel_step_name: str | Unset = UNSET
    session_id: str | Unset = UNSET
    level_id: str | Unset = UNSET
    region: str | Unset = UNSET
    hardware: dict[str, Any] | Unset = UNSET
    input_method: str | Unset = UNSET
    custom_data: dict[str, Any] | Unset = UNSET
    position: list[float] | Unset = UNSET
    positions: list[float] | Unset = UNSET
    status: str | Unset = UNSET
    fps: Fps | Unset = UNSET
    timestamp: str | Unset = UNSET
    timestamp_start: str | Unset = UNSET
    timestamp_end: str | Unset = UNSET


def _refuse_ext(code: int, data: memoryview) -> Any:
    # Anywhere in the body, fields no kind reads included: the normalizer's unpacker refuses
    # extension types, so a body holding one must not pass here (the full validator answers 400).
    raise msgspec.DecodeError(f"MessagePack extension type {code} is not accepted")


_MSGPACK_BODY = msgspec.msgpack.Decoder(list[MsgpackItem] | MsgpackItem, ext_hook=_refuse_ext)


def _opt_text(value: str | Unset, max_len: int = _SHORT) -> bool:
    return value is UNSET or _text(value, max_len)


def _plain(value: dict[str, Any] | Unset, depth: int) -> bool:
    """A map of plain data (no binary, ext or non-string keys) nested at most ``depth`` deep."""
    return value is UNSET or (depth >= 1 and _unplain(value, depth) is None)


def _finite(numbers: list[float]) -> bool:
    # msgspec gave floats (ints converted, bools refused); only NaN and infinities remain.
    return all(map(math.isfinite, numbers))


def _time(value: str | Unset) -> bool:
    return isinstance(value, str) and parse_timestamp(value) is not None


def _msgpack_item_ok(item: MsgpackItem, app_id: str, depth: int) -> bool:
    """What msgpack.check_item accepts, for an item whose fields have their schema's types.

    ``depth``: how deep a map-valued field may nest (the body's limit less the levels above it).
    """
    if item.app_id != app_id or not _text(item.app_id) or not _text(item.player_id) or not _opt_text(item.build_id):
        return False
    # Map fields are plain data whatever the kind, read or not: the normalizer's unpacker
    # refuses non-string keys, so such a body goes to the full validator (which answers 400).
    if not (_plain(item.hardware, depth) and _plain(item.custom_data, depth)):
        return False
    if item.funnel_step_name is not UNSET:
        return (
            _text(item.funnel_step_name)
            and isinstance(item.session_id, str)
            and _text(item.session_id)
            and _opt_text(item.level_id)
            and _time(item.timestamp)
        )
    if item.event_name == PLAYER_EVENT_NAME:
        return _opt_text(item.region) and _plain(item.hardware, depth) and _time(item.timestamp)
    if item.event_name is not UNSET:
        position = item.position
        return (
            _text(item.event_name, 128)
            and isinstance(item.session_id, str)
            and _text(item.session_id)
            and _opt_text(item.level_id)
            and _opt_text(item.input_method, 64)
            and _plain(item.custom_data, depth)
            and (position is UNSET or (len(position) == 3 and _finite(position)))
            and _time(item.timestamp)
        )
    if item.positions is UNSET and item.timestamp_start is UNSET:
        return False  # no kind: the slow path names the problem
    positions = item.positions
    if not isinstance(positions, list) or not positions or len(positions) % 3 or len(positions) > MAX_POSITIONS:
        return False
    fps = item.fps
    if fps is not UNSET and not _finite([v for v in (fps.mean, fps.low_5, fps.low_1) if v is not UNSET]):
        return False
    if not (isinstance(item.timestamp_start, str) and isinstance(item.timestamp_end, str)):
        return False
    start, end = parse_timestamp(item.timestamp_start), parse_timestamp(item.timestamp_end)
    return (
        start is not None
        and end is not None
        and end >= start
        and isinstance(item.session_id, str)
        and _text(item.session_id)
        and _opt_text(item.level_id)
        and _opt_text(item.status, 64)
        and _opt_text(item.input_method, 64)
        and _finite(positions)
    )


def msgpack_items(raw: bytes, app_id: str, max_depth: int, max_items: int) -> list[MsgpackItem] | None:
    """The items when POST /api/events would accept ``raw`` whole for application ``app_id``, else None."""
    try:
        body = _MSGPACK_BODY.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    batch = isinstance(body, list)
    items = body if isinstance(body, list) else [body]
    if not 1 <= len(items) <= max_items:
        return None
    # [ (1) { (2) "custom_data": { (3) ...: a map field may nest max_depth less the levels above it.
    depth = max_depth - (2 if batch else 1)
    if depth < 1:
        return None
    for item in items:
        if not _msgpack_item_ok(item, app_id, depth):
            return None
    return items


# --- rows in the normalizer ----------------------------------------------------------------------


class StoredForgeEvent(msgspec.Struct):
    """A Forge Logger event of a raw record: the fields its row is made of (others ignored)."""

    sessionId: str  # noqa: N815 - the wire name
    type: str
    timestamp: str | None = None
    severity: Severity | None = None
    properties: dict[str, Any] | None = None


def forge_event_row(body: Any, ctx: ForgeContext, event_id: str) -> dict[str, Any] | None:
    """``forge.normalize_event``'s row for a valid event, or None: then call that (it names the problem).

    ``event_id`` is the id's canonical text (``str(uuid.UUID(...))``).
    """
    try:
        event = msgspec.convert(body, StoredForgeEvent)
    except msgspec.ValidationError:
        return None
    if not _text(event.type, 128):
        return None
    occurred_at = ctx.received_at
    if event.timestamp is not None:
        parsed = parse_timestamp(event.timestamp)
        if parsed is None:
            return None
        occurred_at = parsed
    session_id = event.sessionId
    if not (len(session_id) <= _UUID_TEXT and _cited_ok(session_id, SESSION_ID, ctx.project_id)):
        if _as_uuid(session_id) is None:
            return None
        session_id = NO_SESSION  # forge._own_session: a citation the gateway should have refused
    return {
        "event_id": event_id,
        "session_id": session_id,
        "organisation_id": ctx.organisation_id,
        "project_id": ctx.project_id,
        "environment": ctx.environment,
        "type": event.type,
        "severity": event.severity or "",
        "properties": orjson.dumps(event.properties or {}).decode(),
        "occurred_at": to_millis(occurred_at),
        "received_at": to_millis(ctx.received_at),
    }


_ANY_DEPTH = 10**6  # the normalizer keeps no depth limit of its own: the gateway applied it


def _json_object(value: dict[str, Any] | Unset) -> str:
    """msgpack._json: a map as JSON text, ``{}`` when absent."""
    return orjson.dumps(value if isinstance(value, dict) else {}).decode()


def _fps_value(fps: Fps | Unset, key: str) -> float | None:
    value = getattr(fps, key) if isinstance(fps, Fps) else UNSET
    return None if value is UNSET else float(value)


def _msgpack_row(item: MsgpackItem, ctx: AppContext, event_id: str) -> tuple[RecordKind, Row]:
    """msgpack.normalize's row of an item ``_msgpack_item_ok`` accepted (same keys, same order)."""
    row: Row = {
        "event_id": event_id,
        "organisation_id": ctx.organisation_id,
        "project_id": ctx.project_id,
        "environment": ctx.environment,
        "app_id": ctx.app_id,
        "build_id": item.build_id or "",
        "player_id": item.player_id,
        "received_at": to_millis(ctx.received_at),
    }
    if item.funnel_step_name is not UNSET:
        row |= {
            "session_id": item.session_id,
            "step_name": item.funnel_step_name,
            "level_id": item.level_id or "",
            "occurred_at": to_millis(parse_timestamp(item.timestamp)),  # type: ignore[arg-type]  # checked
        }
        return FUNNEL_STEP, row
    if item.event_name == PLAYER_EVENT_NAME:
        row |= {
            "event_name": item.event_name,
            "region": item.region or "",
            "hardware": _json_object(item.hardware),
            "occurred_at": to_millis(parse_timestamp(item.timestamp)),  # type: ignore[arg-type]  # checked
        }
        return PLAYER, row
    if item.event_name is not UNSET:
        position: list[float | None] = [None, None, None] if item.position is UNSET else list(item.position)
        row |= {
            "session_id": item.session_id,
            "event_name": item.event_name,
            "level_id": item.level_id or "",
            "position_x": position[0],
            "position_y": position[1],
            "position_z": position[2],
            "input_method": item.input_method or "",
            "custom_data": _json_object(item.custom_data),
            "occurred_at": to_millis(parse_timestamp(item.timestamp)),  # type: ignore[arg-type]  # checked
        }
        return GAMEPLAY_EVENT, row
    flat: list[float] = item.positions if isinstance(item.positions, list) else []
    row |= {
        "session_id": item.session_id,
        "level_id": item.level_id or "",
        "status": item.status or "",
        "input_method": item.input_method or "",
        "fps_mean": _fps_value(item.fps, "mean"),
        "fps_low_5": _fps_value(item.fps, "low_5"),
        "fps_low_1": _fps_value(item.fps, "low_1"),
        "xs": flat[0::3],
        "ys": flat[1::3],
        "zs": flat[2::3],
        "point_count": len(flat) // 3,
        "started_at": to_millis(parse_timestamp(item.timestamp_start)),  # type: ignore[arg-type]  # checked
        "ended_at": to_millis(parse_timestamp(item.timestamp_end)),  # type: ignore[arg-type]  # checked
    }
    return TRAJECTORY, row


def msgpack_rows(body: bytes, ctx: AppContext, event_ids: list[str]) -> list[tuple[RecordKind, Row] | None] | None:
    """``msgpack.normalize``'s (kind, row) of each item of a MessagePack events body, None for an
    item the compiled path does not accept (normalize it, so that it names the problem), or
    None for a body it cannot decode. ``event_ids``: the items' ids, canonical text."""
    try:
        body_items = _MSGPACK_BODY.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    items = body_items if isinstance(body_items, list) else [body_items]
    if len(items) != len(event_ids):
        return None
    return [
        _msgpack_row(item, ctx, event_id) if _msgpack_item_ok(item, ctx.app_id, _ANY_DEPTH) else None
        for item, event_id in zip(items, event_ids, strict=True)
    ]
