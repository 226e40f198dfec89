"""The error grouper service: typed.errors (+ control.error_groups) → error_groups.

Loop: poll → ``ErrorGrouper.apply`` (pure) → notifications and dead letters appended →
event rows and group rows inserted → offsets committed. A crash anywhere before the
commit replays the batch; the per-group applied offsets (stored in the group rows) make
the replay a no-op for every group whose row was written, and the rest is recomputed
identically (same notification ids).

State: every group is loaded from ``error_groups FINAL`` at start (memory grows with the
number of groups, not events), and again after each rebalance (Kafka groups): the groups of
a partition that comes back may have been changed by another replica meanwhile. A
revocation waits for the batch in flight to be written and committed.
"""

from __future__ import annotations

import logging
from typing import Any, Unpack

from forgeline.bus.port import Bus, Record
from forgeline.bus.topics import CONTROL_ERROR_GROUPS, TYPED_ERRORS
from forgeline.processing.host import DEFAULT_POLL_TIMEOUT_S, HostOptions, ProcessorHost, Runtime, Strategy
from forgeline.processing.loop import next_offsets
from forgeline.processing.registry import Parts
from forgeline.processing.sinks import insert_with_retry, query_with_retry, send_with_retry
from forgeline.schemas.cells import rows_from_warehouse, select_list, warehouse_rows
from forgeline.schemas.records import ERROR_GROUP_EVENTS, ERROR_GROUPS
from forgeline.telemetry.metrics import ERROR_GROUP_NOTIFICATIONS
from forgeline.warehouse.port import Warehouse
from services.errors.steps import EVENT_COLUMNS, GROUP_COLUMNS, ErrorGroup, ErrorGrouper

GROUP = "errors"
log = logging.getLogger(__name__)


def load_sql(database: str) -> str:
    return f"SELECT {select_list(ERROR_GROUPS)} FROM {database}.error_groups FINAL"


def group_rows(groups: list[ErrorGroup]) -> list[tuple[Any, ...]]:
    return warehouse_rows(ERROR_GROUPS, [group.row() for group in groups])


async def load_groups(warehouse: Warehouse) -> list[ErrorGroup]:
    rows = await query_with_retry(warehouse, load_sql(warehouse.database), None, GROUP)
    return [ErrorGroup.from_row(row) for row in rows_from_warehouse(ERROR_GROUPS, GROUP_COLUMNS, rows)]


class GroupErrorsStrategy(Strategy):
    def __init__(self, runtime: Runtime, warehouse: Warehouse, batch: int) -> None:
        self._runtime = runtime
        self._warehouse = warehouse
        self._batch = batch
        self._grouper = ErrorGrouper([])

    def capacity(self) -> tuple[int, float]:
        return self._batch, DEFAULT_POLL_TIMEOUT_S

    async def start(self) -> None:
        self._grouper = await self._load()

    async def assigned(self) -> None:
        # New partitions: their groups may have changed under another replica.
        self._grouper = await self._load()

    async def _load(self) -> ErrorGrouper:
        grouper = ErrorGrouper(await load_groups(self._warehouse))
        log.info("error groups loaded", extra={"groups": len(grouper.groups)})
        return grouper

    async def submit(self, records: list[Record]) -> None:
        result = self._grouper.apply(records)
        rt = self._runtime
        dead = [rt.dead_letters.reject(record, err) for record, err in result.rejected]
        # Over the limit: nothing of this batch is appended, written or committed. The grouper
        # holds its changes, so the service stops here (it reloads from the warehouse at start).
        rt.dead_letters.check(len(records), len(dead))
        await send_with_retry(rt.producer, [*result.notifications, *dead], GROUP)
        for kind in result.notification_kinds:
            ERROR_GROUP_NOTIFICATIONS.labels(kind=kind).inc()
        events = warehouse_rows(ERROR_GROUP_EVENTS, result.events)
        await insert_with_retry(self._warehouse, "error_group_events", events, EVENT_COLUMNS, GROUP)
        groups = group_rows(list(result.groups.values()))
        await insert_with_retry(self._warehouse, "error_groups", groups, GROUP_COLUMNS, GROUP)
        await rt.commit(next_offsets(records), len(records))


class ErrorGrouperService(ProcessorHost):
    def __init__(self, bus: Bus, warehouse: Warehouse, batch: int = 1000, **options: Unpack[HostOptions]) -> None:
        super().__init__(
            GROUP,
            bus,
            [TYPED_ERRORS, CONTROL_ERROR_GROUPS],
            lambda rt: GroupErrorsStrategy(rt, warehouse, batch),
            **options,
        )


def build(parts: Parts) -> ErrorGrouperService:
    return ErrorGrouperService(parts.bus, parts.warehouse, dead_letters=parts.dead_letters)
