"""Versioned SQL migrations, applied in order and idempotently at start.

Files are ``tables/NNN_<name>.sql``; ``{db}`` stands for the database. A version is
recorded in ``schema_migrations`` after all its statements ran; statements use
``IF NOT EXISTS`` so that a crash half-way through a file is safe to re-run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

from forgeline.warehouse.port import Warehouse

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self, database: str) -> list[str]:
        lines = [line for line in self.sql.splitlines() if not line.strip().startswith("--")]
        text = "\n".join(lines).replace("{db}", database)
        return [part.strip() for part in text.split(";") if part.strip()]


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("forgeline.warehouse").joinpath("tables").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        version_text, _, name = entry.name.removesuffix(".sql").partition("_")
        found.append(Migration(int(version_text), name, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def migrate(warehouse: Warehouse) -> list[int]:
    """Apply every migration not yet recorded; returns the versions applied now."""
    db = warehouse.database
    warehouse.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC')) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {int(row[0]) for row in warehouse.query_rows(f"SELECT version FROM {db}.schema_migrations FINAL")}
    applied = []
    for migration in available_migrations():
        if migration.version in done:
            continue
        for statement in migration.statements(db):
            warehouse.command(statement)
        warehouse.insert(
            "schema_migrations",
            [(migration.version, migration.name, datetime.now(UTC))],
            ["version", "name", "applied_at"],
        )
        log.info("applied migration", extra={"version": migration.version, "migration": migration.name})
        applied.append(migration.version)
    return applied
