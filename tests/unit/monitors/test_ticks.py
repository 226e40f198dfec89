"""The tick path through the shared stages: the normalizer fans a raw tick out to every
typed.checkins partition (tagged with its raw partition); the writer commits it, no row."""

from __future__ import annotations

import pytest

from forgeline.bus.port import Record
from forgeline.bus.topics import RAW_LOGISTER, TICK_HEADER, TYPED_CHECKINS
from services.monitors.steps import Evaluator, StreamClock, is_tick, tick_value
from services.normalizer.main import process_batch
from services.writer.main import _Batch

pytestmark = pytest.mark.unit


def raw_tick(partition: int, at_ms: int) -> Record:
    return Record(RAW_LOGISTER, partition, 0, None, tick_value(at_ms), 0, ((TICK_HEADER, b"1"),))


def test_normalizer_fans_a_tick_out_to_every_checkin_partition() -> None:
    out = process_batch([raw_tick(2, 5000)], checkin_partitions=4)
    assert [(r.topic, r.partition) for r in out] == [(TYPED_CHECKINS, q) for q in range(4)]
    assert all(dict(r.headers) == {TICK_HEADER: b"1", "source_partition": b"2"} for r in out)


def test_forwarded_ticks_drive_the_clock_once_every_pair_has_ticked() -> None:
    ev = Evaluator(StreamClock(typed_partitions=2, raw_partitions=2), margin_s=0)
    for raw in (0, 1):
        forwarded = process_batch([raw_tick(raw, 1000 + raw)], checkin_partitions=2)
        ev.apply([Record(r.topic, r.partition or 0, 0, None, r.value, 0, r.headers) for r in forwarded])
    assert ev.clock.now_ms == 1000


def test_writer_commits_a_tick_without_a_row() -> None:
    batch = _Batch()
    tick = Record(TYPED_CHECKINS, 0, 7, None, tick_value(1), 0, ((TICK_HEADER, b"1"), ("source_partition", b"0")))
    assert is_tick(tick)
    batch.add(tick)
    assert batch.records == [tick] and batch.tables == {} and batch.dead == []
