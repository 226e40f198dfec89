"""``raw.forge`` and ``raw.msgpack`` records (the game APIs) → typed records.

A version-1 raw record is one item and gives one typed record; a version-2 record is one
accepted event request and gives one typed record per item (``forgeline.schemas.game_raw``).
Each item of a version-2 record is normalized as the version-1 record it would have been,
so both shapes store the same rows. An item that fails is returned as a failed item (the
normalizer dead-letters it on its own, as that version-1 record: replayable as it is), and
the other items of its request go on; a version-1 record that fails, or a version-2 record
that cannot be read at all, raises for the normalizer to dead-letter whole. The items of a
version-2 record take the compiled path (``game_structs.forge_event_row``,
``game_structs.msgpack_rows``: the same rows, without the Python checks) whenever it
accepts them.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.bus.topics import RAW_FORGE
from forgeline.processing.deadletter import InvalidMessage
from forgeline.schemas import forge, game_raw, game_structs, msgpack
from forgeline.schemas.checks import Invalid
from forgeline.schemas.records import GAME_EVENT
from forgeline.schemas.typed import typed_record
from services.normalizer.failed import FailedItem, Split
from services.normalizer.keys import partition_key

Doc = dict[str, Any]


def _ids(doc: Doc) -> tuple[uuid.UUID, datetime]:
    try:
        return uuid.UUID(doc["id"]), datetime.fromtimestamp(int(doc["received_at"]) / 1000, UTC)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise InvalidMessage("bad_raw_record", repr(err)) from err


def _forge_context(doc: Doc, received_at: datetime) -> forge.ForgeContext:
    return forge.ForgeContext(
        str(doc.get("organisation_id")), str(doc.get("project_id")), str(doc.get("environment")), received_at
    )


def _app_context(doc: Doc, received_at: datetime) -> msgpack.AppContext:
    return msgpack.AppContext(
        str(doc.get("organisation_id")),
        str(doc.get("project_id")),
        str(doc.get("environment")),
        str(doc.get("app_id")),
        received_at,
    )


def _forge_typed(doc: Doc) -> OutgoingRecord:
    """One version-1 ``raw.forge`` document (build, session, event, report or upload) → its typed record."""
    record_id, received_at = _ids(doc)
    ctx = _forge_context(doc, received_at)
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


def _msgpack_typed(doc: Doc) -> OutgoingRecord:
    """One version-1 ``raw.msgpack`` document (one event, or a stored level model) → its typed record."""
    record_id, received_at = _ids(doc)
    ctx = _app_context(doc, received_at)
    try:
        if doc.get("route") == "model":
            kind, row = msgpack.normalize_model(doc.get("body"), ctx, record_id)
        else:
            kind, row = msgpack.normalize(doc.get("body"), ctx, record_id)
    except Invalid as err:
        raise InvalidMessage("invalid_payload", str(err)) from err
    return typed_record(kind, row, partition_key(kind, row))


def _parse(record: Record) -> Doc:
    try:
        doc = orjson.loads(record.value)
    except orjson.JSONDecodeError as err:
        raise InvalidMessage("bad_raw_record", repr(err)) from err
    if not isinstance(doc, dict):
        raise InvalidMessage("bad_raw_record", "a raw record is a JSON object")
    return doc


def _split(record: Record, one: Callable[[Doc], OutgoingRecord]) -> Split:
    doc = _parse(record)
    if doc.get("v") != game_raw.ENVELOPE_V2:
        return [one(doc)], []
    try:
        views = game_raw.expand(record.topic, doc)
    except (KeyError, TypeError, ValueError) as err:
        raise InvalidMessage("bad_raw_record", repr(err)) from err
    if record.topic == RAW_FORGE:
        fast = _forge_event_typed(views) if doc.get("route") == game_raw.EVENTS_ROUTE else None
    else:
        fast = _msgpack_item_typed(doc, views)
    out: list[OutgoingRecord] = []
    failed: list[FailedItem] = []
    for n, view in enumerate(views):
        try:
            typed = fast(n, view) if fast is not None else None
            out.append(typed if typed is not None else one(view))
        except Exception as err:  # noqa: BLE001 - one item's failure, never its request's
            failed.append(FailedItem(record._replace(value=orjson.dumps(view)), err, str(n)))
    return out, failed


# A compiled path for the items of one version-2 record: item n's typed record, or None to
# normalize it the version-1 way (which names what is wrong with it).
FastPath = Callable[[int, Doc], OutgoingRecord | None]


def _forge_event_typed(views: list[Doc]) -> FastPath | None:
    """The events of one version-2 ``raw.forge`` record, one context for all of them."""
    if not views:
        return None
    _, received_at = _ids(views[0])
    ctx = _forge_context(views[0], received_at)

    def typed(n: int, view: Doc) -> OutgoingRecord | None:
        record_id, _ = _ids(view)
        row = game_structs.forge_event_row(view.get("body"), ctx, str(record_id))
        return None if row is None else typed_record(GAME_EVENT, row, partition_key(GAME_EVENT, row))

    return typed


def _msgpack_item_typed(doc: Doc, views: list[Doc]) -> FastPath | None:
    """The items of one version-2 ``raw.msgpack`` record: their rows from the compiled schema
    (``game_structs.msgpack_rows``, the packed body decoded once), one context for all."""
    if not views:
        return None
    _, received_at = _ids(views[0])
    ctx = _app_context(views[0], received_at)
    ids = [view["id"] for view in views]  # game_raw derived them: canonical UUID text
    rows = game_structs.msgpack_rows(base64.b64decode(doc["packed"]), ctx, ids)
    if rows is None:
        return None

    def typed(n: int, view: Doc) -> OutgoingRecord | None:
        made = rows[n]
        if made is None:
            return None
        kind, row = made
        return typed_record(kind, row, partition_key(kind, row))

    return typed


def split_forge(record: Record) -> Split:
    """A ``raw.forge`` record → its typed records (one, or one per item of a version-2 record)
    and its failed items."""
    return _split(record, _forge_typed)


def split_msgpack(record: Record) -> Split:
    """A ``raw.msgpack`` record → its typed records (one, or one per item of a version-2
    record) and its failed items."""
    return _split(record, _msgpack_typed)
