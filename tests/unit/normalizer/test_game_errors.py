"""Game crashes, exceptions, critical events and crash reports become typed errors, grouped
with backend errors by the same rule."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.bus.topics import TYPED_ERRORS, TYPED_GAME_EVENTS, TYPED_REPORTS, TYPED_SESSIONS
from forgeline.grouping import group_key
from forgeline.schemas.records import ERROR
from forgeline.schemas.typed import decode_typed
from services.errors.steps import ErrorGrouper
from services.normalizer.game_errors import game_error
from services.normalizer.keys import partition_key

pytestmark = pytest.mark.unit

TENANT = {"organisation_id": "org", "project_id": "proj", "environment": "production"}
SESSION = str(uuid.uuid4())


def _event(type_: str, severity: str = "", **properties: Any) -> OutgoingRecord:
    row = {
        "event_id": str(uuid.uuid4()),
        "session_id": SESSION,
        **TENANT,
        "type": type_,
        "severity": severity,
        "properties": orjson.dumps(properties).decode(),
        "occurred_at": 1_775_000_000_000,
        "received_at": 1_775_000_001_000,
    }
    return OutgoingRecord(TYPED_GAME_EVENTS, orjson.dumps(row), key=SESSION.encode())


def _report(metadata: dict[str, Any], title: str = "Crash on load") -> OutgoingRecord:
    row = {
        "report_id": str(uuid.uuid4()),
        "session_id": SESSION,
        **TENANT,
        "title": title,
        "description": "",
        "severity": "critical",
        "reporter_type": "system",
        "metadata": orjson.dumps(metadata).decode(),
        "received_at": 1_775_000_002_000,
    }
    return OutgoingRecord(TYPED_REPORTS, orjson.dumps(row))


def _row(out: OutgoingRecord | None) -> dict[str, Any]:
    assert out is not None and out.topic == TYPED_ERRORS
    assert list(orjson.loads(out.value)) == ERROR.column_names  # its table's line, in column order
    row = decode_typed(out)  # timestamps back as epoch ms
    assert out.key == partition_key(ERROR, row)
    return row


@pytest.mark.parametrize(
    ("type_", "severity", "level"),
    [("crash", "", "fatal"), ("Exception", "high", "error"), ("level_loaded", "critical", "fatal")],
)
def test_crash_exception_and_critical_events_are_errors(type_: str, severity: str, level: str) -> None:
    typed = _event(type_, severity, message="NullReferenceException at Player.cs:42", build="1.14.2")
    row = _row(game_error(typed))
    source = orjson.loads(typed.value)
    assert row["event_id"] == source["event_id"], "errors.event_id is the game event's id"
    assert (row["session_id"], row["level"], row["release"]) == (SESSION, level, "1.14.2")
    assert row["message"] == "NullReferenceException at Player.cs:42"
    assert orjson.loads(row["context"])["source"] == "forge_event"


def test_other_events_and_reports_are_not_errors() -> None:
    assert game_error(_event("level_loaded", "high")) is None
    assert game_error(_report({"crash": "yes"})) is None
    assert game_error(_report({})) is None
    assert game_error(OutgoingRecord(TYPED_SESSIONS, b"{}")) is None


def test_a_report_marked_as_a_crash_is_a_fatal_error() -> None:
    row = _row(game_error(_report({"crash": True, "exceptionClass": "SIGSEGV"})))
    assert (row["message"], row["exception_class"], row["level"]) == ("Crash on load", "SIGSEGV", "fatal")
    assert row["occurred_at"] == row["received_at"] == 1_775_000_002_000


def test_a_game_crash_and_a_backend_error_share_a_group() -> None:
    """The same exception class and message (numbers masked) from a game and a server: one group."""
    game = _row(game_error(_event("exception", exceptionClass="TimeoutError", message="match 17 timed out")))
    backend = {
        **game,
        "event_id": str(uuid.uuid4()),
        "message": "match 9001 timed out",
        "fingerprint": "match 9001 timed out",
        "context": "{}",
        "session_id": "",
    }
    assert partition_key(ERROR, game) == partition_key(ERROR, backend)
    explicit = _row(game_error(_event("crash", fingerprint="boot-crash", message="anything")))
    assert partition_key(ERROR, explicit) == group_key("proj", "boot-crash")
    records = [
        Record(TYPED_ERRORS, 0, n, partition_key(ERROR, row), orjson.dumps(row), 0)
        for n, row in enumerate([game, backend, explicit])
    ]
    result = ErrorGrouper().apply(records)
    assert not result.rejected
    counts = sorted(g.event_count for g in result.groups.values())
    assert counts == [1, 2]
    shared = next(g for g in result.groups.values() if g.event_count == 2)
    assert shared.exception_class == "TimeoutError" and shared.fingerprint == "TimeoutError: match <n> timed out"
