"""One raw record per accepted Logister batch (envelope v2): for random valid batches through
the real gateway app, the normalizer's split path gives exactly the typed records (same ids,
same cells, same keys) the one-record-per-event path gave; a refused batch appends nothing;
version-1 records still normalize to the same rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.bus.topics import RAW_LOGISTER
from forgeline.schemas import logister, logister_raw
from forgeline.schemas.common import to_millis
from forgeline.schemas.typed import typed_record
from services.normalizer.keys import partition_key
from services.normalizer.main import process_batch
from tests.conftest import GatewayHarness, read_all
from tests.property.logister_strategies import INVALID_CHANGES, valid_event

pytestmark = pytest.mark.contract

PROPERTY = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
BATCH = "/api/v1/ingest_events/batch"


def _post(gw: GatewayHarness, events: list[dict[str, Any]]) -> Any:
    body = b"".join(orjson.dumps({"event": event}) + b"\n" for event in events)
    headers = {"Content-Type": "application/x-ndjson", **gw.auth}
    return gw.client.post(BATCH, content=body, headers=headers)


def _positions(gw: GatewayHarness) -> set[tuple[int, int]]:
    return {(r.partition, r.offset) for r in read_all(gw.bus, RAW_LOGISTER)}


def _new_records(gw: GatewayHarness, seen: set[tuple[int, int]]) -> list[Record]:
    """The raw records appended since ``seen`` (partitions are read in no set order)."""
    return [r for r in read_all(gw.bus, RAW_LOGISTER) if (r.partition, r.offset) not in seen]


def _as_tuples(records: list[OutgoingRecord]) -> list[tuple[str, bytes | None, bytes]]:
    return [(r.topic, r.key, r.value) for r in records]


def v1_record(gw: GatewayHarness, event: dict[str, Any], received_at: datetime, offset: int) -> Record:
    """The record the gateway appended for ``event`` before batch records existed."""
    value = {
        "v": 1,
        "route": "ingest_events",
        "event_id": str(uuid.UUID(event["uuid"])),
        "organisation_id": gw.tokens["organisation_id"],
        "project_id": gw.tokens["project_id"],
        "environment": gw.tokens["environment"],
        "token_id": "t",
        "received_at": to_millis(received_at),
        "body": event,
    }
    return Record(RAW_LOGISTER, 0, offset, uuid.UUID(event["uuid"]).bytes, orjson.dumps(value), 0)


@PROPERTY
@given(events=st.lists(valid_event(), min_size=1, max_size=12), spellings=st.data())
def test_a_batch_record_splits_into_the_rows_of_one_record_per_event(
    gateway: GatewayHarness, events: list[dict[str, Any]], spellings: st.DataObject
) -> None:
    gateway.clock.advance(1.5)
    for event in events:
        event_id = uuid.uuid4()
        event["uuid"] = spellings.draw(st.sampled_from([str(event_id), str(event_id).upper(), event_id.hex]))
    seen = _positions(gateway)
    response = _post(gateway, events)
    assert response.status_code == 202, response.text
    ids = [r["id"] for r in response.json()["results"]]
    assert ids == [str(uuid.UUID(e["uuid"])) for e in events]

    records = _new_records(gateway, seen)
    assert len(records) == 1, "one raw record per accepted batch"
    split = process_batch(records)
    received_at = datetime.fromtimestamp(gateway.clock.time(), UTC)
    one_per_event = process_batch([v1_record(gateway, e, received_at, n) for n, e in enumerate(events)])
    assert _as_tuples(split) == _as_tuples(one_per_event)
    assert not any(r.topic.startswith("dlq.") for r in split)
    stored_ids = [orjson.loads(r.value).get("event_id", orjson.loads(r.value).get("deployment_id")) for r in split]
    assert stored_ids == ids, "every id in the response is the id of the stored row"


@PROPERTY
@given(
    events=st.lists(valid_event(), min_size=1, max_size=8),
    bad_at=st.integers(0, 7),
    change=st.sampled_from(INVALID_CHANGES),
)
def test_a_rejected_batch_appends_nothing(
    gateway: GatewayHarness, events: list[dict[str, Any]], bad_at: int, change: dict[str, Any]
) -> None:
    for event in events:
        event["uuid"] = str(uuid.uuid4())
    bad = bad_at % len(events)
    events[bad] = {**events[bad], **change}
    seen = _positions(gateway)
    response = _post(gateway, events)
    assert response.status_code == 422, response.text
    statuses = [r["status"] for r in response.json()["results"]]
    assert statuses[bad] == "rejected" and statuses.count("rejected") == 1
    assert _new_records(gateway, seen) == []


@settings(max_examples=100, deadline=None, database=None)
@given(events=st.lists(valid_event(), min_size=1, max_size=6), at=st.datetimes(timezones=st.just(UTC)))
def test_old_records_replay_to_the_same_rows_beside_batch_records(events: list[dict[str, Any]], at: datetime) -> None:
    """A log holding both shapes (written before and after an upgrade) gives each event the row
    the one-event normalizer always gave it: normalize_event on the body, keyed as before."""
    at = at.replace(year=min(max(at.year, 1971), 2199), microsecond=0)
    tokens = {"organisation_id": "org", "project_id": "proj", "environment": "production"}
    harness: Any = type("Tokens", (), {"tokens": tokens})()
    for event in events:
        event["uuid"] = str(uuid.uuid4())
    expected = []
    for event in events:
        ctx = logister.IngestContext(uuid.UUID(event["uuid"]), "org", "proj", "production", at)
        kind, row = logister.normalize_event(event, ctx)
        expected.append(typed_record(kind, row, partition_key(kind, row)))
    old = [v1_record(harness, e, at, n) for n, e in enumerate(events)]
    items = [logister_raw.RawItem(e["uuid"], to_millis(at), msgspec.Raw(orjson.dumps({"event": e}))) for e in events]
    new = [
        Record(RAW_LOGISTER, 0, len(old) + n, key, value, 0)
        for n, (key, value) in enumerate(
            logister_raw.encode_batch("ingest_events", "org", "proj", "production", "t", items)
        )
    ]
    assert _as_tuples(process_batch(old + new)) == _as_tuples(expected + expected)


@PROPERTY
@given(events=st.lists(valid_event(), min_size=2, max_size=12))
def test_a_batch_above_the_record_budget_is_a_few_records_with_every_row(
    gateway: GatewayHarness, events: list[dict[str, Any]]
) -> None:
    for event in events:
        event["uuid"] = str(uuid.uuid4())
    seen = _positions(gateway)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logister_raw, "RECORD_BUDGET_BYTES", 200)  # about one event a record
        response = _post(gateway, events)
    assert response.status_code == 202, response.text
    records = _new_records(gateway, seen)
    assert len(records) > 1
    assert all(r.key == uuid.UUID(orjson.loads(r.value)["items"][0]["event_id"]).bytes for r in records)
    order = {e["uuid"]: n for n, e in enumerate(events)}
    records.sort(key=lambda r: order[orjson.loads(r.value)["items"][0]["event_id"]])  # partitions: any order
    split = process_batch(records)
    stored = [orjson.loads(r.value).get("event_id") for r in split]
    assert stored == [e["uuid"] for e in events]
