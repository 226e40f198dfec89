"""``raw.forge`` and ``raw.msgpack`` records (the game APIs) → typed records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.processing.deadletter import InvalidMessage
from forgeline.schemas import forge, msgpack
from forgeline.schemas.checks import Invalid
from forgeline.schemas.typed import typed_record
from services.normalizer.keys import partition_key


def _game_envelope(record: Record) -> tuple[dict[str, Any], uuid.UUID, datetime]:
    try:
        doc = orjson.loads(record.value)
        return doc, uuid.UUID(doc["id"]), datetime.fromtimestamp(int(doc["received_at"]) / 1000, UTC)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise InvalidMessage("bad_raw_record", repr(err)) from err


def normalize_forge(record: Record) -> OutgoingRecord:
    """One ``raw.forge`` record (one build, session, event, report or upload) → its typed record."""
    doc, record_id, received_at = _game_envelope(record)
    ctx = forge.ForgeContext(
        str(doc.get("organisation_id")), str(doc.get("project_id")), str(doc.get("environment")), received_at
    )
    route, body = doc.get("route"), doc.get("body")
    try:
        if route == "build":
            kind, row = forge.normalize_build(body, ctx)
        elif route == "session":
            kind, row = forge.normalize_session(body, ctx, record_id)
        elif route == "event":
            kind, row = forge.normalize_event(body, ctx, record_id)
        elif route == "report":
            kind, row = forge.normalize_report(body, ctx, record_id)
        elif route == "upload":
            kind, row = forge.normalize_upload(body, ctx, record_id)
        else:
            raise InvalidMessage("unknown_route", str(route))
    except Invalid as err:
        raise InvalidMessage("invalid_payload", str(err)) from err
    return typed_record(kind, row, partition_key(kind, row))


def normalize_msgpack(record: Record) -> OutgoingRecord:
    """One ``raw.msgpack`` record (one item of a batch, or a stored level model) → its typed record."""
    doc, record_id, received_at = _game_envelope(record)
    ctx = msgpack.AppContext(
        str(doc.get("organisation_id")),
        str(doc.get("project_id")),
        str(doc.get("environment")),
        str(doc.get("app_id")),
        received_at,
    )
    try:
        if doc.get("route") == "model":
            kind, row = msgpack.normalize_model(doc.get("body"), ctx, record_id)
        else:
            kind, row = msgpack.normalize(doc.get("body"), ctx, record_id)
    except Invalid as err:
        raise InvalidMessage("invalid_payload", str(err)) from err
    return typed_record(kind, row, partition_key(kind, row))
