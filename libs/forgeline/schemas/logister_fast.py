"""Compiled validation of a Logister ``{"event": {...}}`` line: msgspec decodes and checks it in C.

The fast path proves a line valid; it never rejects one. ``accepted_event_id`` returns the
line's id when the line has the common shape and every rule holds, and None otherwise —
then the caller runs the full validator (``forgeline.schemas.logister.normalize_event``),
which alone writes error messages. The gateway uses it to accept (``accepted_event_id``,
``single_event``), the normalizer to build the rows of batch items (``event_row``). Two
invariants, checked by tests/property/test_logister_fast_path.py:

- anything the fast path accepts, the full validator accepts too (no 202 for a bad event);
- ``event_row`` of an accepted event is ``normalize_event``'s row, cell for cell.

The common shape is what logister-python sends for errors and logs: snake_case keys only
(an unknown key, a camelCase spelling or an ``EVENT`` root falls back), a ``uuid`` or
``event_id`` UUID, ``context`` holding scalars or one level of objects/arrays of scalars.
Numbers are decoded as float, as orjson does beyond 64 bits: a number orjson refuses, msgspec
refuses too. Other event types (span, metric, transaction, check_in) always fall back.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
import orjson
from msgspec import UNSET, Meta, UnsetType

from forgeline.ids import legacy_id
from forgeline.schemas.common import parse_timestamp, to_millis
from forgeline.schemas.logister import CONVENIENCE_FIELDS, IngestContext, error_grouping
from forgeline.schemas.records import ERROR, LOG, RecordKind

_MAX_SHORT = 256  # as forgeline.schemas.logister
_MAX_MESSAGE = 64 * 1024
_CONVENIENCE = frozenset(CONVENIENCE_FIELDS)
FAST_DEPTH = 4  # line → event → context → one nested object: the deepest shape accepted here

Scalar = str | float | bool | None
Value = Scalar | dict[str, Scalar] | list[Scalar]
Short = Annotated[str, Meta(max_length=_MAX_SHORT)]

# The context fields an error or log validates (as short strings), after top-level
# convenience fields are copied in (forgeline.schemas.logister.CONVENIENCE_FIELDS).
CHECKED_CONTEXT = ("environment", "release", "trace_id", "request_id", "session_id", "user_id")


class FastEvent(msgspec.Struct, forbid_unknown_fields=True):
    """An error or log event in the common shape (see the module docstring)."""

    event_type: Literal["error", "log"]
    message: Annotated[str, Meta(max_length=_MAX_MESSAGE)]
    uuid: UUID | UnsetType = UNSET
    event_id: UUID | UnsetType = UNSET
    level: Annotated[str, Meta(max_length=32)] | None = None
    fingerprint: Short | None = None
    occurred_at: str | None = None
    context: dict[str, Value] | None = None
    # Convenience fields, copied into context when it does not set them.
    # (Checked here when sent at the top: valid whether or not context overrides them.)
    environment: Short | None = None
    release: Short | None = None
    trace_id: Short | None = None
    request_id: Short | None = None
    session_id: Short | None = None
    user_id: Short | None = None
    transaction_name: Value = None
    duration_ms: Value = None
    span_id: Value = None
    parent_span_id: Value = None
    kind: Value = None
    span_kind: Value = None
    started_at: Value = None
    ended_at: Value = None
    expected_interval_seconds: Value = None
    check_in_slug: Value = None
    monitor_slug: Value = None
    check_in_status: Value = None
    status: Value = None


class FastLine(msgspec.Struct, forbid_unknown_fields=True):
    event: FastEvent


class _RawEnvelope(msgspec.Struct, forbid_unknown_fields=True):
    event: msgspec.Raw


_line = msgspec.json.Decoder(FastLine)
_envelope = msgspec.json.Decoder(_RawEnvelope)


def decode_line(line: bytes | memoryview) -> FastEvent | None:
    """The line's event when it decodes in the common shape, else None."""
    try:
        return _line.decode(line).event
    except msgspec.MsgspecError:  # DecodeError and ValidationError: the full path decides
        return None


