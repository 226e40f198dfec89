"""The Forge Logger ingest wire format (seeds forge-logger-*.txt; SPEC 4.1) → typed records.

Like ``schemas/logister.py``: one pure function per payload, used twice — the gateway
validates with it before it enqueues, the normalizer calls it again on the raw payload to
build the row — so both agree on what is valid by construction.

Validators never stop at the first problem: each returns every ``Problem`` (batch index,
dotted field path, message), and the gateway answers them all in one 400.
"""

from __future__ import annotations

import functools
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from forgeline.ids import derived_uuid, is_owned, new_owned_uuid, owned_uuids
from forgeline.mediatype import media_type_problem
from forgeline.schemas.checks import Check, Invalid, Problem
from forgeline.schemas.common import to_millis
from forgeline.schemas.records import BUILD, GAME_EVENT, REPORT, SESSION, UPLOAD, RecordKind

# Seed "Enums", shared by every ingest endpoint.
SEVERITIES = ("low", "medium", "high", "critical")
REPORTER_TYPES = ("player", "tester", "qa", "internal", "system")
ATTACHMENT_TYPES = ("screenshot", "video", "save_state", "log_bundle", "other")
BUILD_CHANNELS = ("dev", "qa", "alpha", "beta", "staging", "prod")
EXPORT_PROVIDERS = ("github", "gitlab", "jira", "discord", "webhook")

MAX_BATCH_EVENTS = 200  # seed "Batch events"
MAX_REFERENCES = 1000  # eventIds / uploadIds of one report
MAX_UPLOAD_FILES = 20

_TEXT = 64 * 1024

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ForgeContext:
    """What the gateway knows besides the body: the token's tenancy and the receive time."""

    organisation_id: str
    project_id: str
    environment: str
    received_at: datetime

    def tenant(self) -> Row:
        return {
            "organisation_id": self.organisation_id,
            "project_id": self.project_id,
            "environment": self.environment,
        }


def build_id(project_id: str, version: str, platform: str, git_commit: str) -> uuid.UUID:
    """Same (project, version, platform, gitCommit) → same buildId, with no lookup (seed "Notes")."""
    return derived_uuid("forge_build", project_id, version, platform, git_commit)


def report_id(project_id: str, client_request_id: uuid.UUID) -> uuid.UUID:
    """A retried report (same clientRequestId) gets the same id, hence one stored row."""
    return derived_uuid("forge_report", project_id, str(client_request_id))


# --- ids other requests cite: owned by their project (forgeline.ids) ---------------------------

SESSION_ID, EVENT_ID, UPLOAD_ID = "forge_session", "forge_event", "forge_upload"


def new_session_id(project_id: str) -> uuid.UUID:
    """Not idempotent, as the seed says: every call is a new session."""
    return new_owned_uuid(SESSION_ID, project_id)


def new_upload_id(project_id: str) -> uuid.UUID:
    return new_owned_uuid(UPLOAD_ID, project_id)


def event_ids(project_id: str, environment: str, body_digest: str, count: int) -> list[uuid.UUID]:
    """Derived from the request bytes: a retried batch maps onto the same rows."""
    return owned_uuids(EVENT_ID, project_id, count, "forge_event", project_id, environment, body_digest)


# body key → (id kind, what it must be) of every citation a request body may hold.
CITATIONS = {
    "sessionId": (SESSION_ID, "a session"),
    "eventIds": (EVENT_ID, "an event"),
    "uploadIds": (UPLOAD_ID, "an upload"),
}
REPORT_CITATIONS = ("sessionId", "eventIds", "uploadIds")


@functools.lru_cache(maxsize=4096)
def _cited_ok(value: str, kind: str, project_id: str) -> bool:
    # A batch cites one session up to 200 times, and the next batch the same one again.
    return is_owned(value, kind, project_id)


