"""Open the configured warehouse, migrated to the current schema."""

from __future__ import annotations

import logging

from forgeline.config import Settings
from forgeline.warehouse.client import ClickHouseWarehouse
from forgeline.warehouse.migrations import migrate
from forgeline.warehouse.port import Warehouse

log = logging.getLogger(__name__)


def open_warehouse(settings: Settings) -> Warehouse:
    warehouse = ClickHouseWarehouse(settings.resolved_warehouse_dsn)
    applied = migrate(warehouse)
    log.info("warehouse ready", extra={"migrations_applied": applied})
    return warehouse
