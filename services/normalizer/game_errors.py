"""Game crashes into the error inbox: which Forge Logger records are also errors, and how.

One inbox for a studio: a crash in the game and an exception on its servers are triaged in
the same ``error_groups``, grouped by the same rule (``forgeline.grouping``). Besides its
own typed record, the normalizer emits a typed error (``typed.errors``) for:

- a game event whose ``type`` is ``crash`` or ``exception`` (any case), or whose
  ``severity`` is ``critical``;
- a bug report marked as a crash: ``"crash": true`` in its ``metadata``.

The error takes, from the event's ``properties`` (or the report's ``metadata``):
``message`` (else ``error``, else ``reason``; a report's ``title``; else the event type),
``exceptionClass`` (or ``exception_class``, or ``exception`` as text), ``fingerprint`` (an
explicit group, as Logister's), ``build``/``buildVersion`` as its release. Its level is
``fatal`` for a crash or a critical event, ``error`` otherwise. It keeps the game record's id
(``errors.event_id`` = ``game_events.event_id``, or the report's ``report_id``) and its
session; ``error_events`` adds each session's build version, platform and channel.

Pure, like the rest of the normalizer: the same record always gives the same error.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from forgeline.bus.port import OutgoingRecord
from forgeline.bus.topics import TYPED_GAME_EVENTS, TYPED_REPORTS
from forgeline.grouping import first_line, group_fingerprint, group_key
from forgeline.ids import legacy_id
from forgeline.schemas.records import ERROR
from forgeline.schemas.typed import decode_typed, typed_record

CRASH_TYPES = frozenset({"crash", "exception"})
_MAX_SHORT = 512


def _text(doc: dict[str, Any], *names: str) -> str:
    """The first of ``names`` that holds a non-empty scalar, as text."""
    for name in names:
        value = doc.get(name)
        if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return ""


def _object(text: Any) -> dict[str, Any]:
    try:
        value = orjson.loads(text) if isinstance(text, str | bytes) else text
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _exception_class(doc: dict[str, Any]) -> str:
    exception = doc.get("exception")
    if isinstance(exception, dict):
        return _text(exception, "class", "type")[:_MAX_SHORT]
    return _text(doc, "exceptionClass", "exception_class", "exception")[:_MAX_SHORT]


def _error_record(row: dict[str, Any]) -> OutgoingRecord:
    return typed_record(ERROR, row, group_key(row["project_id"], _group(row)))


def _group(row: dict[str, Any]) -> str:
    return group_fingerprint(row["fingerprint"], row["message"], row["exception_class"])


def _row(
    typed: dict[str, Any], record_id: str, occurred_at: int, level: str, doc: dict[str, Any], message: str, source: str
) -> dict[str, Any]:
    explicit = _text(doc, "fingerprint")[:_MAX_SHORT]
    context = {"source": source, **{k: v for k, v in doc.items() if k not in ("message", "fingerprint")}}
    return {
        "event_id": record_id,
        "legacy_id": legacy_id(uuid.UUID(record_id)),
        "organisation_id": typed["organisation_id"],
        "project_id": typed["project_id"],
        "environment": typed["environment"],
        "occurred_at": occurred_at,
        "received_at": typed["received_at"],
        "level": level,
        "message": message,
        # As the Logister rule stores it: the explicit fingerprint, else the first line.
        "fingerprint": explicit or first_line(message),
        "exception_class": _exception_class(doc),
        "release": _text(doc, "build", "buildVersion", "release")[:_MAX_SHORT],
        "trace_id": "",
        "request_id": "",
        "session_id": str(typed.get("session_id") or ""),
        "user_id": _text(doc, "playerId", "userId")[:_MAX_SHORT],
        "context": orjson.dumps(context).decode(),
    }


def game_error(typed: OutgoingRecord) -> OutgoingRecord | None:
    """The typed error a game event or report also is, or None (see the module docstring)."""
    if typed.topic == TYPED_GAME_EVENTS:
        row = decode_typed(typed)
        kind = str(row.get("type") or "").lower()
        severity = str(row.get("severity") or "")
        if kind not in CRASH_TYPES and severity != "critical":
            return None
        props = _object(row.get("properties"))
        message = _text(props, "message", "error", "reason") or str(row.get("type") or "")
        level = "fatal" if kind == "crash" or severity == "critical" else "error"
        doc = {**props, "type": row.get("type"), "severity": severity}
        return _error_record(_row(row, row["event_id"], row["occurred_at"], level, doc, message, "forge_event"))
    if typed.topic == TYPED_REPORTS:
        row = decode_typed(typed)
        metadata = _object(row.get("metadata"))
        if metadata.get("crash") is not True:
            return None
        message = _text(metadata, "message") or str(row.get("title") or "") or "crash"
        doc = {**metadata, "title": row.get("title"), "severity": row.get("severity")}
        return _error_record(_row(row, row["report_id"], row["received_at"], "fatal", doc, message, "forge_report"))
    return None
