"""POST /api/v1/ingest_events/batch: the size of one line.

A line is one event, so it may be as large as an event sent alone to /api/v1/ingest_events
and no larger. A larger line is rejected as that line's own error in the 422 (the rest of
the batch rolled back, nothing stored), as any invalid line is; so no accepted batch makes a
raw record that Kafka's produce request (8 MiB) would refuse.
"""

from __future__ import annotations

import gzip
import uuid
from typing import Any

import orjson
import pytest

from forgeline.bus.kafka_options import KafkaOptions
from services.gateway.routes.logister_batch import max_line_bytes
from tests.conftest import GatewayHarness, read_all

pytestmark = pytest.mark.contract

BATCH = "/api/v1/ingest_events/batch"
SINGLE = "/api/v1/ingest_events"
MIB = 1 << 20


def _line(size: int | None = None, event_id: str | None = None) -> bytes:
    """An event line of exactly ``size`` bytes (padded in its context), or a small one."""
    event = {"uuid": event_id or str(uuid.uuid4()), "event_type": "log", "message": "hello", "context": {"pad": ""}}
    line = orjson.dumps({"event": event})
    if size is None:
        return line
    assert size >= len(line)
    event["context"] = {"pad": "x" * (size - len(line))}
    line = orjson.dumps({"event": event})
    assert len(line) == size
    return line


def _post_batch(gw: GatewayHarness, lines: list[bytes]) -> Any:
    headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip", **gw.auth}
    return gw.client.post(BATCH, content=gzip.compress(b"\n".join(lines) + b"\n", compresslevel=1), headers=headers)


def _post_single(gw: GatewayHarness, line: bytes) -> Any:
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", **gw.auth}
    return gw.client.post(SINGLE, content=gzip.compress(line, compresslevel=1), headers=headers)


def test_a_line_larger_than_one_event_may_be_is_its_own_error_and_the_rest_rolls_back(
    gateway: GatewayHarness,
) -> None:
    limit = max_line_bytes(gateway.settings)
    big_id = str(uuid.uuid4())
    # 12 MiB inflated: within the batch's own caps (4 MiB gzip, 16 MiB inflated), above one event's.
    lines = [_line(), _line(12 * MIB, big_id), _line()]
    response = _post_batch(gateway, lines)
    assert response.status_code == 422, response.text[:300]
    body = response.json()
    assert body["status"] == "rejected"
    assert [r["status"] for r in body["results"]] == ["rolled_back", "rejected", "rolled_back"]
    rejected = body["results"][1]
    assert (rejected["line"], rejected["id"]) == (2, big_id)
    assert rejected["errors"] == [f"Event is larger than {limit} bytes, the limit for one event"]
    assert gateway.raw() == []


def test_the_line_limit_is_what_the_single_event_route_accepts(make_gateway: Any) -> None:
    gw = make_gateway(max_body_bytes=1000, max_inflated_bytes=3000)
    limit = max_line_bytes(gw.settings)
    assert limit == 3000
    at_limit, above = _line(limit), _line(limit + 1)
    # Sent alone (gzip), the same events: the one at the limit accepted, the one above refused.
    assert _post_single(gw, at_limit).status_code == 201
    assert _post_single(gw, above).status_code == 413
    accepted = _post_batch(gw, [_line(), at_limit])
    assert accepted.status_code == 202, accepted.text
    refused = _post_batch(gw, [above, _line()])
    assert refused.status_code == 422
    assert [r["status"] for r in refused.json()["results"]] == ["rejected", "rolled_back"]
    assert str(limit) in refused.json()["results"][0]["errors"][0]
    # The single event and the batch of two; nothing of the refused batch.
    assert sum(len(r.get("items", [r])) for r in gw.raw()) == 3


def test_a_line_above_a_larger_plain_body_limit_counts_that_limit(make_gateway: Any) -> None:
    gw = make_gateway(max_body_bytes=5000, max_inflated_bytes=3000)
    assert max_line_bytes(gw.settings) == 5000
    assert _post_batch(gw, [_line(5000)]).status_code == 202
    assert _post_batch(gw, [_line(5001)]).status_code == 422


def test_every_record_of_the_largest_accepted_batch_fits_a_kafka_request(gateway: GatewayHarness) -> None:
    limit = max_line_bytes(gateway.settings)
    # Three lines of the largest size and small ones around them: about 12 MiB inflated.
    lines = [_line(limit), _line(), _line(limit), *[_line() for _ in range(50)], _line(limit)]
    response = _post_batch(gateway, lines)
    assert response.status_code == 202, response.text[:300]
    records = read_all(gateway.bus, "raw.logister")
    assert sum(len(orjson.loads(r.value)["items"]) for r in records) == len(lines)
    kafka_request = KafkaOptions(bootstrap_servers=("localhost:9092",)).max_request_bytes
    largest = max(len(r.value) + len(r.key or b"") for r in records)
    assert largest < kafka_request - 64 * 1024, largest  # room for the record batch's own headers
