"""A record whose processing raises mid-way is rejected and leaves every group as it was."""

from __future__ import annotations

from typing import Any

import pytest

import services.errors.steps as steps
from forgeline.bus.port import Record
from forgeline.bus.topics import CONTROL_ERROR_GROUPS
from forgeline.processing.deadletter import PROCESSING_ERROR
from services.errors.steps import ErrorGroup, ErrorGrouper, control_record
from tests.unit.errors.test_steps import error, rec

pytestmark = pytest.mark.unit


def state(grouper: ErrorGrouper) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {key: group.row() for key, group in grouper.groups.items()}


def fail_for(monkeypatch: pytest.MonkeyPatch, event_id: str) -> None:
    """Make building the notification of one event raise: after the group was changed."""
    real = steps._notification

    def notification(group: ErrorGroup, kind: str, eid: str, occurred_ms: int) -> Any:
        if eid == event_id:
            raise RuntimeError(f"poison {eid}")
        return real(group, kind, eid, occurred_ms)

    monkeypatch.setattr(steps, "_notification", notification)


def test_a_new_group_that_raises_is_not_created(monkeypatch: pytest.MonkeyPatch) -> None:
    grouper = ErrorGrouper()
    poison, good = error(0), error(1)
    fail_for(monkeypatch, poison["event_id"])
    result = grouper.apply([rec(poison, 0)])
    [(record, err)] = result.rejected
    assert record.offset == 0 and err.reason == PROCESSING_ERROR and "RuntimeError: poison" in err.detail
    assert grouper.groups == {} and result.groups == {} and result.events == [] and result.notifications == []
    # The next event of that group is its first: counted once, announced as new.
    result = grouper.apply([rec(good, 1)])
    assert result.rejected == [] and result.notification_kinds == ["new"]
    [group] = grouper.groups.values()
    assert group.event_count == 1 and group.recent_event_ids == [good["event_id"]]


def test_a_regression_that_raises_leaves_the_group_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    grouper = ErrorGrouper()
    grouper.apply([rec(error(0), 0)])
    resolve = control_record("p1", "user <n> not found", "resolve", 1_700_000_000_500)
    grouper.apply([Record(CONTROL_ERROR_GROUPS, 0, 0, resolve.key, resolve.value, 0)])
    before = state(grouper)
    poison, good = error(1, release="2.0"), error(2)
    fail_for(monkeypatch, poison["event_id"])
    result = grouper.apply([rec(poison, 1), rec(good, 2)])
    assert [r.offset for r, _ in result.rejected] == [1]
    # Only the good event is in: the poison one changed neither the count, the release set
    # nor the applied offset (a replay after a fix applies it then).
    [group] = grouper.groups.values()
    assert group.event_count == 2 and group.releases == set() and group.regressed
    assert result.notification_kinds == ["regressed"] and len(result.events) == 1
    assert before != state(grouper)
    monkeypatch.undo()
    replayed = grouper.apply([rec(poison, 1)])
    assert replayed.rejected == [] and grouper.groups[("p1", "user <n> not found")].event_count == 2  # offset 1 < 2


def test_times_outside_the_warehouse_range_are_bad_data() -> None:
    grouper = ErrorGrouper()
    result = grouper.apply([rec(error(0, occurred_at=10**15), 0)])  # year 33658: the insert would fail on every replay
    [(_, err)] = result.rejected
    assert err.reason == "bad_typed_record" and grouper.groups == {}
