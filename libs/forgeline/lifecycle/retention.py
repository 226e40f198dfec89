"""Retention kinds, per-project policies, and the TTL every warehouse table carries.

Every table has an ``expires_at`` column whose DEFAULT is computed when a row is written:
its retention clock (``received_at`` where the table has one) plus the days of its
project's policy for the table's kind, looked up with ``joinGet`` in ``retention_days``
(a Join table: project, kind → days; the project ``*`` holds the defaults from the
settings). ``TTL expires_at DELETE`` then drops expired rows when parts merge, and whole
parts once every row in them expired. A TTL expression cannot look a value up itself
(it is evaluated when parts merge, long after the policy may have changed), so the
lookup happens at write time; when a policy changes, ``apply_policy`` rewrites
``expires_at`` of that project's rows (a mutation, waited for), which re-evaluates the
TTL of the rewritten parts at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from forgeline.warehouse.port import Warehouse

DEFAULT_DAYS = 90
MAX_DAYS = 3650
DEFAULTS_PROJECT = "*"


@dataclass(frozen=True, slots=True)
class RetainedTable:
    table: str
    kind: str
    # The retention clock: when the row reached us (received_at) where the table has it, so
    # a client's wrong clock cannot make its rows expire at once or never.
    clock: str
    has_project: bool = True
    # The clock of migration 30, where it was an event's own time (a client's clock, which can
    # be anything); migration 32 moved those tables to ``written_at``, the row's insert time.
    clock_030: str = ""

    @property
    def first_clock(self) -> str:
        return self.clock_030 or self.clock


# Kinds are the table families; a kind's days apply to all its tables, its exports and blobs.
RETAINED_TABLES: tuple[RetainedTable, ...] = (
    RetainedTable("errors", "errors", "received_at"),
    RetainedTable("error_groups", "errors", "written_at", clock_030="last_seen"),
    RetainedTable("error_group_events", "errors", "written_at", clock_030="occurred_at"),
    RetainedTable("logs", "logs", "received_at"),
    RetainedTable("metrics", "metrics", "received_at"),
    RetainedTable("transactions", "transactions", "received_at"),
    RetainedTable("spans", "spans", "received_at"),
    RetainedTable("trace_summaries", "spans", "summarized_at"),
    RetainedTable("span_tree", "spans", "received_at"),
    RetainedTable("check_ins", "check_ins", "received_at"),
    RetainedTable("monitor_states", "check_ins", "written_at", clock_030="last_check_in_at"),
    RetainedTable("monitor_state_changes", "check_ins", "written_at", clock_030="changed_at"),
    RetainedTable("deployments", "deployments", "received_at"),
    RetainedTable("builds", "game", "seen_at"),
    RetainedTable("sessions", "game", "started_at"),
    RetainedTable("game_events", "game", "received_at"),
    RetainedTable("reports", "game", "received_at"),
    RetainedTable("uploads", "uploads", "completed_at"),
    RetainedTable("players", "analytics", "received_at"),
    RetainedTable("funnel_steps", "analytics", "received_at"),
    RetainedTable("gameplay_events", "analytics", "received_at"),
    RetainedTable("trajectories", "analytics", "received_at"),
    RetainedTable("level_models", "models", "uploaded_at"),
    RetainedTable("dead_letters", "dead_letters", "failed_at", has_project=False),
)
# Not retained: they hold no events (a clock per processor, applied migrations, the erasure audit).
UNRETAINED_TABLES = ("stream_clocks", "schema_migrations", "erasure_audit", "retention_policies")
KINDS: tuple[str, ...] = tuple(dict.fromkeys(t.kind for t in RETAINED_TABLES))
TABLES_BY_NAME = {t.table: t for t in RETAINED_TABLES}
_DURATION = re.compile(r"^\s*(\d+)\s*([dwy]?)\s*$")


def parse_days(text: str) -> int:
    """``30d``, ``2w``, ``1y`` or a bare number of days → days (1 … 3650); ValueError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"bad retention {text!r}: write days like 30d (or 2w, 1y)")
    days = int(match.group(1)) * {"": 1, "d": 1, "w": 7, "y": 365}[match.group(2)]
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"bad retention {text!r}: between 1 day and {MAX_DAYS} days")
    return days


