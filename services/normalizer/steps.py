"""Raw payload → typed record. Pure: no I/O, same output for the same input (replay-safe)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.bus.topics import RAW_LOGISTER, TICK_HEADER, TYPED_CHECKINS
from forgeline.grouping import group_fingerprint, group_key
from forgeline.processing.deadletter import InvalidMessage
from forgeline.schemas import logister
from forgeline.schemas.records import CHECK_IN, DEPLOYMENT, ERROR, METRIC, SPAN, TRANSACTION, RecordKind


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


NORMALIZERS = {RAW_LOGISTER: normalize_logister}


def forward_tick(record: Record, checkin_partitions: int) -> list[OutgoingRecord]:
    """A raw stream-clock tick → one tick per ``typed.checkins`` partition, tagged with the
    raw partition it came from (the monitor evaluator's clock needs both; see
    ``services/monitors/steps.py``)."""
    headers = ((TICK_HEADER, b"1"), ("source_partition", str(record.partition).encode()))
    return [
        OutgoingRecord(TYPED_CHECKINS, record.value, headers=headers, partition=q) for q in range(checkin_partitions)
    ]
