"""Typed records: what the normalizer writes to the typed topics and the writer inserts.

A typed record is one row of its table as a ``JSONEachRow`` line: a JSON object whose keys
are exactly the table's columns, in column order, each value as the column holds it
(timestamps as decimal epoch seconds, ``context`` as a JSON string). It is encoded in one
place, ``forgeline.schemas.typed`` (which also reads the older format, timestamps as epoch
milliseconds). Each kind names its topic and table here, so a reader can follow
``kind → topic → table`` in one place.

Every table the code writes is declared here as a ``TableSpec`` (its columns with their
``ColumnType``, its time column and its key): the typed kinds' tables (``RecordKind.spec``) and
the stateful processors' tables (``PROCESSOR_TABLES``). ``forgeline.schemas.cells`` converts a
cell of each ColumnType to its line value, to the warehouse and back; a test holds every
declaration equal to the table ClickHouse creates from ``forgeline/warehouse/tables``.
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
    "int64",  # the processors' tables: bus offsets (-1 before the first)
    "uint8",  # the processors' tables: flags
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
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
}
MILLIS_TYPES: frozenset[ColumnType] = frozenset({"millis", "nullable_millis"})  # DateTime64(3, 'UTC')


def datetime64_ms(value: Any) -> int:
    """``value`` as epoch milliseconds a DateTime64(3) column holds; ValueError outside its range."""
    millis = int(value)
    if not DATETIME64_MIN_MS <= millis <= DATETIME64_MAX_MS:
        raise ValueError(f"timestamp {millis} ms is outside DateTime64's range")
    return millis


Columns = tuple[tuple[str, ColumnType], ...]


def _check_declaration(table: str, columns: Columns, time_column: str, *keys: tuple[str, ...]) -> None:
    types = dict(columns)
    if types.get(time_column) != "millis":
        raise ValueError(f"{table}: time column {time_column!r} is not a millis column")
    for key in keys:
        if not key or not set(key) <= set(types):
            raise ValueError(f"{table}: key {key!r} names no column or one the table lacks")


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A warehouse table as the code writes and reads it.

    ``columns``: every column the code writes, in table order (DEFAULT columns such as
    ``expires_at`` are left to the table). ``time_column``: when the row's thing happened (or
    arrived); ``key``: the table's sorting key, one current row per key (ReplacingMergeTree).
    """

    table: str
    columns: Columns
    time_column: str
    key: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_declaration(self.table, self.columns, self.time_column, self.key)

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]


@dataclass(frozen=True, slots=True)
class RecordKind:
    """A typed record kind: its topic and the table its rows go to.

    ``time_column`` decides a row's hour in exported files and what ``forgeline export``
    filters on; ``key`` is its table's sorting key; ``partition_key`` the columns whose values,
    joined by ``/``, are the record's bus key (``partition_key_of``; the normalizer chooses it,
    so the next stage sees one trace, monitor or session in one partition).
    """

    name: str
    topic: str
    table: str
    columns: Columns
    time_column: str
    key: tuple[str, ...]
    partition_key: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_declaration(self.table, self.columns, self.time_column, self.key, self.partition_key)

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def spec(self) -> TableSpec:
        return TableSpec(self.table, self.columns, self.time_column, self.key)


