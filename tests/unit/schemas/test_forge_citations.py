"""Citations across projects: the gateway's check, and the second line behind it.

A record accepted before the gateway refused foreign citations may still be on the log
when the normalizer or the notifier reads it: they keep the record and drop the citations
its project may not make, so another project's session, events and attachments are never
stored with it nor forwarded to a tracker.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from forgeline.bus.port import Record
from forgeline.bus.topics import RAW_FORGE, TYPED_REPORTS
from forgeline.schemas import forge
from services.normalizer.game import split_forge
from services.notifier.subjects import parse

pytestmark = pytest.mark.unit

A, B = "project-a", "project-b"
CTX_B = forge.ForgeContext("org", B, "production", datetime(2026, 4, 8, 14, 30, tzinfo=UTC))
A_SESSION, B_SESSION = str(forge.new_session_id(A)), str(forge.new_session_id(B))
A_UPLOAD, B_UPLOAD = str(forge.new_upload_id(A)), str(forge.new_upload_id(B))
[A_EVENT] = [str(i) for i in forge.event_ids(A, "production", "digest", 1)]
[B_EVENT] = [str(i) for i in forge.event_ids(B, "production", "digest", 1)]


def _report(session_id: str, event_ids: list[str], upload_ids: list[str]) -> dict[str, Any]:
    return {
        "sessionId": session_id,
        "title": "t",
        "description": "d",
        "severity": "high",
        "reporterType": "qa",
        "eventIds": event_ids,
        "uploadIds": upload_ids,
        "export": ["webhook"],
    }


def test_ids_are_owned_by_the_project_and_kind_that_issued_them() -> None:
    assert forge.foreign_references({"sessionId": B_SESSION}, B) == []
    assert [p.field for p in forge.foreign_references({"sessionId": A_SESSION}, B)] == ["sessionId"]
    # An upload id is no session id, even within the project.
    assert [p.field for p in forge.foreign_references({"sessionId": B_UPLOAD}, B)] == ["sessionId"]
    # The same request bytes in two projects: two sets of event ids.
    assert forge.event_ids(A, "production", "d", 2) != forge.event_ids(B, "production", "d", 2)


def test_foreign_references_names_every_foreign_citation() -> None:
    doc = _report(A_SESSION, [B_EVENT, A_EVENT], [A_UPLOAD, B_UPLOAD, str(uuid.uuid4())])
    problems = forge.foreign_references(doc, B, forge.REPORT_CITATIONS, index=3)
    assert [(p.field, p.index) for p in problems] == [
        ("sessionId", 3),
        ("eventIds[1]", 3),
        ("uploadIds[0]", 3),
        ("uploadIds[2]", 3),
    ]
    assert problems[0].message == "is not a session of this project"
    # Only the keys asked for: an upload request cites a session, nothing else.
    assert forge.foreign_references(doc, B, ("sessionId",), index=3) == problems[:1]
    assert forge.foreign_references(["not", "a", "dict"], B) == []


def test_a_report_keeps_only_its_projects_citations() -> None:
    doc = _report(A_SESSION, [A_EVENT, B_EVENT], [B_UPLOAD, A_UPLOAD])
    _, row = forge.normalize_report(doc, CTX_B, uuid.uuid4())
    assert (row["session_id"], row["event_ids"], row["upload_ids"]) == (forge.NO_SESSION, [B_EVENT], [B_UPLOAD])
    _, row = forge.normalize_report(_report(B_SESSION.upper(), [], []), CTX_B, uuid.uuid4())
    assert row["session_id"] == B_SESSION.upper()


def test_an_event_or_upload_on_another_projects_session_loses_the_session() -> None:
    _, event = forge.normalize_event({"sessionId": A_SESSION, "type": "jump"}, CTX_B, uuid.uuid4())
    assert event["session_id"] == forge.NO_SESSION
    _, event = forge.normalize_event({"sessionId": B_SESSION, "type": "jump"}, CTX_B, uuid.uuid4())
    assert event["session_id"] == B_SESSION
    completion = {"attachment_type": "screenshot", "filename": "a.png", "content_type": "image/png"}
    completion |= {"size_bytes": 1, "storage_key": "k", "session_id": A_SESSION}
    _, upload = forge.normalize_upload(completion, CTX_B, uuid.UUID(B_UPLOAD))
    assert upload["session_id"] == ""


def test_the_normalizer_drops_foreign_citations_of_a_raw_record_from_before_the_check() -> None:
    envelope = {"v": 1, "route": "report", "organisation_id": "org", "project_id": B, "environment": "production"}
    raw = {**envelope, "token_id": "t", "received_at": 1_775_000_000_000, "id": str(uuid.uuid4())}
    raw["body"] = _report(A_SESSION, [A_EVENT], [A_UPLOAD, B_UPLOAD])
    [out], failed = split_forge(Record(RAW_FORGE, 0, 0, None, orjson.dumps(raw), 0))
    assert failed == []
    row = orjson.loads(out.value)
    assert (row["session_id"], row["event_ids"], row["upload_ids"]) == (forge.NO_SESSION, [], [B_UPLOAD])


def test_the_notifier_never_forwards_another_projects_attachments() -> None:
    """A report typed before the check (still on typed.reports): its foreign citations go."""
    row = {
        "report_id": str(uuid.uuid4()),
        "session_id": A_SESSION,
        "organisation_id": "org",
        "project_id": B,
        "environment": "production",
        "title": "t",
        "description": "d",
        "severity": "high",
        "reporter_type": "qa",
        "event_ids": [A_EVENT],
        "upload_ids": [A_UPLOAD, A_UPLOAD, B_UPLOAD],
        "export_providers": ["webhook"],
        "received_at": 1_775_000_000_000,
    }
    notification = parse(Record(TYPED_REPORTS, 0, 0, None, orjson.dumps(row), 0))
    assert notification is not None
    assert notification.data["upload_ids"] == [B_UPLOAD] and notification.data["event_ids"] == []
    assert ("attachments", "1") in notification.fields
    assert ("session", forge.NO_SESSION) in notification.fields
