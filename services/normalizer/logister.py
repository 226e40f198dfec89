"""``raw.logister`` records → typed records.

A record is one event (``"v": 1``: the single routes, and logs written before batch records
existed) or one accepted batch request (``"v": 2``, ``forgeline.schemas.logister_raw``).
Both go through the same ``normalize_*`` function with the same context, so one event gives
the same typed record (same id, same cells, same key) whichever shape carried it; a batch
item in the common error/log shape takes the compiled fast path (``logister_fast.event_row``),
which gives that same row.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.processing.deadletter import InvalidMessage
from forgeline.schemas import logister, logister_fast, logister_raw
from forgeline.schemas.typed import typed_record
from services.normalizer.failed import FailedItem, Split
from services.normalizer.keys import partition_key


def normalize_logister(record: Record) -> OutgoingRecord:
    """One ``"v": 1`` ``raw.logister`` record → its typed record. Raises InvalidMessage for bad data."""
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
    return _typed(route, body, ctx)


def split_logister(record: Record) -> Split:
    """The typed records of a ``raw.logister`` record of either version, in item order, and
    the items that failed, each as a one-item batch record (one bad event of a batch never
    loses the others).

    Raises InvalidMessage when the record as a whole cannot be read (dead-lettered whole).
    """
    try:
        version = logister_raw.version(record.value)
    except msgspec.MsgspecError:
        version = logister_raw.V1  # not JSON, or no usable "v": the v1 reader says why
    if version != logister_raw.V2:
        return [normalize_logister(record)], []
    try:
        batch = logister_raw.decode_batch(record.value)
    except msgspec.MsgspecError as err:
        raise InvalidMessage("bad_raw_record", str(err)) from err
    if batch.route != "ingest_events":
        raise InvalidMessage("unknown_route", batch.route)
    typed: list[OutgoingRecord] = []
    failed: list[FailedItem] = []
    for n, item in enumerate(batch.items):
        try:
            typed.append(_batch_item(batch, item))
        except Exception as err:  # noqa: BLE001 - one item's failure, never its neighbours'
            failed.append(FailedItem(_item_record(record, batch, item), err, str(n)))
    return typed, failed


def _batch_item(batch: logister_raw.RawBatch, item: logister_raw.RawItem) -> OutgoingRecord:
    try:
        ctx = logister.IngestContext(
            event_id=uuid.UUID(item.event_id),
            organisation_id=batch.organisation_id,
            project_id=batch.project_id,
            default_environment=batch.environment,
            received_at=datetime.fromtimestamp(item.received_at / 1000, UTC),
        )
        line = memoryview(item.line)
        body = logister.extract_envelope(orjson.loads(line), logister.EVENT_ENVELOPES)
    except (orjson.JSONDecodeError, TypeError, ValueError, OverflowError, logister.MissingEnvelope) as err:
        raise InvalidMessage("bad_raw_record", repr(err)) from err
    event = logister_fast.decode_line(line)
    if event is None or not logister_fast.valid_event(event):
        return _typed(batch.route, body, ctx)  # the full validator: other types and shapes
    kind, row = logister_fast.event_row(event, body, ctx)
    return typed_record(kind, row, partition_key(kind, row))


def _typed(route: object, body: dict[str, Any], ctx: logister.IngestContext) -> OutgoingRecord:
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
        # The gateway validated with the same rules; this happens only when they changed
        # between acceptance and processing (e.g. replaying an old log).
        raise InvalidMessage("invalid_payload", "; ".join(err.errors)) from err
    return typed_record(kind, row, partition_key(kind, row))


def _item_record(record: Record, batch: logister_raw.RawBatch, item: logister_raw.RawItem) -> Record:
    """``item`` as a one-item batch record at ``record``'s position (its dead letter's source)."""
    value = logister_raw.encode_items(
        batch.route, batch.organisation_id, batch.project_id, batch.environment, batch.token_id, [item]
    )
    return record._replace(value=value)
