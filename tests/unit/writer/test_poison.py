"""The writer's batch: a record whose decode raises anything is dead-lettered, the batch goes on."""

from __future__ import annotations

import orjson
import pytest

import services.writer.main as writer
from forgeline.bus.port import Record
from forgeline.bus.topics import TYPED_LOGS
from services.writer.main import _Batch

pytestmark = pytest.mark.unit


def test_a_dead_letter_with_a_broken_header_is_dead_lettered_not_raised() -> None:
    # A dlq.* record whose source_partition is not a number: int() raised ValueError in add()
    # and the writer restarted on it forever.
    broken = Record("dlq.spans", 0, 7, None, b"payload", 0, (("source_partition", b"zero"),))
    fine = Record("dlq.spans", 0, 8, None, b"payload", 0, (("source_partition", b"1"), ("reason", b"x")))
    batch = _Batch()
    batch.add(broken)
    batch.add(fine)
    assert len(batch.records) == 2 and len(batch.tables["dead_letters"].items) == 1
    [letter] = batch.dead
    headers = dict(letter.headers)
    assert letter.topic == "dlq.writer" and headers["reason"] == b"processing_error"
    assert headers["detail"].startswith(b"ValueError: invalid literal for int()")
    assert headers["source_topic"] == b"dlq.spans" and headers["source_offset"] == b"7"


def test_a_conversion_that_raises_for_the_whole_batch_falls_back_to_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = [
        {"event_id": f"00000000-0000-0000-0000-00000000000{i}", "legacy_id": i, "organisation_id": "o",
         "project_id": "p", "environment": "e", "occurred_at": 1_700_000_000_000, "received_at": 1_700_000_000_000,
         "level": "info", "message": f"m{i}", "fingerprint": "", "release": "", "trace_id": "", "request_id": "",
         "session_id": "", "user_id": "", "context": "{}"}
        for i in range(3)
    ]  # fmt: skip
    batch = _Batch()
    for offset, doc in enumerate(docs):
        batch.add(Record(TYPED_LOGS, 0, offset, None, orjson.dumps(doc), 0))
    real = writer.to_columns

    def to_columns(kind, items):  # type: ignore[no-untyped-def]
        if any(item["message"] == "m1" for item in items):
            raise RuntimeError("poison m1")
        return real(kind, items)

    monkeypatch.setattr(writer, "to_columns", to_columns)
    [table] = batch.tables.values()
    data, sources = batch.columns_of(table)
    assert [s.offset for s in sources] == [0, 2] and data[8] == ["m0", "m2"]  # the message column
    assert [dict(d.headers)["source_offset"] for d in batch.dead] == [b"1"]
