"""The MessagePack game-analytics wire format (seed msgpack-game-analytics-api.txt; SPEC 4.2).

The kind of an event is inferred from its fields, in this order (seed "Event Schemas"):

1. ``funnel_step_name`` present                → funnel step
2. ``event_name == "Create_Player"``           → player identity
3. any other ``event_name``                    → gameplay event
4. ``positions`` (or ``timestamp_start``)      → realtime trajectory

Anything else is a 400. As in ``forge.py`` the same pure functions validate at the gateway
and build rows in the normalizer.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import msgpack
import orjson

from forgeline.ids import derived_uuid
from forgeline.schemas.checks import Check, Invalid, Problem
from forgeline.schemas.common import is_number, to_millis
from forgeline.schemas.records import FUNNEL_STEP, GAMEPLAY_EVENT, LEVEL_MODEL, PLAYER, TRAJECTORY, RecordKind

PLAYER_EVENT_NAME = "Create_Player"
MAX_POSITIONS = 30_000  # flat numbers per realtime message: 10,000 points
_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class AppContext:
    organisation_id: str
    project_id: str
    environment: str
    app_id: str
    received_at: datetime


def decode(body: bytes, max_depth: int) -> Any:
    """MessagePack bytes → plain Python (what JSON could hold), or Invalid.

    Every length the payload declares is bounded by the body's own size (msgpack's
    ``max_*_len`` default to the buffer size), so a 5-byte "array of 4 billion" is refused
    without allocating. Ext types, binary values and non-string keys are refused: they
    have no place in the seed's schemas and could not be stored as JSON.
    """
    if not body:
        raise Invalid([Problem("body", "is empty")])
    try:
        doc = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True, ext_hook=_refuse_ext)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as err:
        raise Invalid([Problem("body", f"is not valid MessagePack ({type(err).__name__})")]) from None
    problem = _unplain(doc, max_depth)
    if problem:
        raise Invalid([Problem("body", problem)])
    return doc


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"ext type {code}")


def _unplain(doc: object, max_depth: int) -> str | None:
    """Why ``doc`` is not plain JSON-like data nested at most ``max_depth`` deep, or None.

    Walks one nesting level at a time with exact type tests: msgpack builds only exact dicts,
    lists, str, bytes, int, float, bool and None, and this walk is most of a batch's decode
    cost (a 500-item batch has ~50k nodes)."""
    level: list[object] = [doc]
    depth = 0
    while level:
        depth += 1
        below: list[object] = []
        for node in level:
            kind = type(node)
            if kind in _PLAIN_SCALARS:
                continue
            if kind is dict or kind is list:
                if depth > max_depth:
                    return f"nests deeper than {max_depth} levels"
                if kind is dict:
                    mapping = cast(dict[object, object], node)
                    for key in mapping:
                        if type(key) is not str:
                            return "has a map key that is not a string"
                    below.extend(mapping.values())
                else:
                    below.extend(cast(list[object], node))
            else:
                return f"holds a {kind.__name__} value; only maps, arrays, strings, numbers, booleans, nil"
        level = below
    return None


def items(doc: Any) -> tuple[list[Any], bool]:
    """(items, was_batch): a single event object or a list of them (seed "POST /api/events")."""
    if isinstance(doc, list):
        if not doc:
            raise Invalid([Problem("body", "is an empty list")])
        return doc, True
    return [doc], False


def infer_kind(doc: Any) -> RecordKind | None:
    if not isinstance(doc, dict):
        return None
    if "funnel_step_name" in doc:
        return FUNNEL_STEP
    name = doc.get("event_name")
    if name == PLAYER_EVENT_NAME:
        return PLAYER
    if name is not None:
        return GAMEPLAY_EVENT
    if "positions" in doc or "timestamp_start" in doc:
        return TRAJECTORY
    return None


def _required_time(check: Check, key: str) -> datetime | None:
    if check.doc.get(key) is None:
        check.fail(key, "is required (ISO 8601 UTC)")
        return None
    sentinel = datetime.min
    value = check.timestamp(key, sentinel)
    return None if value is sentinel else value


def _numbers(check: Check, key: str, *, required: bool, exact: int | None = None) -> list[float] | None:
    value = check.doc.get(key)
    if value is None:
        if required:
            check.fail(key, "is required")
        return None
    # Exact types (a bool is not a number here); positions are most of a realtime batch.
    if not isinstance(value, list) or not all(type(v) is float or type(v) is int for v in value):
        check.fail(key, "must be an array of finite numbers")
        return None
    numbers = [float(v) for v in value]
    if not all(map(math.isfinite, numbers)):
        check.fail(key, "must be an array of finite numbers")
        return None
    if exact is not None and len(numbers) != exact:
        check.fail(key, f"must hold exactly {exact} numbers [x, y, z]")
        return None
    return numbers


@dataclass(frozen=True, slots=True)
class Checked:
    kind: RecordKind | None
    check: Check
    times: tuple[datetime | None, datetime | None]
    numbers: list[float] | None


def check_item(doc: Any, index: int | None) -> Checked:
    check = Check(doc, index)
    kind = infer_kind(doc)
    if isinstance(doc, dict) and kind is None:
        check.fail("", "cannot infer the event kind: send event_name, funnel_step_name or positions")
    check.string("app_id", required=True)
    check.string("build_id")
    check.string("player_id", required=True)
    start: datetime | None = None
    end: datetime | None = None
    numbers: list[float] | None = None
    if kind is PLAYER:
        check.string("region")
        check.obj("hardware")
        start = _required_time(check, "timestamp")
    elif kind is FUNNEL_STEP:
        check.string("funnel_step_name", required=True)
        check.string("session_id", required=True)
        check.string("level_id")
        start = _required_time(check, "timestamp")
    elif kind is GAMEPLAY_EVENT:
        check.string("event_name", required=True, max_len=128)
        check.string("session_id", required=True)
        check.string("level_id")
        check.string("input_method", max_len=64)
        check.obj("custom_data")
        numbers = _numbers(check, "position", required=False, exact=3)
        start = _required_time(check, "timestamp")
    elif kind is TRAJECTORY:
        check.string("session_id", required=True)
        check.string("level_id")
        check.string("status", max_len=64)
        check.string("input_method", max_len=64)
        fps = check.nested("fps")
        if fps is not None:
            for key in ("mean", "low_5", "low_1"):
                value = fps.doc.get(key)
                if value is not None and not (is_number(value) and math.isfinite(value)):
                    fps.fail(key, "must be a number")
        check.absorb(fps)
        numbers = _numbers(check, "positions", required=True)
        if numbers is not None and (not numbers or len(numbers) % 3 or len(numbers) > MAX_POSITIONS):
            check.fail("positions", f"must be a flat [x,y,z,...] array: a non-zero multiple of 3, ≤ {MAX_POSITIONS}")
        start = _required_time(check, "timestamp_start")
        end = _required_time(check, "timestamp_end")
        if start and end and end < start:
            check.fail("timestamp_end", "must not be before timestamp_start")
    return Checked(kind, check, (start, end), numbers)


def check_items(docs: Sequence[Any], batch: bool) -> list[Problem]:
    problems: list[Problem] = []
    for n, doc in enumerate(docs):
        problems.extend(check_item(doc, n if batch else None).check.problems)
    return problems


def foreign_app_ids(docs: Sequence[Any], app_id: str) -> list[int]:
    """Indexes of items whose ``app_id`` is a string naming another application (→ 403)."""
    return [
        n
        for n, doc in enumerate(docs)
        if isinstance(doc, dict) and isinstance(doc.get("app_id"), str) and doc["app_id"] != app_id
    ]


def event_id(project_id: str, app_id: str, body_digest: str, index: int) -> uuid.UUID:
    """Derived from the request: a retried request (same bytes) maps onto the same rows.

    The project is part of it: the same bytes sent by two projects are two rows, never one
    replacing the other (the tables are keyed by app and event id, and an application
    belongs to one project).
    """
    return derived_uuid("msgpack", project_id, app_id, body_digest, str(index))


def _json(value: Any) -> str:
    return orjson.dumps(value if isinstance(value, dict) else {}).decode()


def _fps(doc: dict[str, Any], key: str) -> float | None:
    fps = doc.get("fps")
    value = fps.get(key) if isinstance(fps, dict) else None
    return float(value) if value is not None else None


def normalize(doc: Any, ctx: AppContext, eid: uuid.UUID) -> tuple[RecordKind, Row]:
    checked = check_item(doc, None)
    checked.check.raise_if_invalid()
    if doc.get("app_id") != ctx.app_id:
        raise Invalid([Problem("app_id", "does not match the token's application")])
    kind = checked.kind
    assert kind is not None  # check_item reported a problem otherwise
    start, end = checked.times
    assert start is not None
    row: Row = {
        "event_id": str(eid),
        "organisation_id": ctx.organisation_id,
        "project_id": ctx.project_id,
        "environment": ctx.environment,
        "app_id": ctx.app_id,
        "build_id": doc.get("build_id") or "",
        "player_id": doc["player_id"],
        "received_at": to_millis(ctx.received_at),
    }
    if kind is PLAYER:
        row |= {
            "event_name": doc["event_name"],
            "region": doc.get("region") or "",
            "hardware": _json(doc.get("hardware")),
            "occurred_at": to_millis(start),
        }
    elif kind is FUNNEL_STEP:
        row |= {
            "session_id": doc["session_id"],
            "step_name": doc["funnel_step_name"],
            "level_id": doc.get("level_id") or "",
            "occurred_at": to_millis(start),
        }
    elif kind is GAMEPLAY_EVENT:
        position: list[float | None] = [None, None, None]
        if checked.numbers:
            position = list(checked.numbers)
        row |= {
            "session_id": doc["session_id"],
            "event_name": doc["event_name"],
            "level_id": doc.get("level_id") or "",
            "position_x": position[0],
            "position_y": position[1],
            "position_z": position[2],
            "input_method": doc.get("input_method") or "",
            "custom_data": _json(doc.get("custom_data")),
            "occurred_at": to_millis(start),
        }
    else:
        flat = checked.numbers or []
        assert end is not None
        row |= {
            "session_id": doc["session_id"],
            "level_id": doc.get("level_id") or "",
            "status": doc.get("status") or "",
            "input_method": doc.get("input_method") or "",
            "fps_mean": _fps(doc, "mean"),
            "fps_low_5": _fps(doc, "low_5"),
            "fps_low_1": _fps(doc, "low_1"),
            "xs": flat[0::3],
            "ys": flat[1::3],
            "zs": flat[2::3],
            "point_count": len(flat) // 3,
            "started_at": to_millis(start),
            "ended_at": to_millis(end),
        }
    return kind, row


def model_id(project_id: str, app_id: str, level_name: str, sha256: str) -> uuid.UUID:
    return derived_uuid("level_model", project_id, app_id, level_name, sha256)


def normalize_model(body: Any, ctx: AppContext, mid: uuid.UUID) -> tuple[RecordKind, Row]:
    """A level model the gateway stored (POST /api/models); the body is ours, not the client's."""
    try:
        row = {
            "model_id": str(mid),
            "organisation_id": ctx.organisation_id,
            "project_id": ctx.project_id,
            "environment": ctx.environment,
            "app_id": ctx.app_id,
            "app_name": str(body["app_name"]),
            "level_name": str(body["level_name"]),
            "filename": str(body["filename"]),
            "content_type": str(body["content_type"]),
            "size_bytes": int(body["size_bytes"]),
            "sha256": str(body["sha256"]),
            "storage_key": str(body["storage_key"]),
            "uploaded_at": to_millis(ctx.received_at),
        }
    except (KeyError, TypeError, ValueError) as err:
        raise Invalid([Problem("body", f"bad model record: {err!r}")]) from err
    return LEVEL_MODEL, row
