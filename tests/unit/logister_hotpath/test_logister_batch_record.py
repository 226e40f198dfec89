"""The Logister batch record (envelope v2): its size budget, and a bad item dead-lettered alone."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import orjson
import pytest

from forgeline.bus.port import Record
from forgeline.bus.topics import RAW_LOGISTER
from forgeline.processing.deadletter import DeadLetters
from forgeline.schemas import logister_raw
from services.normalizer.main import process_batch

pytestmark = pytest.mark.unit

AT_MS = 1_780_000_000_000


def _item(message: str = "hello", event_type: str = "log", **extra: Any) -> logister_raw.RawItem:
    event_id = str(uuid.uuid4())
    line = orjson.dumps({"event": {"uuid": event_id, "event_type": event_type, "message": message, **extra}})
    return logister_raw.RawItem(event_id, AT_MS, msgspec.Raw(line))


def _records(items: list[logister_raw.RawItem], budget: int = logister_raw.RECORD_BUDGET_BYTES) -> list[Record]:
    encoded = logister_raw.encode_batch("ingest_events", "org", "proj", "production", "tok", items, budget)
    return [Record(RAW_LOGISTER, 3, n, key, value, 0) for n, (key, value) in enumerate(encoded)]


def _event_ids(out: list[Any]) -> list[str]:
    return [orjson.loads(r.value)["event_id"] for r in out if not r.topic.startswith("dlq.")]


def test_a_batch_below_the_budget_is_one_record_keyed_by_its_first_event() -> None:
    items = [_item() for _ in range(100)]
    (record,) = _records(items)
    assert record.key == uuid.UUID(items[0].event_id).bytes
    doc = orjson.loads(record.value)
    assert (doc["v"], doc["route"], len(doc["items"])) == (2, "ingest_events", 100)
    assert doc["items"][0]["line"] == orjson.loads(bytes(items[0].line))  # the line, embedded as sent


def test_a_batch_above_the_budget_is_cut_in_order_and_every_record_fits() -> None:
    items = [_item(message="m" * 1000) for _ in range(50)]
    records = _records(items, budget=8 * 1024)
    assert len(records) > 1
    assert all(len(r.value) <= 8 * 1024 + 1024 for r in records)
    assert _event_ids(process_batch(records)) == [i.event_id for i in items]
    assert [r.key for r in records] == [uuid.UUID(orjson.loads(r.value)["items"][0]["event_id"]).bytes for r in records]


def test_the_largest_accepted_batch_never_makes_a_record_kafka_refuses() -> None:
    # 16 MiB inflated (the gateway's limit) in 1000 lines; Kafka's produce request is 8 MiB.
    line_size = 16 * 1024 * 1024 // 1000 - 100
    items = [_item(message="x" * line_size) for _ in range(1000)]
    records = _records(items)
    assert len(records) >= 4
    assert max(len(r.value) for r in records) < 8 * 1024 * 1024 - 64 * 1024


def test_one_bad_item_is_dead_lettered_alone_and_replays_once_fixed() -> None:
    good = [_item(message=f"m{n}") for n in range(4)]
    bad = _item(event_type="nonsense")  # accepted under other rules, invalid under these
    records = _records([good[0], good[1], bad, good[2], good[3]])
    dead_letters = DeadLetters("normalizer")
    out = process_batch(records, dead_letters=dead_letters)
    assert _event_ids(out) == [i.event_id for i in good]
    (dead,) = [r for r in out if r.topic.startswith("dlq.")]
    headers = dict(dead.headers)
    assert headers["reason"] == b"invalid_payload"
    assert (headers["source_topic"], headers["source_offset"]) == (RAW_LOGISTER.encode(), b"0")
    letter = orjson.loads(dead.value)
    assert letter["v"] == 2 and [i["event_id"] for i in letter["items"]] == [bad.event_id]
    # The dead letter is a raw record of its own: fixed, it normalizes to its row.
    fixed = dead.value.replace(b'"nonsense"', b'"log"')
    replayed = process_batch([Record(RAW_LOGISTER, 0, 9, dead.key, fixed, 0)])
    assert _event_ids(replayed) == [bad.event_id]
    assert dead_letters.limit.records == 5 and dead_letters.limit.dead == 1  # counted per event


def test_an_item_with_a_broken_id_or_line_loses_nothing_else() -> None:
    good = _item()
    broken_id = logister_raw.RawItem("not-a-uuid", AT_MS, msgspec.Raw(b'{"event":{"event_type":"log"}}'))
    no_envelope = logister_raw.RawItem(str(uuid.uuid4()), AT_MS, msgspec.Raw(b'{"other": 1}'))
    out = process_batch(_records([good, broken_id, no_envelope]))
    assert _event_ids(out) == [good.event_id]
    assert [dict(r.headers)["reason"] for r in out if r.topic.startswith("dlq.")] == [
        b"bad_raw_record",
        b"bad_raw_record",
    ]


@pytest.mark.parametrize(
    "value",
    [
        b'{"v":2,"route":"ingest_events"}',
        b'{"v":2,"route":"deployments","organisation_id":"o","project_id":"p",'
        b'"environment":"e","token_id":"t","items":[]}',
        b"{not json",
        b'{"v":"2"}',
    ],
    ids=["no-items", "other-route", "not-json", "odd-version"],
)
def test_a_record_that_cannot_be_read_is_dead_lettered_whole(value: bytes) -> None:
    out = process_batch([Record(RAW_LOGISTER, 0, 0, b"k", value, 0)])
    assert [(r.topic, r.value) for r in out] == [("dlq.normalizer", value)]
