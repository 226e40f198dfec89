"""Raw records of the game APIs (``raw.forge``, ``raw.msgpack``): envelope versions 1 and 2.

Version 1, one record per item: what sessions, builds, reports, uploads and level models
still are, and what every event record on a log written before version 2 is::

    raw.forge    {"v": 1, "route", <tenancy>, "token_id", "received_at", "id", "body"}
    raw.msgpack  {"v": 1, "id", <tenancy>, "app_id", "token_id", "received_at", "body"}

Version 2, one record per accepted event request (``POST /v1/ingest/events``, ``POST /api/events``
and its aliases)::

    raw.forge    {"v": 2, "route": "events", <tenancy>, "token_id", "received_at", "ids", "items"}
    raw.msgpack  {"v": 2, "route": "events", <tenancy>, "app_id", "token_id", "received_at",
                  "digest", "first", "packed"}

and one record per accepted Forge Logger session (``POST /v1/ingest/sessions``), which stands
for the build and the session version 1 appended as two records::

    raw.forge    {"v": 2, "route": "session", <tenancy>, "token_id", "received_at",
                  "build_id", "session_id", "body"}

``items`` is the request's JSON as accepted (the body itself when it is an array, a single
event as a one-item array) and ``ids`` the eventIds the response promised, in order.
``packed`` is the MessagePack body as accepted, base64: item ``n`` of it has the id
``msgpack.event_id(project, app, digest, first + n)``, exactly the id version 1 carried.

The normalizer reads a version-2 record with ``expand`` (its version-1 documents, one per
item, in order) and normalizes each one as it always did (``services/normalizer/game.py``):
a request stores exactly the rows the one-record-per-item path stored, and an item that fails
is dead-lettered alone as the version-1 record it would have been (replayable as it is).
``v1_views`` does the same from a record's bytes, for tools and tests that read raw records.

Size: Kafka refuses a record above ``max_request_bytes`` (8 MiB). A version-2 value is the
body as accepted (at most ``max_inflated_bytes``, 4 MiB, for JSON; at most
``max_msgpack_body_bytes``, 4 MiB, times 4/3 for base64) plus the envelope and at most 200
ids (8 KiB): about 5.4 MiB at the default limits; a session record holds its body once. A
request whose payload would exceed ``SPLIT_BYTES`` (raised limits) is cut between items into a
few version-2 records of the same shape and key, each under it; one item larger than that
stays one record, as in version 1.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import msgpack
import orjson

from forgeline.bus.topics import RAW_FORGE, RAW_MSGPACK
from forgeline.schemas.game_ids import msgpack_event_ids

ENVELOPE_V1 = 1
ENVELOPE_V2 = 2
EVENTS_ROUTE = "events"
SESSION_ROUTE = "session"
# Below Kafka's 8 MiB max_request_bytes, with room for the envelope, ids and record headers.
SPLIT_BYTES = 6 * 1024 * 1024

Doc = dict[str, Any]


def _ranges(sizes: Sequence[int], limit: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) item ranges whose sizes add up to at most ``limit`` (≥ 1 item each)."""
    out: list[tuple[int, int]] = []
    start, total = 0, 0
    for n, size in enumerate(sizes):
        if n > start and total + size > limit:
            out.append((start, n))
            start, total = n, 0
        total += size + 1
    out.append((start, len(sizes)))
    return out


def forge_events_values(envelope: Doc, items_json: bytes, ids: Sequence[str], limit: int = SPLIT_BYTES) -> list[bytes]:
    """The version-2 value(s) of one accepted Forge Logger event request.

    ``envelope`` holds the tenancy, token and receive time; ``items_json`` is the JSON array of
    the request's events as accepted, embedded as it is (no second serialization on the hot
    path). Only a body above ``limit`` is parsed again, to cut it between events.
    """
    head = {"v": ENVELOPE_V2, "route": EVENTS_ROUTE, **envelope}
    if len(items_json) <= limit:
        return [orjson.dumps({**head, "ids": list(ids), "items": orjson.Fragment(items_json)})]
    pieces = [orjson.dumps(item) for item in orjson.loads(items_json)]
    return [
        orjson.dumps({**head, "ids": list(ids[a:b]), "items": orjson.Fragment(b"[" + b",".join(pieces[a:b]) + b"]")})
        for a, b in _ranges([len(p) for p in pieces], limit)
    ]


