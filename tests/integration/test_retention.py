"""Warehouse retention against real chDB: per-project, per-kind days through the TTL every
table carries; expired rows and parts leave the disk; an existing warehouse upgrades in place."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from forgeline.lifecycle import retention
from forgeline.warehouse import migrations
from forgeline.warehouse.client import ClickHouseWarehouse

# One chDB engine per process: these tests share it and run on one worker.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("chdb-lifecycle")]

ERROR_COLUMNS = ["event_id", "project_id", "environment", "occurred_at", "received_at", "message", "context"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lifecycle")


@pytest.fixture(scope="module")
def warehouse(root: Path) -> Iterator[ClickHouseWarehouse]:
    wh = ClickHouseWarehouse(f"chdb://{root / 'warehouse'}", database="retention")
    migrations.migrate(wh)
    try:
        yield wh
    finally:
        wh.close()


def _errors(project: str, count: int, age: timedelta, payload: int = 2000) -> list[tuple[object, ...]]:
    at = datetime.now(UTC) - age
    # Incompressible text, so that bytes on disk follow the rows.
    return [
        (uuid.uuid4(), project, "production", at, at, f"boom {i}", secrets.token_hex(payload // 2))
        for i in range(count)
    ]


def _count(wh: ClickHouseWarehouse, table: str, project: str) -> int:
    return int(
        wh.query_rows(f"SELECT count() FROM {wh.database}.{table} WHERE project_id = %(p)s", {"p": project})[0][0]
    )


def _parts(wh: ClickHouseWarehouse, table: str) -> tuple[int, int]:
    rows = wh.query_rows(
        "SELECT count(), sum(bytes_on_disk) FROM system.parts WHERE database = %(d)s AND table = %(t)s AND active",
        {"d": wh.database, "t": table},
    )
    return int(rows[0][0]), int(rows[0][1])


def test_the_migration_files_are_what_the_code_generates() -> None:
    found = {m.name: m.sql for m in migrations.available_migrations()}
    assert found["retention"] == retention.migration_sql()
    assert found["retention_written_at"] == retention.written_at_migration_sql()


def test_tables_without_received_at_count_from_when_a_row_was_written(warehouse: ClickHouseWarehouse) -> None:
    """An event time from 2020 (a client's clock) must not make its group membership expire at once."""
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    warehouse.insert(
        "error_group_events", [("clocks", "g", "e-1", long_ago)], ["project_id", "group_id", "event_id", "occurred_at"]
    )
    warehouse.command(f"OPTIMIZE TABLE {warehouse.database}.error_group_events FINAL")
    assert _count(warehouse, "error_group_events", "clocks") == 1
    days = warehouse.query_rows(
        f"SELECT dateDiff('day', now(), expires_at) FROM {warehouse.database}.error_group_events "
        "WHERE project_id = 'clocks'"
    )[0][0]
    assert days in (retention.DEFAULT_DAYS - 1, retention.DEFAULT_DAYS)


def test_every_event_table_has_the_ttl(warehouse: ClickHouseWarehouse) -> None:
    rows = warehouse.query_rows(
        "SELECT name, create_table_query FROM system.tables WHERE database = %(d)s AND engine LIKE '%%MergeTree'",
        {"d": warehouse.database},
    )
    missing = [name for name, ddl in rows if "TTL expires_at" not in ddl and name not in retention.UNRETAINED_TABLES]
    assert missing == []
    assert {name for name, _ in rows} - set(retention.UNRETAINED_TABLES) == set(retention.TABLES_BY_NAME)


def test_a_shorter_policy_drops_one_projects_rows_and_their_bytes(warehouse: ClickHouseWarehouse) -> None:
    warehouse.insert("errors", _errors("shortlived", 400, timedelta(days=3)), ERROR_COLUMNS)
    warehouse.insert("errors", _errors("kept", 20, timedelta(days=3)), ERROR_COLUMNS)
    warehouse.insert("logs", [(uuid.uuid4(), "shortlived", "production", datetime.now(UTC) - timedelta(days=3))],
                     ["event_id", "project_id", "environment", "received_at"])  # fmt: skip
    warehouse.command(f"OPTIMIZE TABLE {warehouse.database}.errors FINAL")
    parts_before, bytes_before = _parts(warehouse, "errors")
    assert _count(warehouse, "errors", "shortlived") == 400

    touched = retention.apply_policy(warehouse, "shortlived", {"errors": 2})

    assert "errors" in touched and "logs" not in touched
    assert _count(warehouse, "errors", "shortlived") == 0
    assert _count(warehouse, "errors", "kept") == 20  # another project: the default 90 days
    assert _count(warehouse, "logs", "shortlived") == 1  # another kind of the same project
    warehouse.command(f"OPTIMIZE TABLE {warehouse.database}.errors FINAL")
    parts_after, bytes_after = _parts(warehouse, "errors")
    assert parts_after <= parts_before
    assert bytes_after < bytes_before / 5, (bytes_before, bytes_after)
    assert retention.policies(warehouse)["shortlived"] == {"errors": 2}


def test_rows_written_under_a_policy_expire_by_it(warehouse: ClickHouseWarehouse) -> None:
    retention.apply_policy(warehouse, "brief", {"errors": 1})
    warehouse.insert("errors", _errors("brief", 30, timedelta(days=2), payload=64), ERROR_COLUMNS)
    warehouse.insert("errors", _errors("brief", 5, timedelta(hours=1), payload=64), ERROR_COLUMNS)
    expires = warehouse.query_rows(
        f"SELECT min(expires_at - toDateTime(received_at)) FROM {warehouse.database}.errors WHERE project_id = 'brief'"
    )[0][0]
    assert expires == 86400
    warehouse.command(f"OPTIMIZE TABLE {warehouse.database}.errors FINAL")  # a merge applies the TTL
    assert _count(warehouse, "errors", "brief") == 5


def test_defaults_apply_to_projects_without_their_own_days(warehouse: ClickHouseWarehouse) -> None:
    at = datetime.now(UTC) - timedelta(days=10)
    cols = ["event_id", "project_id", "environment", "received_at"]
    warehouse.insert("metrics", [(uuid.uuid4(), "plain", "production", at)], cols)
    warehouse.insert("metrics", [(uuid.uuid4(), "custom", "production", at)], cols)
    retention.apply_policy(warehouse, "custom", {"metrics": 30})
    assert retention.apply_defaults(warehouse, {"metrics": 7}) == ["metrics"]
    assert retention.apply_defaults(warehouse, {"metrics": 7}) == []  # unchanged: nothing rewritten
    assert _count(warehouse, "metrics", "plain") == 0
    assert _count(warehouse, "metrics", "custom") == 1
    stored = retention.policies(warehouse)
    assert retention.effective_days(stored, "plain", "metrics") == 7
    assert retention.effective_days(stored, "custom", "metrics") == 30
    assert retention.effective_days(stored, "plain", "logs") == retention.DEFAULT_DAYS


def test_an_existing_warehouse_upgrades_in_place(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wh = ClickHouseWarehouse(f"chdb://{root / 'warehouse'}", database="upgraded")
    try:
        old = [m for m in migrations.available_migrations() if m.version < 30]
        with monkeypatch.context() as patch:
            patch.setattr(migrations, "available_migrations", lambda: old)
            migrations.migrate(wh)
        wh.insert("errors", _errors("legacy", 3, timedelta(days=1), payload=64), ERROR_COLUMNS)
        assert 30 in migrations.migrate(wh)
        days = wh.query_rows(f"SELECT min(dateDiff('day', received_at, expires_at)) FROM {wh.database}.errors")[0][0]
        assert days == retention.DEFAULT_DAYS
        retention.apply_policy(wh, "legacy", {"errors": 1})
        assert _count(wh, "errors", "legacy") == 0
    finally:
        wh.command("DROP DATABASE IF EXISTS upgraded")
        wh.close()


@pytest.mark.slow
def test_expired_parts_leave_the_disk(warehouse: ClickHouseWarehouse, root: Path) -> None:
    db = warehouse.database
    warehouse.insert("spans", [(uuid.uuid4(), "disk", datetime.now(UTC) - timedelta(days=5), secrets.token_hex(6000))
                               for _ in range(300)], ["event_id", "project_id", "received_at", "context"])  # fmt: skip
    path = warehouse.query_rows("SELECT data_paths[1] FROM system.tables WHERE database = %(d)s AND name = 'spans'",
                                {"d": db})[0][0]  # fmt: skip
    # Parts replaced by a merge stay for old_parts_lifetime (crash safety): shorten it here.
    warehouse.command(
        f"ALTER TABLE {db}.spans MODIFY SETTING old_parts_lifetime = 1, cleanup_delay_period = 1, "
        "cleanup_delay_period_random_add = 0"
    )
    before = _disk_bytes(Path(path))
    retention.apply_policy(warehouse, "disk", {"spans": 2})
    warehouse.command(f"OPTIMIZE TABLE {db}.spans FINAL")
    deadline = time.monotonic() + 90  # chDB's cleanup runs about every 30 s
    while _disk_bytes(Path(path)) > before / 4 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _disk_bytes(Path(path)) < before / 4, (before, _disk_bytes(Path(path)))


def _disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.mark.parametrize(("text", "days"), [("30d", 30), ("30", 30), ("2w", 14), ("1y", 365), (" 7d ", 7)])
def test_durations(text: str, days: int) -> None:
    assert retention.parse_days(text) == days


@pytest.mark.parametrize("text", ["0d", "-1d", "3h", "", "d", "99999d", "1.5d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="bad retention"):
        retention.parse_days(text)


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown retention kind"):
        retention.check_kinds({"error": 3})
    with pytest.raises(ValueError, match="1 … 3650"):
        retention.check_kinds({"errors": 0})


def test_erasure_of_a_person_with_thousands_of_events(warehouse: ClickHouseWarehouse, root: Path) -> None:
    """Their events are named by subqueries: thousands of ids never become one huge SQL text
    (ClickHouse refuses a query over max_query_size, 256 KiB)."""
    from forgeline.lifecycle.erasure import Eraser, Subject

    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in range(8000)]
    warehouse.insert_columns(
        "errors",
        [ids, ["heavy"] * len(ids), ["heavy-user"] * len(ids), [now] * len(ids)],
        ["event_id", "project_id", "user_id", "received_at"],
    )
    warehouse.insert_columns(
        "error_group_events",
        [["heavy"] * len(ids), ["g-heavy"] * len(ids), [str(i) for i in ids], [now] * len(ids)],
        ["project_id", "group_id", "event_id", "occurred_at"],
    )
    warehouse.insert("error_groups", [("heavy", "g-heavy", 1, now)], ["project_id", "group_id", "version", "last_seen"])
    warehouse.insert("errors", _errors("heavy", 3, timedelta(0), payload=64), ERROR_COLUMNS)  # someone else

    outcome = Eraser(warehouse, None, None, b"salt").erase(Subject("heavy", {"user_id": ("heavy-user",)}))

    assert outcome.rows_deleted["errors"] == 8000 and outcome.rows_deleted["error_group_events"] == 8000
    assert outcome.rows_deleted["error_groups"] == 1  # every event of the group was theirs
    assert _count(warehouse, "errors", "heavy") == 3
    assert _count(warehouse, "error_group_events", "heavy") == 0
    audit = warehouse.query_rows(
        f"SELECT state, rows_deleted FROM {warehouse.database}.erasure_audit FINAL WHERE project_id = 'heavy'"
    )
    assert audit == [("completed", 16001)]


def test_erasure_refuses_when_the_uploads_store_is_not_reachable(warehouse: ClickHouseWarehouse) -> None:
    """A distributed processor without FORGELINE_BLOB_STORE_URL must not erase rows and leave files."""
    from forgeline.lifecycle.erasure import Eraser, StoreUnreachable, Subject

    session, now = uuid.uuid4(), datetime.now(UTC)
    warehouse.insert("sessions", [(session, "blobby", "pl-1", now)],
                     ["session_id", "project_id", "player_external_id", "started_at"])  # fmt: skip
    warehouse.insert("uploads", [(uuid.uuid4(), "blobby", str(session), "blobby/u/f.png", now)],
                     ["upload_id", "project_id", "session_id", "storage_key", "completed_at"])  # fmt: skip
    eraser = Eraser(warehouse, None, None, b"salt")
    with pytest.raises(StoreUnreachable, match="FORGELINE_BLOB_STORE_URL"):
        eraser.erase(Subject("blobby", {"player_id": ("pl-1",)}))
    assert _count(warehouse, "sessions", "blobby") == 1 and _count(warehouse, "uploads", "blobby") == 1
