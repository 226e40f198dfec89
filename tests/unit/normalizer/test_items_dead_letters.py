"""Items of a raw record (one accepted request) in the normalizer: every family splits the
same way, bad items count toward the dead-letter limit and get a dead_letters row each, and
a poll is normalized, appended and committed in slices of about ``normalizer_batch`` items."""

from __future__ import annotations

import asyncio
import tracemalloc
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import msgspec
import orjson
import pytest

from forgeline.bus.port import OutgoingRecord, Record, TopicPartition
from forgeline.bus.topics import RAW_FORGE, RAW_LOGISTER, RAW_MSGPACK, dead_letter_topic
from forgeline.processing.deadletter import DeadLetterLimitExceeded, DeadLetters
from forgeline.processing.loop import next_offsets
from forgeline.schemas import forge, game_raw, logister_raw
from services.normalizer.main import NormalizeStrategy, process_batch
from services.normalizer.steps import NORMALIZERS, normalize
from services.writer.steps import dead_letter_row
from tests.property.game_strategies import session_ids

pytestmark = pytest.mark.unit

TENANCY = {"organisation_id": "org", "project_id": "proj", "environment": "production"}
RECEIVED = 1_775_000_000_000
SESSION = session_ids("proj", 1)[0]
DLQ = dead_letter_topic("normalizer")


def _forge_record(items: list[dict[str, Any]], offset: int = 7) -> Record:
    ids = [str(i) for i in forge.event_ids("proj", "production", uuid.uuid4().hex * 2, len(items))]
    envelope = {**TENANCY, "token_id": "tok", "received_at": RECEIVED}
    [value] = game_raw.forge_events_values(envelope, orjson.dumps(items), ids)
    return Record(RAW_FORGE, 0, offset, b"key", value, 0)


def _msgpack_record(items: list[dict[str, Any]], offset: int = 3) -> Record:
    envelope = {**TENANCY, "app_id": "app", "token_id": "tok", "received_at": RECEIVED}
    [value] = game_raw.msgpack_events_values(envelope, msgpack.packb(items), uuid.uuid4().hex * 2)
    return Record(RAW_MSGPACK, 0, offset, b"key", value, 0)


def _logister_record(items: list[logister_raw.RawItem], offset: int = 0, partition: int = 0) -> Record:
    [(key, value)] = logister_raw.encode_batch("ingest_events", "org", "proj", "production", "tok", items)
    return Record(RAW_LOGISTER, partition, offset, key, value, 0)


def _logister_item(event_type: str = "log", message: str = "hello") -> logister_raw.RawItem:
    event_id = str(uuid.uuid4())
    line = orjson.dumps({"event": {"uuid": event_id, "event_type": event_type, "message": message}})
    return logister_raw.RawItem(event_id, RECEIVED, msgspec.Raw(line))


GOOD_FORGE = {"sessionId": SESSION, "type": "level_start"}
BAD_FORGE = {"sessionId": SESSION, "type": "x" * 500}  # too long: only a bug or a replay gets it here
GOOD_MSGPACK = {"app_id": "app", "player_id": "p", "event_name": "Create_Player", "timestamp": "2026-02-12T10:00:00Z"}
BAD_MSGPACK = {**GOOD_MSGPACK, "app_id": "another-app"}


def _bad_request(family: str, count: int) -> Record:
    if family == RAW_FORGE:
        return _forge_record([BAD_FORGE] * count)
    if family == RAW_MSGPACK:
        return _msgpack_record([BAD_MSGPACK] * count)
    return _logister_record([_logister_item(event_type="nonsense") for _ in range(count)])


FAMILIES = [RAW_LOGISTER, RAW_FORGE, RAW_MSGPACK]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_request_of_bad_items_trips_the_dead_letter_limit(family: str) -> None:
    # A bad deploy: every item fails. One record of 150 items is 150 failures of the window.
    dead_letters = DeadLetters("normalizer")
    with pytest.raises(DeadLetterLimitExceeded):
        process_batch([_bad_request(family, 150)], dead_letters=dead_letters)
    assert (dead_letters.limit.records, dead_letters.limit.dead) == (150, 150)


