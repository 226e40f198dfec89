"""The monitor evaluator service: typed.checkins (check-ins and ticks) → monitor_states.

Two tasks: the evaluator loop (poll → ``Evaluator.apply`` → state-change records appended
→ state rows, history rows and the clock written → commit) and the ticker, which appends
one stream-clock tick to every ``raw.logister`` partition every ``tick_s`` (wall time
minus ``slack_s``: the most a check-in can wait between the gateway stamping its
``received_at`` and its append — the publish timeout plus a second).

Ticks reach ``typed.checkins`` only through the normalizer: run it somewhere (it is in
the same process in embedded mode), or the clock does not move and nothing is missed.

Restart: monitors come back from ``monitor_states FINAL`` and the clock from
``stream_clocks``; replayed check-ins at or below a monitor's applied offset are skipped,
replayed ticks cannot move the clock back, so a restart emits nothing twice.

Kafka groups: the evaluator judges only the monitors of the ``typed.checkins`` partitions
it is assigned, with a clock over those partitions. Kafka assigns them after the group
join (not in ``start``), and again at every rebalance, so the evaluator is rebuilt the
same way as at restart on each new assignment (before the next batch); a revocation waits
for the batch in flight. Each replica runs a ticker; duplicate ticks are harmless (the
clock keeps the latest tick per partition pair).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Unpack

from forgeline.bus.port import Bus, OutgoingRecord, Record, partition_for
from forgeline.bus.topics import RAW_LOGISTER, TICK_HEADER, TYPED_CHECKINS
from forgeline.processing.host import DEFAULT_POLL_TIMEOUT_S, HostOptions, ProcessorHost, Runtime, Strategy
from forgeline.processing.loop import next_offsets
from forgeline.processing.registry import Parts
from forgeline.processing.sinks import insert_with_retry, query_with_retry, send_with_retry
from forgeline.schemas import records as schema
from forgeline.schemas.cells import rows_from_warehouse, select_list, warehouse_rows
from forgeline.schemas.records import CHECK_IN, STREAM_CLOCKS, partition_key_of
from forgeline.telemetry.metrics import (
    MONITOR_STATE_CHANGES,
    MONITOR_STATES,
    MONITOR_STREAM_CLOCK,
)
from forgeline.warehouse.port import Warehouse
from services.monitors.steps import (
    CHANGE_COLUMNS,
    MONITOR_COLUMNS,
    Evaluator,
    Monitor,
    StreamClock,
    tick_value,
)

GROUP = "monitors"
CLOCK_NAME = "monitors"
log = logging.getLogger(__name__)
_LOAD_COLUMNS = [c for c in MONITOR_COLUMNS if c != "deadline_at"]  # derived from the others


def load_sql(database: str) -> str:
    return f"SELECT {select_list(schema.MONITOR_STATES, _LOAD_COLUMNS)} FROM {database}.monitor_states FINAL"


def clock_sql(database: str) -> str:
    # FINAL: one row per name, the latest clock_at (the table's version column).
    return f"SELECT {select_list(STREAM_CLOCKS)} FROM {database}.stream_clocks FINAL WHERE name = '{CLOCK_NAME}'"


def _check_in_key(monitor: Monitor) -> bytes:
    """The bus key of the monitor's check-ins: which ``typed.checkins`` partition holds it."""
    row = {"project_id": monitor.project_id, "environment": monitor.environment, "slug": monitor.slug}
    return partition_key_of(CHECK_IN, row)


