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
from typing import Any, Unpack

from forgeline.bus.port import Bus, OutgoingRecord, Record, partition_for
from forgeline.bus.topics import RAW_LOGISTER, TICK_HEADER, TYPED_CHECKINS
from forgeline.processing.host import DEFAULT_POLL_TIMEOUT_S, HostOptions, ProcessorHost, Runtime, Strategy
from forgeline.processing.loop import next_offsets
from forgeline.processing.registry import Parts
from forgeline.processing.sinks import insert_with_retry, query_with_retry, send_with_retry
from forgeline.schemas.cells import millis_to_datetime as to_datetime
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
_MONITOR_TIMES = {MONITOR_COLUMNS.index(c) for c in ("last_check_in_at", "deadline_at", "state_changed_at")}
_CHANGE_TIMES = {CHANGE_COLUMNS.index(c) for c in ("changed_at", "stream_clock_at")}
_LOAD_COLUMNS = [c for c in MONITOR_COLUMNS if c != "deadline_at"]
LOAD_SQL = "SELECT {cols} FROM {db}.monitor_states FINAL"
CLOCK_SQL = (
    "SELECT toUnixTimestamp64Milli(max(clock_at)) FROM {db}.stream_clocks FINAL WHERE name = '" + CLOCK_NAME + "'"
)


def _rows(rows: list[tuple[Any, ...]], time_idx: set[int]) -> list[tuple[Any, ...]]:
    return [tuple(to_datetime(v) if i in time_idx else v for i, v in enumerate(row)) for row in rows]


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
        cols = ", ".join(f"toUnixTimestamp64Milli({c}) AS {c}" if c.endswith("_at") else c for c in _LOAD_COLUMNS)
        typed = {tp.partition for tp in self._consumer.assignment() if tp.topic == TYPED_CHECKINS}
        typed_count = await asyncio.to_thread(self._bus.partitions, TYPED_CHECKINS)
        rows = await query_with_retry(self._warehouse, LOAD_SQL.format(cols=cols, db=db), None, GROUP)
        monitors = [Monitor.from_row(dict(zip(_LOAD_COLUMNS, row, strict=True))) for row in rows]
        # Only the monitors this replica owns (the normalizer's key: project/environment/slug);
        # another replica judges the rest.
        monitors = [m for m in monitors if partition_for("/".join(m.key).encode(), typed_count) in typed]
        clock_rows = await query_with_retry(self._warehouse, CLOCK_SQL.format(db=db), None, GROUP)
        floor = int(clock_rows[0][0] or 0) if clock_rows else 0
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
        changes = _rows([c.row() for c in result.changes], _CHANGE_TIMES)
        await insert_with_retry(self._warehouse, "monitor_state_changes", changes, CHANGE_COLUMNS, GROUP)
        states = _rows([m.row() for m in result.monitors.values()], _MONITOR_TIMES)
        await insert_with_retry(self._warehouse, "monitor_states", states, MONITOR_COLUMNS, GROUP)
        if result.clock_moved:
            clock_row = [(CLOCK_NAME, to_datetime(evaluator.clock.now_ms))]
            await insert_with_retry(self._warehouse, "stream_clocks", clock_row, ["name", "clock_at"], GROUP)
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