@pytest.mark.parametrize("family", FAMILIES)
def test_items_count_toward_the_limit_as_items(family: str) -> None:
    good = {RAW_FORGE: GOOD_FORGE, RAW_MSGPACK: GOOD_MSGPACK}
    if family == RAW_LOGISTER:
        record = _logister_record([_logister_item(), _logister_item(event_type="nonsense"), _logister_item()])
    elif family == RAW_FORGE:
        record = _forge_record([good[family], BAD_FORGE, good[family]])
    else:
        record = _msgpack_record([good[family], BAD_MSGPACK, good[family]])
    dead_letters = DeadLetters("normalizer")
    out = process_batch([record], dead_letters=dead_letters)
    assert (dead_letters.limit.records, dead_letters.limit.dead) == (3, 1)
    assert len([o for o in out if o.topic == DLQ]) == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_two_bad_items_of_one_request_make_two_dead_letters_rows(family: str) -> None:
    out = process_batch([_bad_request(family, 2)])
    letters = [o for o in out if o.topic == DLQ]
    assert len(letters) == 2
    rows = [dead_letter_row(Record(o.topic, 0, n, o.key, o.value, 0, o.headers)) for n, o in enumerate(letters)]
    assert rows[0][4] == rows[1][4]  # the same source offset: the request's
    assert rows[0][0] != rows[1][0]  # yet two dead_letter_ids


def test_every_raw_topic_splits_through_one_entry_point() -> None:
    # raw.logister version 2 through steps.normalize (was bad_raw_record: a version-1-only step).
    items = [_logister_item(), _logister_item()]
    typed, failed, count = normalize(_logister_record(items))
    assert [orjson.loads(t.value)["event_id"] for t in typed] == [i.event_id for i in items]
    assert (failed, count) == ([], 2)
    assert set(NORMALIZERS) == set(FAMILIES)


# --- slices ------------------------------------------------------------------------------


class _Producer:
    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self._log = log

    async def send_many(self, records: Sequence[OutgoingRecord]) -> None:
        self._log.append(("send", len([r for r in records if r.topic != DLQ])))


class _Bus:
    def partitions(self, topic: str) -> int:
        return 1


class _Runtime:
    """What NormalizeStrategy uses of the host's Runtime: sends and commits, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.bus = _Bus()
        self.producer = _Producer(self.log)
        self.dead_letters = DeadLetters("normalizer")

    async def commit(self, offsets: Mapping[TopicPartition, int], records: int | None = None) -> None:
        self.log.append(("commit", dict(offsets)))


def _submit(records: list[Record], batch: int) -> _Runtime:
    runtime = _Runtime()
    strategy = NormalizeStrategy(runtime, batch)  # type: ignore[arg-type]
    asyncio.run(strategy.submit(records))
    return runtime


def test_a_poll_is_sent_and_committed_in_slices_of_about_the_batch() -> None:
    per_record, batch = 40, 100
    records = [_logister_record([_logister_item() for _ in range(per_record)], offset=n) for n in range(10)]
    log = _submit(records, batch).log
    kinds = [kind for kind, _ in log]
    assert kinds == ["send", "commit"] * (len(kinds) // 2) and len(kinds) > 2  # each slice sent, then committed
    sends = [n for kind, n in log if kind == "send"]
    assert sum(sends) == per_record * len(records)  # nothing lost, nothing twice
    assert max(sends) < batch + per_record  # cut at the first record boundary past the batch
    commits = [offsets[TopicPartition(RAW_LOGISTER, 0)] for kind, offsets in log if kind == "commit"]
    assert commits == sorted(commits) and commits[-1] == len(records)  # never past what was sent
    sent_so_far = 0
    for (_, sent), (_, offsets) in zip(log[::2], log[1::2], strict=True):
        sent_so_far += sent
        assert offsets[TopicPartition(RAW_LOGISTER, 0)] * per_record == sent_so_far


def test_a_small_record_poll_is_one_slice() -> None:
    records = [_forge_record([GOOD_FORGE], offset=n) for n in range(5)]
    log = _submit(records, 1000).log
    assert [kind for kind, _ in log] == ["send", "commit"]
    assert log[1][1] == next_offsets(records)


def test_memory_of_a_poll_is_bounded_by_the_batch_not_by_the_records() -> None:
    # Full-size requests: without slices, the typed records of the whole poll are held at once.
    def poll(records: int) -> list[Record]:
        return [
            _logister_record([_logister_item(message="m" * 200) for _ in range(500)], offset=n) for n in range(records)
        ]

    def peak(records: list[Record]) -> int:
        tracemalloc.start()
        try:
            _submit(records, 500)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = poll(2), poll(16)
    small_peak, large_peak = peak(small), peak(large)
    # Eight times the records, about the same peak (a slice is ~one record here).
    assert large_peak < 2 * small_peak, (small_peak, large_peak)
