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

import asyncio
import logging
from typing import Any

from forgeline.bus.port import Bus
from forgeline.bus.topics import CONTROL_ERROR_GROUPS, TYPED_ERRORS
from forgeline.processing.deadletter import DeadLetterPolicy, DeadLetters
from forgeline.processing.loop import LagReporter, RebalanceGuard, count_consumed, next_offsets
from forgeline.processing.sinks import insert_with_retry, query_with_retry, send_with_retry, to_datetime
from forgeline.telemetry.metrics import ERROR_GROUP_NOTIFICATIONS, PROCESSOR_BATCH_SIZE
from forgeline.warehouse.port import Warehouse
from services.errors.steps import EVENT_COLUMNS, GROUP_COLUMNS, ErrorGroup, ErrorGrouper

GROUP = "errors"
log = logging.getLogger(__name__)
_TIME_COLUMNS = ("first_seen", "last_seen", "status_changed_at")

LOAD_SQL = (
    "SELECT project_id, group_id, fingerprint, organisation_id, title, exception_class, "
    "toUnixTimestamp64Milli(first_seen) AS first_seen, toUnixTimestamp64Milli(last_seen) AS last_seen, "
    "event_count, last_level, releases, environments, status, regressed, "
    "toUnixTimestamp64Milli(status_changed_at) AS status_changed_at, recent_event_ids, "
    "applied_event_offset, applied_control_offset, version FROM {db}.error_groups FINAL"
)


def group_rows(groups: list[ErrorGroup]) -> list[tuple[Any, ...]]:
    rows = []
    time_idx = {GROUP_COLUMNS.index(c) for c in _TIME_COLUMNS}
    for group in groups:
        rows.append(tuple(to_datetime(v) if i in time_idx else v for i, v in enumerate(group.row())))
    return rows


async def load_groups(warehouse: Warehouse) -> list[ErrorGroup]:
    rows = await query_with_retry(warehouse, LOAD_SQL.format(db=warehouse.database), None, GROUP)
    return [ErrorGroup.from_row(dict(zip(GROUP_COLUMNS, row, strict=True))) for row in rows]


class ErrorGrouperService:
    def __init__(
        self, bus: Bus, warehouse: Warehouse, batch: int = 1000, dead_letters: DeadLetterPolicy | None = None
    ) -> None:
        self._dead_letters = DeadLetters(GROUP, dead_letters)
        self._consumer = bus.consumer(GROUP, [TYPED_ERRORS, CONTROL_ERROR_GROUPS])
        self._producer = bus.producer()
        self._warehouse = warehouse
        self._batch = batch
        self._stopping = asyncio.Event()
        self.ready = False
        self._guard = RebalanceGuard(self._consumer)

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        await self._producer.start()
        await self._consumer.start()
        try:
            loaded_at = self._guard.assignments
            grouper = await self._load()
            lag = LagReporter(GROUP, self._consumer)
            self.ready = True
            while not self._stopping.is_set():
                records, polled_at = await self._guard.poll(self._batch, timeout_s=0.2)
                async with self._guard.lock:
                    records = self._guard.fresh(records, polled_at)
                    if loaded_at != self._guard.assignments:
                        # New partitions: their groups may have changed under another replica.
                        loaded_at = self._guard.assignments
                        grouper = await self._load()
                    if records:
                        count_consumed(GROUP, records)
                        PROCESSOR_BATCH_SIZE.labels(service=GROUP).observe(len(records))
                        await self._process(grouper, records)
                await lag.maybe_report({})
        finally:
            self.ready = False
            await self._consumer.stop()
            await self._producer.stop()

    async def _load(self) -> ErrorGrouper:
        grouper = ErrorGrouper(await load_groups(self._warehouse))
        log.info("error groups loaded", extra={"groups": len(grouper.groups)})
        return grouper

    async def _process(self, grouper: ErrorGrouper, records: list[Any]) -> None:
        result = grouper.apply(records)
        out = list(result.notifications)
        out += [self._dead_letters.reject(record, err) for record, err in result.rejected]
        # Over the limit: nothing of this batch is appended, written or committed. The grouper
        # holds its changes, so the service stops here (it reloads from the warehouse at start).
        self._dead_letters.check(len(records), len(result.rejected))
        await send_with_retry(self._producer, out, GROUP)
        for kind in result.notification_kinds:
            ERROR_GROUP_NOTIFICATIONS.labels(kind=kind).inc()
        events = [tuple(to_datetime(v) if i == 3 else v for i, v in enumerate(row)) for row in result.events]
        await insert_with_retry(self._warehouse, "error_group_events", events, EVENT_COLUMNS, GROUP)
        groups = group_rows(list(result.groups.values()))
        await insert_with_retry(self._warehouse, "error_groups", groups, GROUP_COLUMNS, GROUP)
        await self._consumer.commit(next_offsets(records))
