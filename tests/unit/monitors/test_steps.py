"""Monitors on a stream clock: on time → ok, late → exactly one missed, error → failing,
next ok → recovered; lag and restarts never produce a false "missed"."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from forgeline.bus.port import Record
from forgeline.bus.topics import TICK_HEADER, TYPED_CHECKINS
from forgeline.clock import FakeClock
from services.monitors.steps import Evaluator, Monitor, StreamClock, tick_value

pytestmark = pytest.mark.unit

INTERVAL, MARGIN = 60, 30


class Log:
    """One typed.checkins partition (and one raw partition) written as the pipeline would:
    check-ins stamped by the gateway's clock, ticks appended by the ticker, in log order."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.records: list[Record] = []

    def _append(self, value: bytes, headers: tuple[tuple[str, bytes], ...] = ()) -> None:
        self.records.append(Record(TYPED_CHECKINS, 0, len(self.records), b"k", value, 0, headers))

    def check_in(self, status: str = "ok", slug: str = "nightly") -> None:
        doc: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "project_id": "p1",
            "organisation_id": "o1",
            "environment": "production",
            "slug": slug,
            "status": status,
            "expected_interval_seconds": INTERVAL,
            "received_at": int(self.clock.time() * 1000),
        }
        self._append(orjson.dumps(doc))

    def tick(self) -> None:
        headers = ((TICK_HEADER, b"1"), ("source_partition", b"0"))
        self._append(tick_value(int(self.clock.time() * 1000)), headers)

    def advance(self, seconds: int, tick_every: int = 10) -> None:
        """Let time pass, with a tick every ``tick_every`` seconds (the ticker)."""
        for _ in range(seconds // tick_every):
            self.clock.advance(tick_every)
            self.tick()


def evaluator() -> Evaluator:
    return Evaluator(StreamClock(typed_partitions=1, raw_partitions=1), MARGIN)


def states(changes: list[Any]) -> list[str]:
    return [c.state for c in changes]


def test_scenario_on_time_late_error_recovery() -> None:
    log, ev = Log(FakeClock()), evaluator()
    seen: list[Any] = []

    def consume() -> None:
        seen.extend(ev.apply(log.records[len(consumed) :]).changes)
        consumed.extend(log.records[len(consumed) :])

    consumed: list[Record] = []
    log.check_in()
    log.advance(50)
    log.check_in()  # on time
    log.advance(80)  # within interval + margin (90 s)
    consume()
    assert states(seen) == ["ok"]

    log.advance(60)  # 140 s since the last check-in: late beyond the margin
    log.advance(300)  # and much later still: still one "missed"
    consume()
    assert states(seen) == ["ok", "missed"]
    missed = seen[-1]
    assert missed.changed_ms == ev.monitors[("p1", "production", "nightly")].deadline_ms

    log.check_in("error")
    log.check_in("ok")
    log.check_in("ok")
    consume()
    assert states(seen) == ["ok", "missed", "failing", "recovered", "ok"]


def test_stopped_consumer_with_a_backlog_never_misses() -> None:
    clock = FakeClock()
    log = Log(clock)
    first = evaluator()
    log.check_in()
    log.advance(30)
    assert states(first.apply(log.records).changes) == ["ok"]
    done = len(log.records)

    # The consumer stops for 10 minutes of stream time; check-ins keep arriving on time.
    for _ in range(10):
        log.advance(30)
        log.check_in()  # every 60 s: on time
        log.advance(30)
    # It restarts from its stored state, with everything since as a backlog, and lags: the
    # wall clock is far ahead, but the evaluator only knows the ticks it has read.
    clock.advance(3600)
    stored = [Monitor.from_row(dict(zip(_COLUMNS, m.row(), strict=True))) for m in first.monitors.values()]
    restarted = Evaluator(StreamClock(1, 1, floor_ms=first.clock.now_ms), MARGIN, stored)
    changes = []
    for i in range(done, len(log.records), 3):  # in small batches
        changes.extend(restarted.apply(log.records[i : i + 3]).changes)
    assert changes == []


def test_clock_waits_for_the_slowest_partition() -> None:
    clock = StreamClock(typed_partitions=2, raw_partitions=2)
    assert not clock.tick(0, 0, 1000) and not clock.tick(0, 1, 1000) and not clock.tick(1, 0, 5000)
    assert clock.now_ms == 0  # (1, 1) has not ticked yet
    assert clock.tick(1, 1, 2000) and clock.now_ms == 1000
    assert clock.tick(0, 0, 9000) is False  # (0, 1) still at 1000
    clock.tick(0, 1, 3000)
    assert clock.now_ms == 2000
    clock.tick(1, 1, 500)  # an old tick never moves the clock back
    assert clock.now_ms == 2000


def test_replayed_batch_changes_nothing() -> None:
    log, ev = Log(FakeClock()), evaluator()
    log.check_in()
    log.advance(200)
    log.check_in("error")
    first = ev.apply(log.records)
    assert states(first.changes) == ["ok", "missed", "failing"]
    again = ev.apply(log.records)
    assert again.changes == [] and again.monitors == {}


def test_bad_records_are_rejected() -> None:
    ev = evaluator()
    bad = Record(TYPED_CHECKINS, 0, 0, None, b"{}", 0)
    bad_tick = Record(TYPED_CHECKINS, 0, 1, None, b"nope", 0, ((TICK_HEADER, b"1"),))
    assert len(ev.apply([bad, bad_tick]).rejected) == 2


_COLUMNS = [
    "project_id", "environment", "slug", "organisation_id", "state", "interval_seconds", "margin_seconds",
    "last_check_in_at", "last_status", "deadline_at", "state_changed_at", "applied_offset", "version",
]  # fmt: skip
