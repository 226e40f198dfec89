from __future__ import annotations

import asyncio

import pytest

from forgeline.bus.follow import read_new, read_to_end
from forgeline.bus.port import Record, TopicPartition

pytestmark = pytest.mark.unit

TP = TopicPartition("control.tenancy", 0)


class SlowReader:
    """A reader like a freshly started Kafka one: its first polls come back empty."""

    def __init__(self, values: list[bytes], empty_polls: int) -> None:
        self.records = [Record(TP.topic, TP.partition, n, None, v, 0) for n, v in enumerate(values)]
        self.empty_polls = empty_polls

    async def end_offsets(self) -> dict[TopicPartition, int]:
        return {TP: len(self.records)}

    async def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if self.empty_polls:
            self.empty_polls -= 1
            return []
        out, self.records = self.records[:max_records], self.records[max_records:]
        return out


def test_empty_first_polls_are_not_the_end() -> None:
    reader = SlowReader([b"a", b"bad", b"c"], empty_polls=3)
    seen: list[bytes] = []

    def apply(record: Record) -> bool:
        seen.append(record.value)
        return record.value != b"bad"

    assert asyncio.run(read_to_end(reader, apply)) == 2  # type: ignore[arg-type]
    assert seen == [b"a", b"bad", b"c"]


def test_read_new_stops_at_the_first_empty_poll() -> None:
    reader = SlowReader([b"a"], empty_polls=1)
    assert asyncio.run(read_new(reader, lambda record: True)) == 0  # type: ignore[arg-type]
    assert asyncio.run(read_new(reader, lambda record: True)) == 1  # type: ignore[arg-type]
