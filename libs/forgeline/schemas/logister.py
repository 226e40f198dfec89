"""The Logister HTTP API wire format (seeds logister-http-api*.txt) → typed records.

One function per envelope, pure and shared: the gateway calls it to validate before it
enqueues (and throws the result away), the normalizer calls it again on the raw payload
to build the typed record. Both therefore agree on what is valid by construction.

Rules, in the order Logister applies them:
1. top-level keys camelCase → snake_case (``eventType`` → ``event_type``);
2. convenience fields sent next to ``context`` are copied into it when not already set;
3. required fields and types are checked; every problem is collected, then reported
   together as Rails-style messages (``"Message can't be blank"``) in a 422.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from forgeline.ids import derived_uuid, legacy_id
from forgeline.schemas.common import humanize, is_number, parse_timestamp, snake_keys, to_millis
from forgeline.schemas.records import CHECK_IN, DEPLOYMENT, ERROR, LOG, METRIC, SPAN, TRANSACTION, RecordKind

EVENT_ENVELOPES = ("event", "EVENT")
CHECK_IN_ENVELOPES = ("check_in", "CHECK_IN")

EVENT_TYPES: dict[str, RecordKind] = {
    "error": ERROR,
    "log": LOG,
    "metric": METRIC,
    "transaction": TRANSACTION,
    "span": SPAN,
    "check_in": CHECK_IN,
}

# Root spans use server/browser, children the rest (seed: "Spans").
SPAN_KINDS = ("server", "browser", "db", "render", "http", "cache", "queue", "resource", "app", "internal")
CHECK_IN_STATUSES = ("ok", "error")
DEFAULT_EXPECTED_INTERVAL_SECONDS = 300

# Seed: "Logister also accepts common fields next to context and copies them into
# context when they are not already set". camelCase spellings are covered by step 1.
CONVENIENCE_FIELDS = (
    "environment",
    "release",
    "trace_id",
    "request_id",
    "session_id",
    "user_id",
    "transaction_name",
    "duration_ms",
    "span_id",
    "parent_span_id",
    "kind",
    "span_kind",
    "started_at",
    "ended_at",
    "expected_interval_seconds",
    "check_in_slug",
    "monitor_slug",
    "check_in_status",
    "status",
)

_MAX_SHORT = 256  # ids, names, environment, release, level…
MAX_DURATION_MS = 366 * 86_400_000.0  # a year: longer is a clock bug, and would overflow datetime arithmetic
_MAX_MESSAGE = 64 * 1024


class Invalid(Exception):
    """The envelope was present but its content failed validation (Logister's 422)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class MissingEnvelope(Exception):
    """The required root key was missing or not an object (Logister's 400)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"param is missing or the value is empty: {name}")
        self.name = name


@dataclass(frozen=True, slots=True)
class IngestContext:
    """What the gateway knows about a request besides its body."""

    event_id: uuid.UUID
    organisation_id: str
    project_id: str
    default_environment: str
    received_at: datetime


def extract_envelope(doc: object, names: tuple[str, str]) -> dict[str, Any]:
    if isinstance(doc, dict):
        for name in names:
            value = doc.get(name)
            if isinstance(value, dict) and value:
                return value
    raise MissingEnvelope(names[0])


def client_event_id(raw: dict[str, Any]) -> uuid.UUID | None:
    """The client-generated ``uuid`` (logister-python sends one per event), if any.

    Raises Invalid when one is sent but is not a UUID.
    """
    doc = snake_keys(raw)  # "UUID" too
    value = doc.get("uuid", doc.get("event_id"))
    if value is None:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Invalid(["Uuid is not a valid UUID"]) from None


class _Checker:
    """Collects every problem of one payload before anything is reported."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, field: str, problem: str) -> None:
        self.errors.append(f"{humanize(field)} {problem}")

    def string(self, doc: dict[str, Any], field: str, *, required: bool = False, limit: int = _MAX_SHORT) -> str:
        value = doc.get(field)
        if value is None or value == "":
            if required:
                self.fail(field, "can't be blank")
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(field, "must be a string")
            return ""
        text = value if isinstance(value, str) else str(value)
        if required and not text.strip():
            self.fail(field, "can't be blank")
            return ""
        if len(text) > limit:
            self.fail(field, f"is too long (maximum is {limit} characters)")
            return ""
        return text

    def number(
        self, doc: dict[str, Any], field: str, *, non_negative: bool = False, maximum: float | None = None
    ) -> float | None:
        value = doc.get(field)
        if value is None:
            return None
        if isinstance(value, str):
            # Some clients serialise numbers as strings; Rails' numericality accepts them.
            try:
                value = float(value)
            except ValueError:
                self.fail(field, "is not a number")
                return None
        if not is_number(value) or value in (float("inf"), float("-inf")):
            self.fail(field, "is not a number")
            return None
        if non_negative and value < 0:
            self.fail(field, "must be greater than or equal to 0")
            return None
        if maximum is not None and value > maximum:
            self.fail(field, f"must be less than or equal to {maximum:g}")
            return None
        return float(value)

    def timestamp(self, doc: dict[str, Any], field: str) -> datetime | None:
        value = doc.get(field)
        if value is None or value == "":
            return None
        parsed = parse_timestamp(value)
        if parsed is None:
            self.fail(field, "is not a valid ISO 8601 timestamp")
        return parsed

    def raise_if_any(self) -> None:
        if self.errors:
            raise Invalid(self.errors)


def _context_with_conveniences(event: dict[str, Any], check: _Checker) -> dict[str, Any]:
    context = event.get("context")
    if context is None:
        context = {}
    elif not isinstance(context, dict):
        check.fail("context", "must be an object")
        context = {}
    else:
        context = dict(context)
    for field in CONVENIENCE_FIELDS:
        value = event.get(field)
        if value is not None and context.get(field) is None:
            context[field] = value
    return context


def first_line(message: str) -> str:
    return message.split("\n", 1)[0].strip()[:_MAX_SHORT]


def _nested(context: dict[str, Any], outer: str, inner: str) -> Any:
    value = context.get(outer)
    return value.get(inner) if isinstance(value, dict) else None


def error_grouping(context: dict[str, Any], fingerprint: str, message: str) -> tuple[str, str]:
    """An error's (fingerprint, exception_class): the client's fingerprint, else the message's
    first line; the class from ``context.exception`` (``class`` or ``type``)."""
    exception = context.get("exception")
    exception_class = ""
    if isinstance(exception, dict):
        exception_class = str(exception.get("class") or exception.get("type") or "")[:_MAX_SHORT]
    return fingerprint or first_line(message), exception_class


def normalize_event(raw: dict[str, Any], ctx: IngestContext) -> tuple[RecordKind, dict[str, Any]]:
    """Validate one ``event`` envelope's content and build its typed record.

    Raises Invalid with every problem found.
    """
    check = _Checker()
    event = snake_keys(raw)
    try:
        client_event_id(event)
    except Invalid as err:
        check.errors.extend(err.errors)

    event_type = check.string(event, "event_type", required=True)
    kind = EVENT_TYPES.get(event_type) if event_type else None
    if event_type and kind is None:
        check.fail("event_type", "is not included in the list")

    context = _context_with_conveniences(event, check)
    is_span = kind is SPAN
    message = check.string(event, "message", required=not is_span, limit=_MAX_MESSAGE)
    level = check.string(event, "level", limit=32).lower() or ("error" if kind is ERROR else "info")
    fingerprint = check.string(event, "fingerprint", limit=_MAX_SHORT)
    occurred = check.timestamp(event, "occurred_at")
    environment = check.string(context, "environment") or ctx.default_environment

    record: dict[str, Any] = {
        "event_id": str(ctx.event_id),
        "legacy_id": legacy_id(ctx.event_id),
        "organisation_id": ctx.organisation_id,
        "project_id": ctx.project_id,
        "environment": environment,
        "received_at": to_millis(ctx.received_at),
        "release": check.string(context, "release"),
        "trace_id": check.string(context, "trace_id"),
        "request_id": check.string(context, "request_id"),
        "session_id": check.string(context, "session_id"),
        "user_id": check.string(context, "user_id"),
        "level": level,
        "message": message,
    }

    if kind is SPAN:
        occurred = _span_fields(event, context, check, record, occurred, ctx)
    elif kind is ERROR:
        record["fingerprint"], record["exception_class"] = error_grouping(context, fingerprint, message)
    elif kind is LOG:
        record["fingerprint"] = fingerprint
    elif kind is METRIC:
        value = context.get("value", _nested(context, "metric", "value"))
        record["name"] = message
        record["value"] = check.number({"value": value}, "value")
        record["unit"] = str(context.get("unit") or _nested(context, "metric", "unit") or "")[:_MAX_SHORT]
        record["duration_ms"] = check.number(context, "duration_ms", non_negative=True, maximum=MAX_DURATION_MS)
    elif kind is TRANSACTION:
        record["transaction_name"] = check.string(context, "transaction_name") or message[:_MAX_SHORT]
        record["duration_ms"] = check.number(context, "duration_ms", non_negative=True, maximum=MAX_DURATION_MS)
        record["route"] = str(context.get("route") or _nested(context, "request", "route") or "")[:_MAX_SHORT]
        record["method"] = str(context.get("method") or _nested(context, "request", "method") or "")[:16]
        status_field = "status_code" if "status_code" in context else "status"
        # A textual status ("ok") is context, not an HTTP code; a numeric one must fit the column.
        status_code = (
            check.number(context, status_field, non_negative=True, maximum=999)
            if is_number(context.get(status_field))
            else None
        )
        record["status_code"] = int(status_code) if status_code is not None else None
    elif kind is CHECK_IN:
        slug = check.string(context, "check_in_slug") or check.string(context, "monitor_slug")
        if not slug:
            check.fail("check_in_slug", "can't be blank")
        status = str(context.get("check_in_status") or context.get("status") or "ok")
        if status not in CHECK_IN_STATUSES:
            check.fail("check_in_status", "is not included in the list")
        record.update(_check_in_tail(context, check, slug, status, source="ingest_events"))
        for key in ("level", "message", "session_id", "user_id"):
            del record[key]

    check.raise_if_any()
    assert kind is not None  # an unknown type has failed above
    record["occurred_at"] = to_millis(occurred or ctx.received_at)
    record["context"] = orjson.dumps(context, option=orjson.OPT_NON_STR_KEYS).decode()
    return kind, record


def _span_fields(
    event: dict[str, Any],
    context: dict[str, Any],
    check: _Checker,
    record: dict[str, Any],
    occurred: datetime | None,
    ctx: IngestContext,
) -> datetime | None:
    name = check.string(event, "name", limit=_MAX_SHORT) or record["message"][:_MAX_SHORT]
    if not name:
        check.fail("name", "can't be blank")
    kind = str(context.get("kind") or context.get("span_kind") or "internal")
    if kind not in SPAN_KINDS:
        check.fail("kind", "is not included in the list")
    span_id = check.string(context, "span_id", required=True)
    if not record["trace_id"]:
        check.fail("trace_id", "can't be blank")
    started = check.timestamp(context, "started_at") or occurred or ctx.received_at
    ended = check.timestamp(context, "ended_at")
    duration = check.number(context, "duration_ms", non_negative=True, maximum=MAX_DURATION_MS)
    if duration is None:
        duration = max((ended - started).total_seconds() * 1000, 0.0) if ended else 0.0
    if ended is None:
        ended = started + timedelta(milliseconds=duration)
    status = context.get("status")
    record.update(
        {
            "span_id": span_id,
            "parent_span_id": check.string(context, "parent_span_id"),
            "name": name,
            "kind": kind,
            "status": str(status)[:32] if isinstance(status, str | int) else "",
            "started_at": to_millis(started),
            "ended_at": to_millis(ended),
            "duration_ms": duration,
            "service": str(context.get("service") or "")[:_MAX_SHORT],
            "route": str(context.get("route") or "")[:_MAX_SHORT],
        }
    )
    del record["message"]
    return occurred or started


def _check_in_tail(doc: dict[str, Any], check: _Checker, slug: str, status: str, source: str) -> dict[str, Any]:
    interval: float | None = check.number(doc, "expected_interval_seconds")
    if interval is None:
        interval = DEFAULT_EXPECTED_INTERVAL_SECONDS
    elif interval <= 0 or interval != int(interval) or interval > 366 * 86400:
        check.fail("expected_interval_seconds", "must be a positive whole number of seconds")
    return {
        "slug": slug,
        "status": status,
        "expected_interval_seconds": int(interval),
        "duration_ms": check.number(doc, "duration_ms", non_negative=True),
        "source": source,
    }


def normalize_check_in(raw: dict[str, Any], ctx: IngestContext) -> tuple[RecordKind, dict[str, Any]]:
    """Validate one ``check_in`` envelope's content and build its typed record."""
    check = _Checker()
    doc = snake_keys(raw)
    context = _context_with_conveniences(doc, check)
    slug = check.string(doc, "slug", required=True)
    status = check.string(doc, "status") or "ok"
    if status and status not in CHECK_IN_STATUSES:
        check.fail("status", "is not included in the list")
    occurred = check.timestamp(doc, "occurred_at")
    record: dict[str, Any] = {
        "event_id": str(ctx.event_id),
        "legacy_id": legacy_id(ctx.event_id),
        "organisation_id": ctx.organisation_id,
        "project_id": ctx.project_id,
        "environment": check.string(doc, "environment") or ctx.default_environment,
        "received_at": to_millis(ctx.received_at),
        "release": check.string(doc, "release"),
        "trace_id": check.string(doc, "trace_id"),
        "request_id": check.string(doc, "request_id"),
    }
    record.update(_check_in_tail(doc, check, slug, status, source="check_ins"))
    check.raise_if_any()
    record["occurred_at"] = to_millis(occurred or ctx.received_at)
    record["context"] = orjson.dumps(context, option=orjson.OPT_NON_STR_KEYS).decode()
    return CHECK_IN, record


DEPLOYMENT_ENVELOPES = ("deployment", "DEPLOYMENT")
# A git commit id, abbreviated (7+) or whole (SHA-1: 40, SHA-256: 64 hex digits).
_COMMIT_SHA = re.compile(r"[0-9a-fA-F]{7,64}")
_DEPLOYMENT_TEXT = (
    "repository",
    "commit_sha",
    "branch",
    "pull_request_url",
    "release_tag",
    "release_url",
    "compare_url",
    "workflow_run_url",
    "deployment_url",
)


def deployment_event_id(raw: dict[str, Any], project_id: str, default_environment: str) -> uuid.UUID:
    """A deployment's id from what identifies it: recording the same deploy twice is one row.

    (project, environment, release, commit, deployed_at): a CI step that re-runs gives the
    same id; the same release deployed again later (another deployed_at) is a new row.
    """
    doc = snake_keys(raw)
    parts = [project_id, str(doc.get("environment") or default_environment)]
    parts += [str(doc.get(key) or "") for key in ("release", "commit_sha", "deployed_at")]
    return derived_uuid("deployment", *parts)


def normalize_deployment(raw: dict[str, Any], ctx: IngestContext) -> tuple[RecordKind, dict[str, Any]]:
    """Validate one ``deployment`` envelope (logister-python ``record_deployment``)."""
    check = _Checker()
    doc = snake_keys(raw)
    record: dict[str, Any] = {
        "deployment_id": str(ctx.event_id),
        "organisation_id": ctx.organisation_id,
        "project_id": ctx.project_id,
        "environment": check.string(doc, "environment") or ctx.default_environment,
        "release": check.string(doc, "release", required=True),
        "received_at": to_millis(ctx.received_at),
    }
    for key in _DEPLOYMENT_TEXT:
        record[key] = check.string(doc, key, limit=2048)
    if record["commit_sha"] and not _COMMIT_SHA.fullmatch(record["commit_sha"]):
        check.fail("commit_sha", "is invalid")  # as Logister: a 7 to 64 digit hex commit id
    number = doc.get("pull_request_number")
    if number is not None and (isinstance(number, bool) or not isinstance(number, int | str)):
        check.fail("pull_request_number", "must be a number or a string")
        number = None
    record["pull_request_number"] = "" if number is None else str(number)[:64]
    deployed = check.timestamp(doc, "deployed_at")
    check.raise_if_any()
    record["deployed_at"] = to_millis(deployed or ctx.received_at)
    return DEPLOYMENT, record