def msgpack_events_values(envelope: Doc, body: bytes, digest: str, limit: int = SPLIT_BYTES) -> list[bytes]:
    """The version-2 value(s) of one accepted MessagePack event request (``body`` as accepted).

    Only a body whose base64 exceeds ``limit`` is decoded again, to cut it between items.
    """
    head = {"v": ENVELOPE_V2, "route": EVENTS_ROUTE, **envelope, "digest": digest}
    if len(body) * 4 // 3 + 4 <= limit:
        return [orjson.dumps({**head, "first": 0, "packed": base64.b64encode(body).decode()})]
    docs = _unpack(body)
    pieces = [len(msgpack.packb(doc)) * 4 // 3 + 4 for doc in docs]
    return [
        orjson.dumps({**head, "first": a, "packed": base64.b64encode(msgpack.packb(docs[a:b])).decode()})
        for a, b in _ranges(pieces, limit)
    ]


def forge_session_value(envelope: Doc, body_json: bytes, build_id: str, session_id: str) -> bytes:
    """The version-2 value of one accepted session request (its body as accepted, embedded as it is)."""
    head = {"v": ENVELOPE_V2, "route": SESSION_ROUTE, **envelope, "build_id": build_id, "session_id": session_id}
    return orjson.dumps({**head, "body": orjson.Fragment(body_json)})


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"ext type {code}")


def _unpack(body: bytes) -> list[Any]:
    """The items of a MessagePack events body (one map, or an array of them), as the gateway read them."""
    doc = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True, ext_hook=_refuse_ext)
    return doc if isinstance(doc, list) else [doc]


def unpack_items(packed: str) -> list[Any]:
    """The items of a version-2 MessagePack record (its ``packed`` body)."""
    return _unpack(base64.b64decode(packed, validate=True))


def _forge_head(doc: Doc, route: str) -> Doc:
    return {
        "v": ENVELOPE_V1,
        "route": route,
        "organisation_id": doc["organisation_id"],
        "project_id": doc["project_id"],
        "environment": doc["environment"],
        "token_id": doc.get("token_id", ""),
        "received_at": doc["received_at"],
    }


def _forge_views(doc: Doc) -> list[Doc]:
    ids, items = doc["ids"], doc["items"]
    if not isinstance(ids, list) or not isinstance(items, list) or len(ids) != len(items):
        raise ValueError("a version-2 raw.forge record needs as many ids as items")
    head = _forge_head(doc, "event")
    return [{**head, "id": record_id, "body": item} for record_id, item in zip(ids, items, strict=True)]


def _session_views(doc: Doc) -> list[Doc]:
    """The build and the session, in the order version 1 appended them."""
    body = doc["body"]
    return [
        {**_forge_head(doc, "build"), "id": str(doc["build_id"]), "body": body},
        {**_forge_head(doc, "session"), "id": str(doc["session_id"]), "body": body},
    ]


def _msgpack_views(doc: Doc) -> list[Doc]:
    project_id, app_id, digest, first = doc["project_id"], doc["app_id"], doc["digest"], doc["first"]
    if not isinstance(first, int) or not isinstance(digest, str) or not isinstance(app_id, str):
        raise ValueError("a version-2 raw.msgpack record needs a digest, an app_id and a first index")
    items = unpack_items(doc["packed"])
    ids = msgpack_event_ids(str(project_id), app_id, digest, first, len(items))
    views: list[Doc] = []
    for event_id, item in zip(ids, items, strict=True):
        views.append(
            {
                "v": ENVELOPE_V1,
                "id": event_id,
                "organisation_id": doc["organisation_id"],
                "project_id": project_id,
                "environment": doc["environment"],
                "app_id": app_id,
                "token_id": doc.get("token_id", ""),
                "received_at": doc["received_at"],
                "body": item,
            }
        )
    return views


def expand(topic: str, doc: Doc) -> list[Doc]:
    """A version-2 record (parsed) as version-1 documents, one per item, in order."""
    route = doc.get("route")
    if topic == RAW_FORGE and route == EVENTS_ROUTE:
        return _forge_views(doc)
    if topic == RAW_FORGE and route == SESSION_ROUTE:
        return _session_views(doc)
    if topic == RAW_MSGPACK and route == EVENTS_ROUTE:
        return _msgpack_views(doc)
    raise ValueError(f"no version-2 {route!r} records on {topic}")


def v1_views(topic: str, value: bytes) -> list[Doc]:
    """A raw game record as version-1 documents, one per item (a version-1 record is its own).

    Raises ValueError (or KeyError, TypeError) for a value that is no raw game record.
    """
    doc = orjson.loads(value)
    if not isinstance(doc, dict):
        raise ValueError("a raw record is a JSON object")
    return expand(topic, doc) if doc.get("v") == ENVELOPE_V2 else [doc]