def accepted_event_id(line: bytes, max_depth: int) -> UUID | None:
    """The id of a line the fast path proves valid (its ``uuid``, else its ``event_id``);
    None when it cannot, and the full validator must decide."""
    if max_depth < FAST_DEPTH:
        return None
    event = decode_line(line)
    if event is None:
        return None
    identity = event.uuid if event.uuid is not UNSET else event.event_id
    if isinstance(identity, UnsetType) or not valid_event(event):
        return None
    return identity


def single_event(body: bytes, max_depth: int) -> tuple[bytes, UUID | None, str] | None:
    """A ``POST /api/v1/ingest_events`` body the fast path proves valid: its event object's
    JSON as received, the client's id (None when it sent none) and the event type. None: the
    full path decides."""
    if max_depth < FAST_DEPTH:
        return None
    event = decode_line(body)  # typed first: fails at once on junk, however deep it nests
    if event is None or not valid_event(event):
        return None
    content = _envelope.decode(body).event  # cannot fail: the same bytes just decoded
    identity = event.uuid if event.uuid is not UNSET else event.event_id
    return bytes(content), None if isinstance(identity, UnsetType) else identity, event.event_type


def valid_event(event: FastEvent) -> bool:
    """The rules msgspec's types cannot say, as normalize_event applies them to an error or log."""
    message = event.message
    if not message or message.isspace():
        return False  # "Message can't be blank" (what strip() would leave empty)
    if event.occurred_at and parse_timestamp(event.occurred_at) is None:
        return False
    context = event.context
    if context:
        # A context value wins over the top-level one (already checked by its type) unless None.
        for field in CHECKED_CONTEXT:
            value = context.get(field)
            if value is not None and not (isinstance(value, str) and len(value) <= _MAX_SHORT):
                return False
    return True


def event_row(event: FastEvent, body: dict[str, Any], ctx: IngestContext) -> tuple[RecordKind, dict[str, Any]]:
    """The typed row of an event ``valid_event`` accepted: normalize_event's row, cell for cell
    and key for key, without its checks (tests/property/test_logister_fast_path.py compares them).

    ``body`` is the same event as orjson reads it: context values keep their JSON spelling
    (``42`` stays an integer; the Struct holds floats), so the context cell is the same text.
    """
    kind = ERROR if event.event_type == "error" else LOG
    given = body.get("context")
    context: dict[str, Any] = {} if given is None else dict(given)
    if not _CONVENIENCE.isdisjoint(body):  # most events send none: skip the ordered loop
        for field in CONVENIENCE_FIELDS:  # in this order: it is the context cell's key order
            value = body.get(field)  # keys are snake_case here: body is snake_keys(body)
            if value is not None and context.get(field) is None:
                context[field] = value
    message = event.message
    received_at = to_millis(ctx.received_at)
    row: dict[str, Any] = {
        "event_id": str(ctx.event_id),
        "legacy_id": legacy_id(ctx.event_id),
        "organisation_id": ctx.organisation_id,
        "project_id": ctx.project_id,
        "environment": context.get("environment") or ctx.default_environment,
        "received_at": received_at,
        "release": context.get("release") or "",
        "trace_id": context.get("trace_id") or "",
        "request_id": context.get("request_id") or "",
        "session_id": context.get("session_id") or "",
        "user_id": context.get("user_id") or "",
        "level": (event.level or "").lower() or ("error" if kind is ERROR else "info"),
        "message": message,
    }
    fingerprint = event.fingerprint or ""
    if kind is ERROR:
        row["fingerprint"], row["exception_class"] = error_grouping(context, fingerprint, message)
    else:
        row["fingerprint"] = fingerprint
    occurred = parse_timestamp(event.occurred_at) if event.occurred_at else None
    row["occurred_at"] = received_at if occurred is None else to_millis(occurred)
    row["context"] = orjson.dumps(context, option=orjson.OPT_NON_STR_KEYS).decode()
    return kind, row