def foreign_references(
    doc: Any, project_id: str, keys: Sequence[str] = ("sessionId",), index: int | None = None
) -> list[Problem]:
    """Every id under ``keys`` of ``doc`` that is not its project's (→ 403, nothing stored).

    Call after validation: ids that are no UUIDs were reported as 400 already. An id from
    another project and an id no gateway issued look the same here, and both are refused.
    """
    if not isinstance(doc, dict):
        return []
    problems: list[Problem] = []
    for key in keys:
        kind, noun = CITATIONS[key]
        value = doc.get(key)
        cited: list[tuple[str, Any]] = [(key, value)] if isinstance(value, str) else []
        if isinstance(value, list):
            cited = [(f"{key}[{n}]", item) for n, item in enumerate(value) if isinstance(item, str)]
        problems += [
            Problem(field, f"is not {noun} of this project", index)
            for field, item in cited
            if not _cited_ok(item, kind, project_id)
        ]
    return problems


NO_SESSION = str(uuid.UUID(int=0))  # what a dropped session citation becomes in a UUID column


def _own_session(session_id: Any, project_id: str, none: str = NO_SESSION) -> str:
    """The session id if the project owns it, else ``none`` (a citation the gateway should have refused)."""
    return str(session_id) if is_owned(str(session_id), SESSION_ID, project_id) else none


def own_report_row(row: Row) -> Row:
    """A report row citing only its own project's session, events and uploads.

    The gateway refuses foreign citations; this is the second line for records accepted
    before it did (still on the log when processed or notified): the report is kept, the
    citations it may not make are dropped.
    """
    project_id = str(row.get("project_id", ""))
    event_ids_ = [e for e in row.get("event_ids") or () if is_owned(str(e), EVENT_ID, project_id)]
    upload_ids = [u for u in row.get("upload_ids") or () if is_owned(str(u), UPLOAD_ID, project_id)]
    session_id = _own_session(row.get("session_id", ""), project_id)
    return {**row, "session_id": session_id, "event_ids": event_ids_, "upload_ids": upload_ids}


def _json(value: dict[str, Any] | None) -> str:
    return orjson.dumps(value or {}).decode()


# --- sessions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuildInfo:
    version: str
    platform: str
    git_commit: str
    channel: str


def check_session(doc: Any) -> tuple[BuildInfo, Check]:
    check = Check(doc)
    build = check.nested("build", required=True)
    info = BuildInfo("", "", "", "")
    if build is not None:
        info = BuildInfo(
            version=build.string("version", required=True, max_len=64),
            platform=build.string("platform", required=True, max_len=64),
            git_commit=build.string("gitCommit", max_len=64),
            channel=build.choice("channel", BUILD_CHANNELS),
        )
    check.absorb(build)
    player = check.nested("player")
    if player is not None:
        player.string("externalId")
        player.string("deviceId")
    check.absorb(player)
    check.obj("metadata")
    return info, check


def normalize_build(body: Any, ctx: ForgeContext) -> tuple[RecordKind, Row]:
    info, check = check_session(body)
    check.raise_if_invalid()
    row = {
        "build_id": str(build_id(ctx.project_id, info.version, info.platform, info.git_commit)),
        **ctx.tenant(),
        "version": info.version,
        "platform": info.platform,
        "git_commit": info.git_commit,
        "channel": info.channel,
        "seen_at": to_millis(ctx.received_at),
    }
    return BUILD, row


def normalize_session(body: Any, ctx: ForgeContext, session_id: uuid.UUID) -> tuple[RecordKind, Row]:
    info, check = check_session(body)
    check.raise_if_invalid()
    player = body.get("player") or {}
    row = {
        "session_id": str(session_id),
        "build_id": str(build_id(ctx.project_id, info.version, info.platform, info.git_commit)),
        **ctx.tenant(),
        "version": info.version,
        "platform": info.platform,
        "channel": info.channel,
        "player_external_id": player.get("externalId") or "",
        "device_id": player.get("deviceId") or "",
        "metadata": _json(body.get("metadata")),
        "started_at": to_millis(ctx.received_at),
    }
    return SESSION, row


