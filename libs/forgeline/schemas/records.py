"""Typed records: what the normalizer writes to the typed topics and the writer inserts.

A typed record is one row of its table as a ``JSONEachRow`` line: a JSON object whose keys
are exactly the table's columns, in column order, each value as the column holds it
(timestamps as decimal epoch seconds, ``context`` as a JSON string). It is encoded in one
place, ``forgeline.schemas.typed`` (which also reads the older format, timestamps as epoch
milliseconds). Each kind names its topic and table here, so a reader can follow
``kind → topic → table`` in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from forgeline.bus import topics

ColumnType = Literal[
    "uuid",
    "str",
    "uint32",
    "uint64",
    "float",
    "nullable_float",
    "nullable_int32",
    "millis",
    "nullable_millis",
    "str_array",
    "float_array",
]


# DateTime64(3)'s range, 1900-01-01 to 2299-12-31, in epoch milliseconds: what a typed record
# may hold; outside it ClickHouse would store a wrapped or saturated date.
DATETIME64_MIN_MS = -2_208_988_800_000
DATETIME64_MAX_MS = 10_413_791_999_999
# The integer columns' ranges: ClickHouse would wrap a JSON number that does not fit.
INT_RANGES: dict[ColumnType, tuple[int, int]] = {
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
    "nullable_int32": (-(2**31), 2**31 - 1),
}


def datetime64_ms(value: Any) -> int:
    """``value`` as epoch milliseconds a DateTime64(3) column holds; ValueError outside its range."""
    millis = int(value)
    if not DATETIME64_MIN_MS <= millis <= DATETIME64_MAX_MS:
        raise ValueError(f"timestamp {millis} ms is outside DateTime64's range")
    return millis


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
    ("legacy_id", "uint64"),
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
        ("status_code", "nullable_int32"),
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
        ("expected_interval_seconds", "uint32"),
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

# --- Game telemetry: Forge Logger (schemas/forge.py) and MessagePack (schemas/msgpack.py) ---

_TENANT: tuple[tuple[str, ColumnType], ...] = (
    ("organisation_id", "str"),
    ("project_id", "str"),
    ("environment", "str"),
)

BUILD = RecordKind(
    "build",
    topics.TYPED_BUILDS,
    "builds",
    (("build_id", "uuid"),)
    + _TENANT
    + (("version", "str"), ("platform", "str"), ("git_commit", "str"), ("channel", "str"), ("seen_at", "millis")),
)
SESSION = RecordKind(
    "session",
    topics.TYPED_SESSIONS,
    "sessions",
    (("session_id", "uuid"), ("build_id", "uuid"))
    + _TENANT
    + (
        ("version", "str"),
        ("platform", "str"),
        ("channel", "str"),
        ("player_external_id", "str"),
        ("device_id", "str"),
        ("metadata", "str"),
        ("started_at", "millis"),
    ),
)
GAME_EVENT = RecordKind(
    "game_event",
    topics.TYPED_GAME_EVENTS,
    "game_events",
    (("event_id", "uuid"), ("session_id", "uuid"))
    + _TENANT
    + (
        ("type", "str"),
        ("severity", "str"),
        ("properties", "str"),
        ("occurred_at", "millis"),
        ("received_at", "millis"),
    ),
)
REPORT = RecordKind(
    "report",
    topics.TYPED_REPORTS,
    "reports",
    (("report_id", "uuid"), ("session_id", "uuid"))
    + _TENANT
    + (
        ("client_request_id", "str"),
        ("title", "str"),
        ("description", "str"),
        ("severity", "str"),
        ("reporter_type", "str"),
        ("event_ids", "str_array"),
        ("upload_ids", "str_array"),
        ("export_providers", "str_array"),
        ("metadata", "str"),
        ("received_at", "millis"),
    ),
)
UPLOAD = RecordKind(
    "upload",
    topics.TYPED_UPLOADS,
    "uploads",
    (("upload_id", "uuid"),)
    + _TENANT
    + (
        ("session_id", "str"),
        ("attachment_type", "str"),
        ("filename", "str"),
        ("content_type", "str"),
        ("size_bytes", "uint64"),
        ("sha256", "str"),
        ("storage_key", "str"),
        ("completed_at", "millis"),
    ),
)

_APP: tuple[tuple[str, ColumnType], ...] = (
    ("event_id", "uuid"),
    ("organisation_id", "str"),
    ("project_id", "str"),
    ("environment", "str"),
    ("app_id", "str"),
    ("build_id", "str"),
    ("player_id", "str"),
)

PLAYER = RecordKind(
    "player",
    topics.TYPED_PLAYERS,
    "players",
    _APP
    + (
        ("event_name", "str"),
        ("region", "str"),
        ("hardware", "str"),
        ("occurred_at", "millis"),
        ("received_at", "millis"),
    ),
)
FUNNEL_STEP = RecordKind(
    "funnel_step",
    topics.TYPED_FUNNEL_STEPS,
    "funnel_steps",
    _APP
    + (
        ("session_id", "str"),
        ("step_name", "str"),
        ("level_id", "str"),
        ("occurred_at", "millis"),
        ("received_at", "millis"),
    ),
)
GAMEPLAY_EVENT = RecordKind(
    "gameplay_event",
    topics.TYPED_GAMEPLAY_EVENTS,
    "gameplay_events",
    _APP
    + (
        ("session_id", "str"),
        ("event_name", "str"),
        ("level_id", "str"),
        ("position_x", "nullable_float"),
        ("position_y", "nullable_float"),
        ("position_z", "nullable_float"),
        ("input_method", "str"),
        ("custom_data", "str"),
        ("occurred_at", "millis"),
        ("received_at", "millis"),
    ),
)
TRAJECTORY = RecordKind(
    "trajectory",
    topics.TYPED_TRAJECTORIES,
    "trajectories",
    _APP
    + (
        ("session_id", "str"),
        ("level_id", "str"),
        ("status", "str"),
        ("input_method", "str"),
        ("fps_mean", "nullable_float"),
        ("fps_low_5", "nullable_float"),
        ("fps_low_1", "nullable_float"),
        ("xs", "float_array"),
        ("ys", "float_array"),
        ("zs", "float_array"),
        ("point_count", "uint32"),
        ("started_at", "millis"),
        ("ended_at", "millis"),
        ("received_at", "millis"),
    ),
)
LEVEL_MODEL = RecordKind(
    "level_model",
    topics.TYPED_LEVEL_MODELS,
    "level_models",
    (("model_id", "uuid"),)
    + _TENANT
    + (
        ("app_id", "str"),
        ("app_name", "str"),
        ("level_name", "str"),
        ("filename", "str"),
        ("content_type", "str"),
        ("size_bytes", "uint64"),
        ("sha256", "str"),
        ("storage_key", "str"),
        ("uploaded_at", "millis"),
    ),
)

for _kind in (
    BUILD,
    SESSION,
    GAME_EVENT,
    REPORT,
    UPLOAD,
    PLAYER,
    FUNNEL_STEP,
    GAMEPLAY_EVENT,
    TRAJECTORY,
    LEVEL_MODEL,
):
    KINDS[_kind.name] = _kind
    KINDS_BY_TOPIC[_kind.topic] = _kind
