"""Typed records: what the normalizer writes to the typed topics and the writer inserts.

A typed record is a JSON object whose keys are exactly the columns of its table
(timestamps as epoch milliseconds, ``context`` as a JSON string). Each kind names its
topic and table here, so a reader can follow ``kind → topic → table`` in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from forgeline.bus import topics

ColumnType = Literal["uuid", "str", "int", "float", "nullable_float", "nullable_int", "millis", "nullable_millis"]


@dataclass(frozen=True, slots=True)
class RecordKind:
    name: str
    topic: str
    table: str
    columns: tuple[tuple[str, ColumnType], ...]

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]


_IDENTITY: tuple[tuple[str, ColumnType], ...] = (
    ("event_id", "uuid"),
    ("legacy_id", "int"),
    ("organisation_id", "str"),
    ("project_id", "str"),
    ("environment", "str"),
    ("occurred_at", "millis"),
    ("received_at", "millis"),
)
_CORRELATION: tuple[tuple[str, ColumnType], ...] = (
    ("release", "str"),
    ("trace_id", "str"),
    ("request_id", "str"),
    ("session_id", "str"),
    ("user_id", "str"),
    ("context", "str"),
)

ERROR = RecordKind(
    "error",
    topics.TYPED_ERRORS,
    "errors",
    _IDENTITY
    + (("level", "str"), ("message", "str"), ("fingerprint", "str"), ("exception_class", "str"))
    + _CORRELATION,
)
LOG = RecordKind(
    "log",
    topics.TYPED_LOGS,
    "logs",
    _IDENTITY + (("level", "str"), ("message", "str"), ("fingerprint", "str")) + _CORRELATION,
)
METRIC = RecordKind(
    "metric",
    topics.TYPED_METRICS,
    "metrics",
    _IDENTITY
    + (
        ("level", "str"),
        ("name", "str"),
        ("value", "nullable_float"),
        ("unit", "str"),
        ("duration_ms", "nullable_float"),
    )
    + _CORRELATION,
)
TRANSACTION = RecordKind(
    "transaction",
    topics.TYPED_TRANSACTIONS,
    "transactions",
    _IDENTITY
    + (
        ("level", "str"),
        ("message", "str"),
        ("transaction_name", "str"),
        ("duration_ms", "nullable_float"),
        ("route", "str"),
        ("method", "str"),
        ("status_code", "nullable_int"),
    )
    + _CORRELATION,
)
SPAN = RecordKind(
    "span",
    topics.TYPED_SPANS,
    "spans",
    _IDENTITY
    + (
        ("span_id", "str"),
        ("parent_span_id", "str"),
        ("name", "str"),
        ("kind", "str"),
        ("status", "str"),
        ("level", "str"),
        ("started_at", "millis"),
        ("ended_at", "nullable_millis"),
        ("duration_ms", "float"),
        ("service", "str"),
        ("route", "str"),
    )
    + _CORRELATION,
)
CHECK_IN = RecordKind(
    "check_in",
    topics.TYPED_CHECKINS,
    "check_ins",
    _IDENTITY
    + (
        ("slug", "str"),
        ("status", "str"),
        ("expected_interval_seconds", "int"),
        ("duration_ms", "nullable_float"),
        ("source", "str"),
        ("release", "str"),
        ("trace_id", "str"),
        ("request_id", "str"),
        ("context", "str"),
    ),
)

KINDS: dict[str, RecordKind] = {k.name: k for k in (ERROR, LOG, METRIC, TRANSACTION, SPAN, CHECK_IN)}
KINDS_BY_TOPIC: dict[str, RecordKind] = {k.topic: k for k in KINDS.values()}

DEPLOYMENT = RecordKind(
    "deployment",
    topics.TYPED_DEPLOYMENTS,
    "deployments",
    (
        ("deployment_id", "uuid"),
        ("organisation_id", "str"),
        ("project_id", "str"),
        ("environment", "str"),
        ("release", "str"),
        ("repository", "str"),
        ("commit_sha", "str"),
        ("branch", "str"),
        ("deployed_at", "millis"),
        ("received_at", "millis"),
        ("pull_request_number", "str"),
        ("pull_request_url", "str"),
        ("release_tag", "str"),
        ("release_url", "str"),
        ("compare_url", "str"),
        ("workflow_run_url", "str"),
        ("deployment_url", "str"),
    ),
)
KINDS[DEPLOYMENT.name] = DEPLOYMENT
KINDS_BY_TOPIC[DEPLOYMENT.topic] = DEPLOYMENT
