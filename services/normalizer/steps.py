"""Raw payload → typed record. Pure: no I/O, same output for the same input (replay-safe)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.bus.topics import RAW_FORGE, RAW_LOGISTER, RAW_MSGPACK, TICK_HEADER, TYPED_CHECKINS
from forgeline.grouping import group_fingerprint, group_key
from forgeline.processing.deadletter import InvalidMessage
from forgeline.schemas import forge, logister, msgpack
from forgeline.schemas.checks import Invalid
from forgeline.schemas.records import (
    CHECK_IN,
    DEPLOYMENT,
    ERROR,
    GAME_EVENT,
    LEVEL_MODEL,
    METRIC,
    PLAYER,
    SESSION,
    SPAN,
    TRANSACTION,
    RecordKind,
)
from services.normalizer.game_errors import game_error


def partition_key(kind: RecordKind, row: dict[str, Any]) -> bytes:
    """The key of the next stage (SPEC 6): fingerprint for errors, trace for spans, monitor for check-ins."""
    if kind is ERROR:
        # The error grouper's rule (masked numbers/ids): one group, one partition, one owner.
        fp = group_fingerprint(row["fingerprint"], row["message"], row["exception_class"])
        return group_key(row["project_id"], fp)
    elif kind is SPAN:
        value = f"{row['project_id']}/{row['trace_id']}"
    elif kind is CHECK_IN:
        value = f"{row['project_id']}/{row['environment']}/{row['slug']}"
    elif kind is METRIC:
        value = f"{row['project_id']}/{row['name']}"
    elif kind is TRANSACTION:
        value = f"{row['project_id']}/{row['transaction_name']}"
    elif kind is DEPLOYMENT:
        value = f"{row['project_id']}/{row['release']}"
    elif kind is SESSION or kind is GAME_EVENT:
        value = row["session_id"]  # SPEC 6: session for game events
    elif kind is PLAYER:
        value = f"{row['app_id']}/{row['player_id']}"
    elif kind is LEVEL_MODEL:
        value = row["model_id"]  # its own id: a model has no session
    elif "app_id" in row:
        value = f"{row['app_id']}/{row['session_id']}"
    elif "event_id" not in row:
        value = str(row[kind.columns[0][0]])  # builds, reports, uploads: their own id
    else:
        value = row["event_id"]
    return value.encode()


def normalize_logister(record: Record) -> OutgoingRecord:
    """One ``raw.logister`` record → its typed record. Raises InvalidMessage for bad data."""
    try:
        doc = orjson.loads(record.value)
        route = doc["route"]
        body = doc["body"]
        ctx = logister.IngestContext(
            event_id=uuid.UUID(doc["event_id"]),
            organisation_id=str(doc["organisation_id"]),
            project_id=str(doc["project_id"]),
            default_environment=str(doc["environment"]),
            received_at=datetime.fromtimestamp(int(doc["received_at"]) / 1000, UTC),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise InvalidMessage("bad_raw_record", repr(err)) from err
    if not isinstance(body, dict):
        raise InvalidMessage("bad_raw_record", "body is not an object")
    try:
        if route == "ingest_events":
            kind, row = logister.normalize_event(body, ctx)
        elif route == "check_ins":
            kind, row = logister.normalize_check_in(body, ctx)
        elif route == "deployments":
            kind, row = logister.normalize_deployment(body, ctx)
        else:
            raise InvalidMessage("unknown_route", str(route))
    except logister.Invalid as err:
        # The gateway validated with the same function; this happens only when the rules
        # changed between acceptance and processing (e.g. replaying an old log).
        raise InvalidMessage("invalid_payload", "; ".join(err.errors)) from err
    return OutgoingRecord(kind.topic, orjson.dumps(row), key=partition_key(kind, row))


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
    return OutgoingRecord(kind.topic, orjson.dumps(row), key=partition_key(kind, row))


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
    return OutgoingRecord(kind.topic, orjson.dumps(row), key=partition_key(kind, row))


NORMALIZERS = {RAW_LOGISTER: normalize_logister, RAW_FORGE: normalize_forge, RAW_MSGPACK: normalize_msgpack}


def normalize(record: Record) -> list[OutgoingRecord]:
    """A raw record's typed record, and the typed error it also is when it is a game crash
    (one inbox for game and backend errors: ``services/normalizer/game_errors.py``)."""
    typed = NORMALIZERS[record.topic](record)
    error = game_error(typed)
    return [typed] if error is None else [typed, error]


def forward_tick(record: Record, checkin_partitions: int) -> list[OutgoingRecord]:
    """A raw stream-clock tick → one tick per ``typed.checkins`` partition, tagged with the
    raw partition it came from (the monitor evaluator's clock needs both; see
    ``services/monitors/steps.py``)."""
    headers = ((TICK_HEADER, b"1"), ("source_partition", str(record.partition).encode()))
    return [
        OutgoingRecord(TYPED_CHECKINS, record.value, headers=headers, partition=q) for q in range(checkin_partitions)
    ]