class EvaluateMonitorsStrategy(Strategy):
    def __init__(
        self, runtime: Runtime, warehouse: Warehouse, margin_s: float, tick_s: float, slack_s: float, batch: int
    ) -> None:
        self._runtime = runtime
        self._bus = runtime.bus
        self._consumer = runtime.consumer
        self._producer = runtime.producer
        self._warehouse = warehouse
        self._margin_s = int(round(margin_s))
        self._tick_s = tick_s
        self._slack_ms = int(slack_s * 1000)
        self._batch = batch
        self._evaluator: Evaluator | None = None
        self._ticker: asyncio.Task[None] | None = None

    def capacity(self) -> tuple[int, float]:
        if self._ticker is not None and self._ticker.done():
            self._ticker.result()  # a failed ticker takes the service down (raises)
        return self._batch, DEFAULT_POLL_TIMEOUT_S

    async def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick_forever(), name="monitors-ticker")
        self._evaluator = await self._restore()

    async def assigned(self) -> None:
        # New partitions (Kafka): their monitors and clock, as at a restart.
        self._evaluator = await self._restore()

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)

    async def submit(self, records: list[Record]) -> None:
        assert self._evaluator is not None, "submit before start"
        await self._process(self._evaluator, records)

    async def _restore(self) -> Evaluator:
        db = self._warehouse.database
        typed = {tp.partition for tp in self._consumer.assignment() if tp.topic == TYPED_CHECKINS}
        typed_count = await asyncio.to_thread(self._bus.partitions, TYPED_CHECKINS)
        rows = await query_with_retry(self._warehouse, load_sql(db), None, GROUP)
        monitors = [Monitor.from_row(row) for row in rows_from_warehouse(schema.MONITOR_STATES, _LOAD_COLUMNS, rows)]
        # Only the monitors this replica owns (the normalizer's key of a check-in); another
        # replica judges the rest.
        monitors = [m for m in monitors if partition_for(_check_in_key(m), typed_count) in typed]
        clock_rows = await query_with_retry(self._warehouse, clock_sql(db), None, GROUP)
        clocks = rows_from_warehouse(STREAM_CLOCKS, STREAM_CLOCKS.column_names, clock_rows)
        floor = max((clock["clock_at"] for clock in clocks), default=0)
        raw = await asyncio.to_thread(self._bus.partitions, RAW_LOGISTER)
        log.info("monitors restored", extra={"monitors": len(monitors), "clock_ms": floor, "partitions": len(typed)})
        evaluator = Evaluator(StreamClock(typed, raw, floor), self._margin_s, monitors)
        self._report(evaluator)
        return evaluator

    async def _process(self, evaluator: Evaluator, records: list[Record]) -> None:
        result = evaluator.apply(records)
        dead_letters = self._runtime.dead_letters
        out = [change.record() for change in result.changes]
        out += [dead_letters.reject(record, err) for record, err in result.rejected]
        # Over the limit: nothing of this batch is appended, written or committed (the service
        # stops; a start restores the evaluator from the warehouse).
        dead_letters.check(len(records), len(result.rejected))
        await send_with_retry(self._producer, out, GROUP)
        changes = warehouse_rows(schema.MONITOR_STATE_CHANGES, [c.row() for c in result.changes])
        await insert_with_retry(self._warehouse, "monitor_state_changes", changes, CHANGE_COLUMNS, GROUP)
        states = warehouse_rows(schema.MONITOR_STATES, [m.row() for m in result.monitors.values()])
        await insert_with_retry(self._warehouse, "monitor_states", states, MONITOR_COLUMNS, GROUP)
        if result.clock_moved:
            clock_row = warehouse_rows(STREAM_CLOCKS, [(CLOCK_NAME, evaluator.clock.now_ms)])
            await insert_with_retry(self._warehouse, "stream_clocks", clock_row, STREAM_CLOCKS.column_names, GROUP)
        await self._runtime.commit(next_offsets(records), len(records))
        for change in result.changes:
            MONITOR_STATE_CHANGES.labels(state=change.state).inc()
        self._report(evaluator)

    def _report(self, evaluator: Evaluator) -> None:
        for state, n in evaluator.counts().items():
            MONITOR_STATES.labels(state=state).set(n)
        MONITOR_STREAM_CLOCK.set(evaluator.clock.now_ms / 1000)

    async def _tick_forever(self) -> None:
        partitions = await asyncio.to_thread(self._bus.partitions, RAW_LOGISTER)
        while True:
            # Wall time is right here: the tick is stamped at append time, exactly as the
            # gateway stamps received_at; the log order does the rest.
            at_ms = int(self._runtime.clock.time() * 1000) - self._slack_ms
            ticks = [
                OutgoingRecord(RAW_LOGISTER, tick_value(at_ms), headers=((TICK_HEADER, b"1"),), partition=p)
                for p in range(partitions)
            ]
            await send_with_retry(self._producer, ticks, GROUP)
            await asyncio.sleep(self._tick_s)


class MonitorEvaluatorService(ProcessorHost):
    def __init__(
        self,
        bus: Bus,
        warehouse: Warehouse,
        *,
        margin_s: float = 60.0,
        tick_s: float = 5.0,
        slack_s: float = 3.0,
        batch: int = 1000,
        **options: Unpack[HostOptions],
    ) -> None:
        def strategy(runtime: Runtime) -> Strategy:
            return EvaluateMonitorsStrategy(runtime, warehouse, margin_s, tick_s, slack_s, batch)

        super().__init__(GROUP, bus, [TYPED_CHECKINS], strategy, **options)


def build(parts: Parts) -> MonitorEvaluatorService:
    s = parts.settings
    return MonitorEvaluatorService(
        parts.bus,
        parts.warehouse,
        margin_s=s.monitor_margin_seconds,
        tick_s=s.monitor_tick_seconds,
        slack_s=s.publish_timeout_seconds + 1.0,
        dead_letters=parts.dead_letters,
    )
