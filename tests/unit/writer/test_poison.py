"""The writer's batch: a record whose decode raises anything is dead-lettered, the batch goes on."""

from __future__ import annotations

from typing import Any

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


def _log(i: int, **overrides: Any) -> bytes:
    doc = {"event_id": f"00000000-0000-0000-0000-00000000000{i}", "legacy_id": i, "organisation_id": "o",
           "project_id": "p", "environment": "e", "occurred_at": 1_700_000_000_000, "received_at": 1_700_000_000_000,
           "level": "info", "message": f"m{i}", "fingerprint": "", "release": "", "trace_id": "", "request_id": "",
           "session_id": "", "user_id": "", "context": "{}"}  # fmt: skip
    return orjson.dumps(doc | overrides)


def test_a_record_that_makes_no_line_is_dead_lettered_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    real = writer.row_line

    def row_line(record: Record) -> bytes:
        if b'"m1"' in record.value:
            raise RuntimeError("poison m1")
        return real(record)

    monkeypatch.setattr(writer, "row_line", row_line)
    batch = _Batch()
    values = [_log(0), _log(1), _log(2, occurred_at=10**16)]
    batch.add_many([Record(TYPED_LOGS, 0, offset, None, value, 0) for offset, value in enumerate(values)])
    [table] = batch.tables.values()
    assert [s.offset for s in table.sources] == [0]
    assert [orjson.loads(line)["message"] for line in table.items] == ["m0"]
    reasons = {dict(d.headers)["source_offset"]: dict(d.headers)["reason"] for d in batch.dead}
    assert reasons == {b"1": b"processing_error", b"2": b"bad_typed_record"}
