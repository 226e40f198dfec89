"""POST /api/v1/ingest_events through the compiled fast path: the record it appends (the event's
JSON as received) normalizes to exactly the row the full path's record gave, and an event the
fast path cannot prove valid still gets the full validator's answer."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from forgeline.bus.port import Record
from forgeline.bus.topics import RAW_LOGISTER
from forgeline.schemas import logister
from forgeline.schemas.typed import typed_record
from services.normalizer.keys import partition_key
from services.normalizer.logister import normalize_logister
from tests.conftest import GatewayHarness, read_all
from tests.property.logister_strategies import common_shape_event

pytestmark = pytest.mark.contract

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(event=common_shape_event())
def test_a_single_event_is_stored_as_the_full_path_would_store_it(
    gateway: GatewayHarness, event: dict[str, Any]
) -> None:
    event = {**event, "uuid": str(uuid.uuid4())}
    headers = {"Content-Type": "application/json", **gateway.auth}
    # Spaces after separators: the body is kept as received, and must still read the same.
    response = gateway.client.post("/api/v1/ingest_events", content=json.dumps({"event": event}), headers=headers)
    at = datetime.fromtimestamp(gateway.clock.time(), UTC)
    ctx = logister.IngestContext(
        uuid.UUID(event["uuid"]),
        gateway.tokens["organisation_id"],
        gateway.tokens["project_id"],
        gateway.tokens["environment"],
        at,
    )
    try:
        kind, row = logister.normalize_event(event, ctx)
    except logister.Invalid as err:
        assert (response.status_code, response.json()) == (422, {"errors": err.errors})
        return
    assert response.status_code == 201, response.text
    assert response.json()["id"] == event["uuid"]
    (record,) = [r for r in read_all(gateway.bus, RAW_LOGISTER) if orjson.loads(r.value)["event_id"] == event["uuid"]]
    assert orjson.loads(record.value)["body"] == event
    typed = normalize_logister(Record(RAW_LOGISTER, 0, 0, record.key, record.value, 0))
    expected = typed_record(kind, row, partition_key(kind, row))
    assert (typed.topic, typed.key, typed.value) == (expected.topic, expected.key, expected.value)
