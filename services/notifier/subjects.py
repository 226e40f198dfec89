"""What the notifier reads, turned into provider-neutral notifications (pure functions).

- ``typed.reports``: Forge Logger bug reports; each asks for its own export providers.
- ``events.error_groups``: "new" and "regressed" error groups (services/errors).
- ``events.monitors``: monitor state changes (services/monitors); only failing and missed.

Every notification has a subject id derived upstream from its input (report id, notification
id, change id), so a replayed record yields the same subject and thus the same delivery ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from forgeline.bus.port import Record
from forgeline.bus.topics import EVENTS_ERROR_GROUPS, EVENTS_MONITORS, TYPED_REPORTS
from forgeline.ids import derived_uuid
from forgeline.processing.deadletter import InvalidMessage
from forgeline.schemas.forge import own_report_row
from forgeline.schemas.typed import decode_typed

TOPICS = (TYPED_REPORTS, EVENTS_ERROR_GROUPS, EVENTS_MONITORS)
MAX_TEXT = 3500  # below every provider's body limit once wrapped (Discord embeds: 4096)


@dataclass(frozen=True, slots=True)
class Notification:
    subject_id: str
    subject: str  # one of forgeline.notify.model.SUBJECTS, or "test"
    project_id: str
    title: str
    text: str  # plain text / markdown, several lines
    severity: str  # "info" | "warning" | "error" | "critical": colours and labels
    fields: tuple[tuple[str, str], ...] = ()
    # For reports: the providers the report asked for (others never get it).
    requested: tuple[str, ...] | None = None
    data: dict[str, Any] = field(default_factory=dict)


def delivery_id(project_id: str, subject_id: str, target_id: str) -> str:
    """One id per (project, subject, provider target): the key of exactly-once delivery."""
    return str(derived_uuid("notify_delivery", project_id, subject_id, target_id))


def _doc(record: Record) -> dict[str, Any]:
    if record.topic == TYPED_REPORTS:  # a typed record: either format, timestamps as ms
        try:
            return decode_typed(record)
        except InvalidMessage as err:
            raise InvalidMessage("bad_notify_subject", err.detail) from err
    try:
        doc = orjson.loads(record.value)
    except orjson.JSONDecodeError as err:
        raise InvalidMessage("bad_notify_subject", repr(err)) from err
    if not isinstance(doc, dict):
        raise InvalidMessage("bad_notify_subject", "not a JSON object")
    return doc


def _when(millis: Any) -> str:
    try:
        return datetime.fromtimestamp(int(millis) / 1000, UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse(record: Record) -> Notification | None:
    """The notification a record carries, or None when it is not one (e.g. a monitor recovering).

    Raises InvalidMessage for a record that cannot be read (it goes to the dead-letter topic).
    """
    doc = _doc(record)
    try:
        if record.topic == TYPED_REPORTS:
            return _report(doc)
        if record.topic == EVENTS_ERROR_GROUPS:
            return _error_group(doc)
        if record.topic == EVENTS_MONITORS:
            return _monitor(doc)
    except (KeyError, TypeError, ValueError) as err:
        raise InvalidMessage("bad_notify_subject", f"{record.topic}: {err!r}") from err
    raise InvalidMessage("bad_notify_subject", f"unexpected topic {record.topic}")


_REPORT_SEVERITY = {"low": "info", "medium": "warning", "high": "error", "critical": "critical"}


def _report(doc: dict[str, Any]) -> Notification | None:
    requested = tuple(str(p) for p in doc.get("export_providers") or ())
    if not requested:
        return None  # stored only: the report asked for no export
    doc = own_report_row(doc)  # typed before foreign citations were refused: never forward them
    title = str(doc["title"])
    fields = (
        ("severity", str(doc.get("severity", ""))),
        ("reporter", str(doc.get("reporter_type", ""))),
        ("environment", str(doc.get("environment", ""))),
        ("session", str(doc.get("session_id", ""))),
        ("attachments", str(len(doc.get("upload_ids") or ()))),
        ("received", _when(doc.get("received_at"))),
    )
    return Notification(
        subject_id=str(doc["report_id"]),
        subject="report",
        project_id=str(doc["project_id"]),
        title=_clip(f"Bug report: {title}", 240),
        text=_clip(str(doc.get("description") or "(no description)")),
        severity=_REPORT_SEVERITY.get(str(doc.get("severity")), "warning"),
        fields=fields,
        requested=requested,
        data=doc,
    )


def _error_group(doc: dict[str, Any]) -> Notification:
    kind = str(doc["kind"])
    if kind not in ("new", "regressed"):
        raise ValueError(f"unknown error group kind {kind!r}")
    label = "New error" if kind == "new" else "Regressed error"
    title = str(doc.get("title") or doc.get("exception_class") or doc.get("fingerprint") or "")
    fields = (
        ("level", str(doc.get("level", ""))),
        ("events", str(doc.get("event_count", ""))),
        ("group", str(doc.get("group_id", ""))),
        ("event", str(doc.get("event_id", ""))),
        ("occurred", _when(doc.get("occurred_at"))),
    )
    exception = str(doc.get("exception_class") or "")
    text = f"{exception}: {title}" if exception and not title.startswith(exception) else title
    return Notification(
        subject_id=str(doc["notification_id"]),
        subject=f"error_{kind}",
        project_id=str(doc["project_id"]),
        title=_clip(f"{label}: {title}", 240),
        text=_clip(text),
        severity="critical" if str(doc.get("level")) in ("fatal", "critical") else "error",
        fields=fields,
        data=doc,
    )


def _monitor(doc: dict[str, Any]) -> Notification | None:
    state = str(doc["state"])
    if state not in ("failing", "missed"):
        return None
    monitor = f"{doc['slug']} ({doc['environment']})"
    fields = (
        ("state", state),
        ("previous", str(doc.get("previous_state", ""))),
        ("reason", str(doc.get("reason", ""))),
        ("changed", _when(doc.get("changed_at"))),
    )
    what = "failed (an error check-in)" if state == "failing" else "missed its expected check-in"
    return Notification(
        subject_id=str(doc["change_id"]),
        subject=f"monitor_{state}",
        project_id=str(doc["project_id"]),
        title=_clip(f"Monitor {state}: {monitor}", 240),
        text=f"Monitor {monitor} {what}.",
        severity="error",
        fields=fields,
        data=doc,
    )


def sample_notification(project_id: str, nonce: str) -> Notification:
    """What `forgeline notify test` sends (a fresh subject each time: never deduplicated)."""
    return Notification(
        subject_id=f"test-{nonce}",
        subject="test",
        project_id=project_id,
        title="Forgeline test notification",
        text="This is a test from `forgeline notify test`: this target is configured correctly.",
        severity="info",
        fields=(("project", project_id),),
    )