# --- events --------------------------------------------------------------------------------


def check_event(doc: Any, index: int | None, received_at: datetime) -> tuple[Check, datetime]:
    check = Check(doc, index)
    check.uuid("sessionId", required=True)
    check.string("type", required=True, max_len=128)
    occurred_at = check.timestamp("timestamp", received_at)
    check.choice("severity", SEVERITIES)
    check.obj("properties")
    return check, occurred_at


def event_items(doc: Any) -> tuple[list[Any], bool]:
    """(items, was_batch): one object or an array of at most 200 (seed "Batch events")."""
    if isinstance(doc, list):
        if not doc:
            raise Invalid([Problem("body", "must hold at least one event")])
        if len(doc) > MAX_BATCH_EVENTS:
            raise Invalid([Problem("body", f"must hold at most {MAX_BATCH_EVENTS} events, got {len(doc)}")])
        return doc, True
    return [doc], False


def check_events(items: Sequence[Any], batch: bool, received_at: datetime) -> list[Problem]:
    problems: list[Problem] = []
    for n, item in enumerate(items):
        check, _ = check_event(item, n if batch else None, received_at)
        problems.extend(check.problems)
    return problems


def normalize_event(body: Any, ctx: ForgeContext, event_id: uuid.UUID) -> tuple[RecordKind, Row]:
    check, occurred_at = check_event(body, None, ctx.received_at)
    check.raise_if_invalid()
    row = {
        "event_id": str(event_id),
        "session_id": _own_session(body["sessionId"], ctx.project_id),
        **ctx.tenant(),
        "type": body["type"],
        "severity": body.get("severity") or "",
        "properties": _json(body.get("properties")),
        "occurred_at": to_millis(occurred_at),
        "received_at": to_millis(ctx.received_at),
    }
    return GAME_EVENT, row


# --- reports -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportRefs:
    client_request_id: uuid.UUID | None
    event_ids: list[str]
    upload_ids: list[str]
    export: list[str]


def check_report(doc: Any) -> tuple[ReportRefs, Check]:
    check = Check(doc)
    check.uuid("sessionId", required=True)
    check.string("title", required=True)
    check.string("description", required=True, max_len=_TEXT, empty_ok=True)
    check.choice("severity", SEVERITIES, required=True)
    check.choice("reporterType", REPORTER_TYPES, required=True)
    refs = ReportRefs(
        client_request_id=check.uuid("clientRequestId"),
        event_ids=check.uuid_list("eventIds", MAX_REFERENCES),
        upload_ids=check.uuid_list("uploadIds", MAX_REFERENCES),
        export=check.choice_list("export", EXPORT_PROVIDERS),
    )
    check.obj("metadata")
    return refs, check


def normalize_report(body: Any, ctx: ForgeContext, rid: uuid.UUID) -> tuple[RecordKind, Row]:
    refs, check = check_report(body)
    check.raise_if_invalid()
    row = {
        "report_id": str(rid),
        "session_id": body["sessionId"],
        **ctx.tenant(),
        "client_request_id": str(refs.client_request_id or ""),
        "title": body["title"],
        "description": body["description"],
        "severity": body["severity"],
        "reporter_type": body["reporterType"],
        "event_ids": refs.event_ids,
        "upload_ids": refs.upload_ids,
        "export_providers": refs.export,
        "metadata": _json(body.get("metadata")),
        "received_at": to_millis(ctx.received_at),
    }
    return REPORT, own_report_row(row)


# --- uploads -------------------------------------------------------------------------------