def partition_key_of(kind: RecordKind, row: dict[str, Any]) -> bytes:
    """The bus key of a row of ``kind``: its partition key columns joined by ``/``.

    Errors are the exception: their fingerprint is the grouping fingerprint
    (``forgeline.grouping.group_key``), which the normalizer computes first.
    """
    return "/".join(str(row[name]) for name in kind.partition_key).encode()


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
    time_column="occurred_at",
    key=("project_id", "environment", "occurred_at", "event_id"),
    partition_key=("project_id", "fingerprint"),
)
LOG = RecordKind(
    "log",
    topics.TYPED_LOGS,
    "logs",
    _IDENTITY + (("level", "str"), ("message", "str"), ("fingerprint", "str")) + _CORRELATION,
    time_column="occurred_at",
    key=("project_id", "environment", "occurred_at", "event_id"),
    partition_key=("event_id",),
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
    time_column="occurred_at",
    key=("project_id", "environment", "name", "occurred_at", "event_id"),
    partition_key=("project_id", "name"),
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
    time_column="occurred_at",
    key=("project_id", "environment", "transaction_name", "occurred_at", "event_id"),
    partition_key=("project_id", "transaction_name"),
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
    time_column="occurred_at",
    key=("project_id", "trace_id", "started_at", "event_id"),
    partition_key=("project_id", "trace_id"),
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
    time_column="occurred_at",
    key=("project_id", "environment", "slug", "occurred_at", "event_id"),
    partition_key=("project_id", "environment", "slug"),
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
    time_column="deployed_at",
    key=("project_id", "environment", "release", "deployment_id"),
    partition_key=("project_id", "release"),
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
    time_column="seen_at",
    key=("project_id", "build_id"),
    partition_key=("build_id",),
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
    time_column="started_at",
    key=("project_id", "environment", "session_id"),
    partition_key=("session_id",),
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
    time_column="occurred_at",
    key=("project_id", "environment", "session_id", "occurred_at", "event_id"),
    partition_key=("session_id",),
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
    time_column="received_at",
    key=("project_id", "environment", "report_id"),
    partition_key=("report_id",),
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
    time_column="completed_at",
    key=("project_id", "environment", "upload_id"),
    partition_key=("upload_id",),
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
    time_column="occurred_at",
    key=("app_id", "player_id", "event_id"),
    partition_key=("app_id", "player_id"),
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
    time_column="occurred_at",
    key=("app_id", "step_name", "occurred_at", "event_id"),
    partition_key=("app_id", "session_id"),
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
    time_column="occurred_at",
    key=("app_id", "level_id", "event_name", "occurred_at", "event_id"),
    partition_key=("app_id", "session_id"),
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
    time_column="started_at",
    key=("app_id", "level_id", "session_id", "started_at", "event_id"),
    partition_key=("app_id", "session_id"),
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
    time_column="uploaded_at",
    key=("app_id", "level_name", "model_id"),
    partition_key=("model_id",),
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

# --- The stateful processors' tables (services/errors, services/monitors, services/spans) ---

ERROR_GROUPS = TableSpec(
    "error_groups",
    (
        ("project_id", "str"),
        ("group_id", "str"),
        ("fingerprint", "str"),
        ("organisation_id", "str"),
        ("title", "str"),
        ("exception_class", "str"),
        ("first_seen", "millis"),
        ("last_seen", "millis"),
        ("event_count", "uint64"),
        ("last_level", "str"),
        ("releases", "str_array"),
        ("environments", "str_array"),
        ("status", "str"),
        ("regressed", "uint8"),
        ("status_changed_at", "millis"),
        ("recent_event_ids", "str_array"),
        ("applied_event_offset", "int64"),
        ("applied_control_offset", "int64"),
        ("version", "uint64"),
    ),
    time_column="last_seen",
    key=("project_id", "group_id"),
)
ERROR_GROUP_EVENTS = TableSpec(
    "error_group_events",
    (
        ("project_id", "str"),
        ("group_id", "str"),
        ("event_id", "str"),
        ("occurred_at", "millis"),
        ("environment", "str"),
        ("release", "str"),
        ("level", "str"),
    ),
    time_column="occurred_at",
    key=("project_id", "group_id", "event_id"),
)
MONITOR_STATES = TableSpec(
    "monitor_states",
    (
        ("project_id", "str"),
        ("environment", "str"),
        ("slug", "str"),
        ("organisation_id", "str"),
        ("state", "str"),
        ("interval_seconds", "uint32"),
        ("margin_seconds", "uint32"),
        ("last_check_in_at", "millis"),
        ("last_status", "str"),
        ("deadline_at", "millis"),
        ("state_changed_at", "millis"),
        ("applied_offset", "int64"),
        ("version", "uint64"),
    ),
    time_column="last_check_in_at",
    key=("project_id", "environment", "slug"),
)
MONITOR_STATE_CHANGES = TableSpec(
    "monitor_state_changes",
    (
        ("change_id", "uuid"),
        ("project_id", "str"),
        ("environment", "str"),
        ("slug", "str"),
        ("previous_state", "str"),
        ("state", "str"),
        ("changed_at", "millis"),
        ("stream_clock_at", "millis"),
        ("reason", "str"),
        ("event_id", "str"),
    ),
    time_column="changed_at",
    key=("project_id", "environment", "slug", "changed_at", "change_id"),
)
STREAM_CLOCKS = TableSpec(
    "stream_clocks",
    (("name", "str"), ("clock_at", "millis")),
    time_column="clock_at",
    key=("name",),
)
TRACE_SUMMARIES = TableSpec(
    "trace_summaries",
    (
        ("project_id", "str"),
        ("environment", "str"),
        ("trace_id", "str"),
        ("root_span_id", "str"),
        ("root_name", "str"),
        ("started_at", "millis"),
        ("ended_at", "millis"),
        ("duration_ms", "float"),
        ("span_count", "uint32"),
        ("max_depth", "uint32"),
        ("error_count", "uint32"),
        ("orphan_count", "uint32"),
        ("services", "str_array"),
        ("version", "uint64"),
        ("summarized_at", "millis"),
    ),
    time_column="started_at",
    key=("project_id", "trace_id"),
)
SPAN_TREE = TableSpec(
    "span_tree",
    (
        ("project_id", "str"),
        ("environment", "str"),
        ("trace_id", "str"),
        ("span_id", "str"),
        ("parent_span_id", "str"),
        ("event_id", "str"),
        ("name", "str"),
        ("kind", "str"),
        ("status", "str"),
        ("level", "str"),
        ("service", "str"),
        ("started_at", "millis"),
        ("ended_at", "millis"),
        ("received_at", "millis"),
        ("duration_ms", "float"),
        ("depth", "uint32"),
        ("is_orphan", "uint8"),
        ("child_count", "uint32"),
        ("self_time_ms", "float"),
        ("version", "uint64"),
    ),
    time_column="started_at",
    key=("project_id", "trace_id", "span_id"),
)
# Written by the writer from the dlq.* topics (services/writer/steps.py).
DEAD_LETTERS = TableSpec(
    "dead_letters",
    (
        ("dead_letter_id", "uuid"),
        ("consumer_group", "str"),
        ("source_topic", "str"),
        ("source_partition", "uint32"),
        ("source_offset", "uint64"),
        ("reason", "str"),
        ("failed_at", "millis"),
        ("payload", "str"),
    ),
    time_column="failed_at",
    key=("consumer_group", "source_topic", "source_partition", "source_offset", "dead_letter_id"),
)
PROCESSOR_TABLES: dict[str, TableSpec] = {
    spec.table: spec
    for spec in (
        ERROR_GROUPS,
        ERROR_GROUP_EVENTS,
        MONITOR_STATES,
        MONITOR_STATE_CHANGES,
        STREAM_CLOCKS,
        TRACE_SUMMARIES,
        SPAN_TREE,
    )
}
# Every table the code writes rows to, by name.
TABLES: dict[str, TableSpec] = {
    **{kind.table: kind.spec for kind in KINDS.values()},
    **PROCESSOR_TABLES,
    DEAD_LETTERS.table: DEAD_LETTERS,
}