def check_kinds(days: Mapping[str, int]) -> dict[str, int]:
    unknown = sorted(set(days) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown retention kind(s) {', '.join(unknown)}; kinds: {', '.join(KINDS)}")
    for kind, value in days.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_DAYS:
            raise ValueError(f"retention of {kind} must be 1 … {MAX_DAYS} days, not {value!r}")
    return dict(days)


def expires_expression(db: str, table: RetainedTable, clock: str = "") -> str:
    """The DEFAULT of ``expires_at``: the row's clock plus its project's days for its kind."""
    project = "toString(project_id)" if table.has_project else f"'{DEFAULTS_PROJECT}'"

    def lookup(who: str) -> str:
        return f"joinGetOrNull('{db}.retention_days', 'days', {who}, '{table.kind}')"

    days = f"ifNull({lookup(project)}, ifNull({lookup(repr(DEFAULTS_PROJECT))}, {DEFAULT_DAYS}))"
    return f"{clock_expression(table, clock)} + toIntervalDay({days})"


def clock_expression(table: RetainedTable, clock: str = "") -> str:
    # Clamped: toDateTime wraps outside 1970…2106, and a client's clock may say anything.
    low, high = "toDateTime64('1970-01-02 00:00:00', 3, 'UTC')", "toDateTime64('2095-01-01 00:00:00', 3, 'UTC')"
    return f"toDateTime(least(greatest({clock or table.clock}, {low}), {high}), 'UTC')"


def migration_sql(db: str = "{db}") -> str:
    """The text of the retention migration (kept in tables/030_retention.sql; a test compares)."""
    out = [
        "-- Retention per project and kind (forgeline.lifecycle.retention): generated by",
        "-- forgeline.lifecycle.retention.migration_sql; a test checks the two agree.",
        "",
        f"CREATE TABLE IF NOT EXISTS {db}.retention_days (project_id String, kind String, days UInt32) "
        "ENGINE = Join(ANY, LEFT, project_id, kind) SETTINGS join_any_take_last_row = 1;",
        "",
        "-- The same policies, listable (a Join table cannot be read back); the lookup is rebuilt from it.",
        f"CREATE TABLE IF NOT EXISTS {db}.retention_policies (project_id String, kind String, days UInt32, "
        "updated_at DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree(updated_at) ORDER BY (project_id, kind);",
        "",
    ]
    for table in RETAINED_TABLES:
        out.append(
            f"ALTER TABLE {db}.{table.table} ADD COLUMN IF NOT EXISTS expires_at DateTime('UTC') "
            f"DEFAULT {expires_expression(db, table, table.first_clock)};"
        )
        out.append(f"ALTER TABLE {db}.{table.table} MODIFY TTL expires_at DELETE;")
    return "\n".join(out) + "\n"


def written_at_migration_sql(db: str = "{db}") -> str:
    """Migration 32: tables whose clock was an event's own time count from when the row was
    written instead (kept in tables/032_retention_written_at.sql; a test compares)."""
    out = [
        "-- Retention counts from when a row was written for tables without a received_at (their",
        "-- event times are clients' clocks). Generated by forgeline.lifecycle.retention.",
        "",
    ]
    for table in RETAINED_TABLES:
        if not table.clock_030:
            continue
        out.append(f"ALTER TABLE {db}.{table.table} ADD COLUMN IF NOT EXISTS written_at DateTime('UTC') DEFAULT now();")
        expires = expires_expression(db, table)
        out.append(f"ALTER TABLE {db}.{table.table} MODIFY COLUMN expires_at DateTime('UTC') DEFAULT {expires};")
    return "\n".join(out) + "\n"


def policies(warehouse: Warehouse) -> dict[str, dict[str, int]]:
    """project → kind → days, as stored (the project ``*`` holds the defaults)."""
    rows = warehouse.query_rows(f"SELECT project_id, kind, days FROM {warehouse.database}.retention_policies FINAL")
    out: dict[str, dict[str, int]] = {}
    for project, kind, days in rows:
        out.setdefault(str(project), {})[str(kind)] = int(days)
    return out


def sync_lookup(warehouse: Warehouse) -> None:
    """Write every stored policy into the lookup table again (idempotent: the last value wins)."""
    rows = [(p, k, d) for p, kinds in policies(warehouse).items() for k, d in kinds.items()]
    warehouse.insert("retention_days", rows, ["project_id", "kind", "days"])


def effective_days(stored: Mapping[str, Mapping[str, int]], project: str, kind: str) -> int:
    own = stored.get(project, {})
    return own.get(kind) or stored.get(DEFAULTS_PROJECT, {}).get(kind) or DEFAULT_DAYS


def apply_policy(warehouse: Warehouse, project: str, days: Mapping[str, int]) -> list[str]:
    """Store ``project``'s days per kind (``*``: the defaults) and re-date its existing rows.

    Returns the tables rewritten. Rows newly past their date are deleted by the rewrite
    itself (the mutation evaluates the TTL of the parts it writes); the call waits for it.
    """
    check_kinds(days)
    if project != DEFAULTS_PROJECT and any(not TABLES_BY_NAME[t].has_project for t in _tables_of(days)):
        raise ValueError("dead letters belong to no project: set their days with FORGELINE_RETENTION")
    db = warehouse.database
    if not days:
        return []
    _store(warehouse, project, days)
    stored = policies(warehouse)
    touched = []
    for table in RETAINED_TABLES:
        if table.kind not in days:
            continue
        where = _rows_governed_by(stored, project, table)
        if where is None:
            continue
        expression = f"{clock_expression(table)} + toIntervalDay({int(days[table.kind])})"
        warehouse.command(
            f"ALTER TABLE {db}.{table.table} UPDATE expires_at = {expression} WHERE {where} SETTINGS mutations_sync = 2"
        )
        touched.append(table.table)
    return touched


def _store(warehouse: Warehouse, project: str, days: Mapping[str, int]) -> None:
    now = datetime.now(UTC)
    rows = [(project, kind, value) for kind, value in sorted(days.items())]
    # The record first: a crash before the lookup is written is repaired by sync_lookup at start.
    warehouse.insert("retention_policies", [(*row, now) for row in rows], ["project_id", "kind", "days", "updated_at"])
    warehouse.insert("retention_days", rows, ["project_id", "kind", "days"])


def _tables_of(days: Mapping[str, int]) -> list[str]:
    return [t.table for t in RETAINED_TABLES if t.kind in days]


def _rows_governed_by(stored: Mapping[str, Mapping[str, int]], project: str, table: RetainedTable) -> str | None:
    """The WHERE clause of the rows whose days come from ``project``'s entry (None: no rows)."""
    if project != DEFAULTS_PROJECT:
        return f"project_id = {_quote(project)}" if table.has_project else None
    if not table.has_project:
        return "1"
    own = sorted(p for p, kinds in stored.items() if p != DEFAULTS_PROJECT and table.kind in kinds)
    return f"project_id NOT IN ({', '.join(map(_quote, own))})" if own else "1"


def apply_defaults(warehouse: Warehouse, defaults: Mapping[str, int]) -> list[str]:
    """Make the stored defaults those of the settings; rewrites only kinds whose days changed."""
    current = policies(warehouse).get(DEFAULTS_PROJECT, {})
    # Rows were dated with the built-in DEFAULT_DAYS while no default was stored.
    changed = {kind: days for kind, days in defaults.items() if current.get(kind, DEFAULT_DAYS) != days}
    missing = {kind: days for kind, days in defaults.items() if kind not in current and kind not in changed}
    if missing:
        _store(warehouse, DEFAULTS_PROJECT, missing)
    return apply_policy(warehouse, DEFAULTS_PROJECT, changed)


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote(text: str) -> str:
    """A ClickHouse string literal."""
    return _quote(text)


def quote_all(texts: Iterable[str]) -> str:
    return ", ".join(map(_quote, texts))