MAX_FILENAME_BYTES = 255  # one name on a file system (NAME_MAX)
MAX_CONTENT_TYPE_CHARS = 128
# What filename_problem checks that a JSON Schema pattern can say (for the OpenAPI document).
FILENAME_PATTERN = r"^[^./\\\x00-\x1f\x7f-\x9f][^/\\\x00-\x1f\x7f-\x9f]*$"
# Invisible characters that reorder or hide text: "gnp.exe" shown as "exe.png".
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def filename_problem(name: str) -> str | None:
    """Why ``name`` cannot be an attachment's file name, or None when it can.

    It becomes the last segment of the object key, so it must be one plain name a file
    system and S3 both store: no path, no dot-led name (hidden files, '..'), no control
    or direction-changing characters, valid UTF-8, at most 255 bytes.
    """
    if "/" in name or "\\" in name:
        return "must be a file name, not a path (no / or \\)"
    if name.startswith("."):
        return "must not start with a dot"
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        return "must not contain control characters (NUL, CR, LF, tab…)"
    if any(c in _BIDI_CONTROLS for c in name):
        return "must not contain bidirectional control characters"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid UTF-8 text"
    if size > MAX_FILENAME_BYTES:
        return f"must be at most {MAX_FILENAME_BYTES} bytes in UTF-8, got {size}"
    return None


@dataclass(frozen=True, slots=True)
class UploadRequest:
    filename: str
    content_type: str
    size: int
    attachment_type: str


def check_uploads(doc: Any, max_sizes: dict[str, int]) -> tuple[str, list[UploadRequest]]:
    """(sessionId or "", files); one file object, or ``{"sessionId"?, "files": [...]}``."""
    top = Check(doc)
    session = top.uuid("sessionId")
    if isinstance(doc, dict) and "files" in doc:
        files = doc["files"]
        if not isinstance(files, list) or not 1 <= len(files) <= MAX_UPLOAD_FILES:
            top.fail("files", f"must be an array of 1 to {MAX_UPLOAD_FILES} file objects")
            files = []
        batch = True
    else:
        files, batch = [doc], False
    out: list[UploadRequest] = []
    for n, item in enumerate(files):
        check = Check(item, n if batch else None, "files." if batch else "")
        known = len(check.problems)
        filename = check.string("filename", required=True, max_len=MAX_FILENAME_BYTES)
        problem = filename_problem(filename) if filename and len(check.problems) == known else None
        if problem:
            check.fail("filename", problem)
        known = len(check.problems)
        content_type = check.string("contentType", required=True, max_len=MAX_CONTENT_TYPE_CHARS)
        problem = media_type_problem(content_type) if content_type and len(check.problems) == known else None
        if problem:
            check.fail("contentType", problem)
        kind = check.choice("type", ATTACHMENT_TYPES, required=True)
        size = check.doc.get("size")
        if size is None:
            check.fail("size", "is required")
        elif not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            check.fail("size", "must be a positive integer (bytes)")
        elif kind and size > max_sizes.get(kind, 0):
            check.fail("size", f"exceeds the {max_sizes.get(kind, 0)} bytes allowed for {kind}")
        top.problems.extend(check.problems)
        if not check.problems:
            out.append(UploadRequest(filename, content_type, int(size), kind))  # type: ignore[arg-type]  # checked above
    top.raise_if_invalid()
    return str(session or ""), out


def normalize_upload(body: Any, ctx: ForgeContext, upload_id: uuid.UUID) -> tuple[RecordKind, Row]:
    """An upload the gateway (or the blob store) reported complete; the body is ours, not the client's."""
    try:
        row = {
            "upload_id": str(upload_id),
            **ctx.tenant(),
            "session_id": _own_session(body.get("session_id", ""), ctx.project_id, none=""),
            "attachment_type": str(body["attachment_type"]),
            "filename": str(body["filename"]),
            "content_type": str(body["content_type"]),
            "size_bytes": int(body["size_bytes"]),
            "sha256": str(body.get("sha256", "")),
            "storage_key": str(body["storage_key"]),
            "completed_at": to_millis(ctx.received_at),
        }
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise Invalid([Problem("body", f"bad upload completion: {err!r}")]) from err
    return UPLOAD, row
