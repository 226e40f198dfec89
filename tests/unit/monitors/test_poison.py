"""A check-in or a tick whose processing raises mid-way is rejected and changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

import services.monitors.steps as steps
from forgeline.bus.port import Record
from forgeline.bus.topics import TYPED_CHECKINS
from forgeline.clock import FakeClock
from forgeline.processing.deadletter import PROCESSING_ERROR
from services.monitors.steps import Evaluator
from tests.unit.monitors.test_steps import Log, evaluator

pytestmark = pytest.mark.unit


def snapshot(ev: Evaluator) -> tuple[Any, ...]:
    return ev.clock.now_ms, {key: monitor.row() for key, monitor in ev.monitors.items()}


def raise_on_change(monkeypatch: pytest.MonkeyPatch, reason: str) -> None:
    """Make the change id of one kind of transition raise: after the monitor was changed."""
    real = steps.derived_uuid

    def derived(kind: str, *parts: str) -> uuid.UUID:
        if kind == "monitor_change" and reason in parts:
            raise RuntimeError(f"poison {reason}")
        return real(kind, *parts)

    monkeypatch.setattr(steps, "derived_uuid", derived)


def test_a_check_in_that_raises_leaves_its_monitor_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    log = Log(FakeClock(1_700_000_000))
    ev = evaluator()
    log.check_in("ok")
    ev.apply(log.records)
    before = snapshot(ev)
    raise_on_change(monkeypatch, "check_in")
    log.check_in("error")  # ok → failing: the change raises
    result = ev.apply(log.records[-1:])
    [(record, err)] = result.rejected
    assert err.reason == PROCESSING_ERROR and "poison check_in" in err.detail
    assert snapshot(ev) == before and result.monitors == {} and result.changes == []
    monkeypatch.undo()
    # Redelivered after a fix: applied then (its offset was never marked applied).
    assert [c.state for c in ev.apply([record]).changes] == ["failing"]


def test_a_tick_whose_expiry_raises_changes_no_monitor_and_holds_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    log = Log(FakeClock(1_700_000_000))
    ev = evaluator()
    log.check_in("ok", slug="a")
    log.check_in("ok", slug="b")
    log.tick()
    ev.apply(log.records)
    _, monitors = snapshot(ev)
    raise_on_change(monkeypatch, "deadline")
    start = len(log.records)
    log.advance(200)  # ticks every 10 s; the deadlines are at 90 s, so from the 100 s tick on expiry raises
    result = ev.apply(log.records[start:])
    assert [r.offset - start for r, _ in result.rejected] == list(range(9, 20))
    # The clock stopped at the last tick that went through; neither monitor was touched.
    assert snapshot(ev) == (1_700_000_090_000, monitors) and result.changes == []
    monkeypatch.undo()
    result = ev.apply(log.records[start:])  # redelivered after a fix
    assert sorted(c.slug for c in result.changes) == ["a", "b"] and ev.clock.now_ms == 1_700_000_200_000


def test_a_deadline_or_time_outside_the_warehouse_range_is_bad_data() -> None:
    ev = evaluator()
    doc = {"event_id": "e", "project_id": "p", "environment": "e", "slug": "s", "received_at": 1_700_000_000_000}
    huge = [{**doc, "expected_interval_seconds": 10**13}, {**doc, "received_at": 10**15}]
    records = [Record(TYPED_CHECKINS, 0, i, None, orjson.dumps(d), 0) for i, d in enumerate(huge)]
    result = ev.apply(records)
    assert [err.reason for _, err in result.rejected] == ["bad_typed_record"] * 2 and ev.monitors == {}
