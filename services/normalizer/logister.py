"""``raw.logister`` records → typed records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.processing.deadletter import InvalidMessage
from forgeline.schemas import logister
from forgeline.schemas.typed import typed_record
from services.normalizer.keys import partition_key


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
    return typed_record(kind, row, partition_key(kind, row))
