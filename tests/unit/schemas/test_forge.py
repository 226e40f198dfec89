"""schemas/forge.py: validation collects every problem; normalization is pure and id-stable."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from forgeline.schemas import forge
from forgeline.schemas.checks import Invalid
from forgeline.schemas.records import BUILD, GAME_EVENT, REPORT, SESSION

pytestmark = pytest.mark.unit

CTX = forge.ForgeContext("org", "proj", "production", datetime(2026, 4, 8, 14, 30, tzinfo=UTC))
SID = str(forge.new_session_id("proj"))
[EID] = forge.event_ids("proj", "production", "digest", 1)


def test_build_id_is_deterministic_and_scoped_to_the_project() -> None:
    a = forge.build_id("proj", "1.0", "windows", "abc")
    assert a == forge.build_id("proj", "1.0", "windows", "abc")
    assert a != forge.build_id("other", "1.0", "windows", "abc")
    assert a != forge.build_id("proj", "1.0", "windows", "")


def test_report_id_is_deterministic() -> None:
    crid = uuid.uuid4()
    assert forge.report_id("p", crid) == forge.report_id("p", crid) != forge.report_id("q", crid)


def test_session_normalizes_to_build_and_session_rows() -> None:
    body = {"build": {"version": "1.0", "platform": "linux", "channel": "qa"}, "player": {"deviceId": "d"}}
    kind, build = forge.normalize_build(body, CTX)
    assert kind is BUILD and build["build_id"] == str(forge.build_id("proj", "1.0", "linux", ""))
    sid = uuid.uuid4()
    kind, session = forge.normalize_session(body, CTX, sid)
    assert kind is SESSION and set(session) == set(SESSION.column_names)
    assert session["device_id"] == "d" and session["metadata"] == "{}" and session["build_id"] == build["build_id"]


def test_session_problems_are_all_collected() -> None:
    _, check = forge.check_session({"build": {"version": 1, "platform": "", "gitCommit": "x" * 65}, "metadata": 3})
    assert {(p.field, p.index) for p in check.problems} == {
        ("build.version", None),
        ("build.platform", None),
        ("build.gitCommit", None),
        ("metadata", None),
    }


def test_event_defaults_its_timestamp_to_receive_time() -> None:
    kind, row = forge.normalize_event({"sessionId": SID, "type": "jump"}, CTX, uuid.uuid4())
    assert kind is GAME_EVENT and row["occurred_at"] == row["received_at"]
    assert set(row) == set(GAME_EVENT.column_names)


def test_event_batch_limits() -> None:
    with pytest.raises(Invalid):
        forge.event_items([])
    with pytest.raises(Invalid):
        forge.event_items([{}] * 201)
    assert forge.event_items({"a": 1}) == ([{"a": 1}], False)
    problems = forge.check_events([{"sessionId": SID, "type": "a"}, {"type": "b"}], True, CTX.received_at)
    assert [(p.index, p.field) for p in problems] == [(1, "sessionId")]


def test_report_row_has_arrays_and_deduplicated_providers() -> None:
    body = {
        "sessionId": SID,
        "title": "t",
        "description": "",
        "severity": "low",
        "reporterType": "player",
        "eventIds": [str(EID).upper()],
        "export": ["jira", "jira", "github"],
    }
    kind, row = forge.normalize_report(body, CTX, uuid.uuid4())
    assert kind is REPORT and row["export_providers"] == ["jira", "github"] and row["event_ids"] == [str(EID)]


def test_uploads_enforce_type_size_limits_and_file_names() -> None:
    limits = {"screenshot": 100}
    with pytest.raises(Invalid) as err:
        forge.check_uploads(
            {
                "files": [
                    {"filename": "../x", "contentType": "image/png", "size": 10, "type": "screenshot"},
                    {"filename": "a.png", "contentType": "image/png", "size": 101, "type": "screenshot"},
                    {"filename": "a.bin", "contentType": "x/y", "size": 1, "type": "core_dump"},
                ]
            },
            limits,
        )
    assert [(p.index, p.field) for p in err.value.problems] == [
        (0, "files.filename"),
        (1, "files.size"),
        (2, "files.type"),
    ]
    session, files = forge.check_uploads(
        {"filename": "a.png", "contentType": "image/png", "size": 100, "type": "screenshot"}, limits
    )
    assert session == "" and files[0].size == 100
