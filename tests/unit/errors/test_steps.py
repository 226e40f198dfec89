"""Error grouping: fingerprint rule, exact counts under duplication/splits, status changes."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgeline.bus.port import Record
from forgeline.bus.topics import CONTROL_ERROR_GROUPS, TYPED_ERRORS
from forgeline.grouping import group_fingerprint, normalize_line
from services.errors.steps import ErrorGroup, ErrorGrouper, control_record

pytestmark = pytest.mark.unit


def error(n: int, message: str = "user 1 not found", **extra: Any) -> dict[str, Any]:
    doc = {
        "event_id": str(uuid.UUID(int=n + 1)),
        "project_id": "p1",
        "organisation_id": "o1",
        "environment": "production",
        "occurred_at": 1_700_000_000_000 + n * 1000,
        "level": "error",
        "message": message,
        "fingerprint": message.splitlines()[0] if message else "",
        "exception_class": "",
        "release": "",
    }
    doc.update(extra)
    return doc


def rec(doc: dict[str, Any], offset: int, topic: str = TYPED_ERRORS) -> Record:
    return Record(topic, 0, offset, None, orjson.dumps(doc), 0)


def snapshot(grouper: ErrorGrouper) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {
        key: (g.event_count, g.first_seen_ms, g.last_seen_ms, g.last_level, sorted(g.releases), g.status, g.title)
        for key, g in grouper.groups.items()
    }


def test_numbers_hex_ids_and_uuids_are_masked() -> None:
    assert normalize_line("user 123 not found") == normalize_line("user 456 not found") == "user <n> not found"
    assert normalize_line("job 3f2a9c1e9b failed") == "job <hex> failed"
    assert normalize_line("row 550e8400-e29b-41d4-a716-446655440000 gone") == "row <uuid> gone"
    assert normalize_line("utf8 decode in v2") == "utf8 decode in v2"


def test_fingerprint_explicit_wins_else_class_and_first_line() -> None:
    assert group_fingerprint("checkout-nomethod", "boom 1", "NoMethodError") == "checkout-nomethod"
    assert group_fingerprint("boom 1", "boom 1\n  at x.py:3", "KeyError") == "KeyError: boom <n>"
    assert group_fingerprint("", "boom 2", "") == "boom <n>"


def test_similar_messages_group_together_and_new_is_emitted_once() -> None:
    grouper = ErrorGrouper()
    result = grouper.apply([rec(error(0, "user 1 not found"), 0), rec(error(1, "user 2 not found"), 1)])
    assert len(grouper.groups) == 1
    group = next(iter(grouper.groups.values()))
    assert group.event_count == 2
    assert result.notification_kinds == ["new"]


def test_redelivered_batch_and_client_retry_count_once() -> None:
    grouper = ErrorGrouper()
    batch = [rec(error(i), i) for i in range(5)]
    grouper.apply(batch)
    grouper.apply(batch)  # a crash before the commit: same records, same offsets
    retry = rec(error(2), 10)  # the SDK sent event 2 again: new offset, same event id
    grouper.apply([retry])
    assert next(iter(grouper.groups.values())).event_count == 5


def test_replay_after_restart_from_stored_rows_is_a_no_op() -> None:
    first = ErrorGrouper()
    batch = [rec(error(i, release=f"r{i % 2}"), i) for i in range(4)]
    first.apply(batch)
    stored = [ErrorGroup.from_row(dict(zip(_COLUMNS, g.row(), strict=True))) for g in first.groups.values()]
    restarted = ErrorGrouper(stored)
    result = restarted.apply(batch)
    assert snapshot(restarted) == snapshot(first)
    assert result.notifications == [] and result.events == []


def test_resolved_group_regresses_on_a_later_event_and_ignored_stays_quiet() -> None:
    grouper = ErrorGrouper()
    grouper.apply([rec(error(0), 0)])
    resolve = control_record("p1", "user <n> not found", "resolve", 1_700_000_000_500)
    grouper.apply([Record(CONTROL_ERROR_GROUPS, 0, 0, resolve.key, resolve.value, 0)])
    group = next(iter(grouper.groups.values()))
    assert group.status == "resolved"
    result = grouper.apply([rec(error(1), 1)])
    group = next(iter(grouper.groups.values()))  # a record's changes replace the group (copy on write)
    assert group.status == "unresolved" and group.regressed
    assert result.notification_kinds == ["regressed"]

    ignore = control_record("p1", "user <n> not found", "ignore", 1_700_000_009_000)
    grouper.apply([Record(CONTROL_ERROR_GROUPS, 0, 1, ignore.key, ignore.value, 0)])
    result = grouper.apply([rec(error(20), 2)])
    group = next(iter(grouper.groups.values()))
    assert group.status == "ignored" and result.notifications == [] and group.event_count == 3


def test_bad_record_is_rejected_without_touching_state() -> None:
    grouper = ErrorGrouper()
    result = grouper.apply([Record(TYPED_ERRORS, 0, 0, None, b"{not json", 0), rec({"x": 1}, 1)])
    assert len(result.rejected) == 2 and grouper.groups == {}


_COLUMNS = [
    "project_id", "group_id", "fingerprint", "organisation_id", "title", "exception_class", "first_seen",
    "last_seen", "event_count", "last_level", "releases", "environments", "status", "regressed",
    "status_changed_at", "recent_event_ids", "applied_event_offset", "applied_control_offset", "version",
]  # fmt: skip

_MESSAGES = ["user 1 not found", "user 7 not found", "timeout after 30 s", "KeyError 'x'", "disk 0xff full"]


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(_MESSAGES), st.sampled_from(["error", "warning"]), st.sampled_from(["", "1.0"])),
        min_size=1,
        max_size=30,
    ),
    data=st.data(),
)
def test_any_split_duplication_and_replica_assignment_gives_the_same_groups(
    events: list[tuple[str, str, str]], data: st.DataObject
) -> None:
    docs = [error(i, m, level=lv, release=r) for i, (m, lv, r) in enumerate(events)]
    reference = ErrorGrouper()
    reference.apply([rec(d, i) for i, d in enumerate(docs)])

    # Duplicate some events (client retries), shuffle, and split over two "replicas" by
    # group, each replica taking its records in several batches.
    dupes = data.draw(st.lists(st.sampled_from(docs), max_size=10))
    stream = data.draw(st.permutations(docs + dupes))
    replicas = [ErrorGrouper(), ErrorGrouper()]
    offsets = [0, 0]
    for doc in stream:
        fp = group_fingerprint(doc["fingerprint"], doc["message"], doc["exception_class"])
        r = hash(fp) % 2
        cut = data.draw(st.booleans())
        replicas[r].apply([rec(doc, offsets[r])])
        if cut:
            replicas[r].apply([rec(doc, offsets[r])])  # a redelivery of the same offset
        offsets[r] += 1
    merged = {**snapshot(replicas[0]), **snapshot(replicas[1])}
    assert merged == snapshot(reference)
