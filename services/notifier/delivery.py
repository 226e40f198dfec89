"""Delivery mechanics: backoff with jitter, per-target token buckets, the delivery log.

The delivery log is the ``control.notify_deliveries`` topic: one record per state change of a
delivery id (``pending`` before the first attempt, then ``delivered`` or ``dead``). It is read
whole at start, and again when partitions are assigned, so ids already done are skipped after
a restart, a rebalance or a redelivery of the same input; a ``pending`` id without an outcome
means a crash (or a stop) mid-send, and the provider is asked (``providers.already_delivered``)
before sending again.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import orjson

from forgeline.bus.follow import read_to_end
from forgeline.bus.port import Bus, OutgoingRecord, Producer, Record
from forgeline.bus.topics import CONTROL_NOTIFY_DELIVERIES
from forgeline.processing.sinks import send_with_retry


def backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): "equal jitter" exponential backoff.

    Half of ``min(cap, base·2^(attempt-1))`` is fixed and half random, so delays grow
    geometrically while retries from many deliveries that failed together spread out.
    """
    ceiling = float(min(cap_s, base_s * 2.0 ** max(attempt - 1, 0)))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved; ``acquire`` waits for one."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self._tokens = float(self.burst)
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def wait_s(self, now: float) -> float:
        """Take a token if there is one (0.0) or say how long until there will be."""
        self._refill(now)
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    async def acquire(self) -> None:
        async with self._lock:  # FIFO: waiters are served in arrival order
            while (delay := self.wait_s(time.monotonic())) > 0:
                await asyncio.sleep(delay)

    def penalise(self, seconds: float) -> None:
        """A provider said "retry after N s": nobody sends to this target until then."""
        now = time.monotonic()
        self._refill(now)
        self._tokens = min(self._tokens, 1 - seconds * self.rate)


@dataclass(frozen=True, slots=True)
class Pending:
    since_ms: int


class DeliveryLog:
    def __init__(self, bus: Bus, producer: Producer) -> None:
        self._bus = bus
        self._producer = producer
        self.done: dict[str, str] = {}  # delivery id → "delivered" | "dead"
        self.pending: dict[str, Pending] = {}

    async def load(self) -> int:
        reader = self._bus.reader([CONTROL_NOTIFY_DELIVERIES])
        await reader.start()
        try:
            return await read_to_end(reader, self._apply_record)
        finally:
            await reader.stop()

    def _apply_record(self, record: Record) -> bool:
        try:
            doc = orjson.loads(record.value)
            self._apply(str(doc["id"]), str(doc["state"]), int(doc.get("at", 0)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return False
        return True

    def _apply(self, delivery_id: str, state: str, at_ms: int) -> None:
        if state == "pending":
            if delivery_id not in self.done:
                self.pending.setdefault(delivery_id, Pending(at_ms))
        elif state in ("delivered", "dead"):
            self.done[delivery_id] = state
            self.pending.pop(delivery_id, None)

    async def mark(self, delivery_id: str, state: str, detail: str = "") -> None:
        await self.mark_many([delivery_id], state, detail)

    async def mark_many(self, delivery_ids: list[str], state: str, detail: str = "") -> None:
        """Durable before return (the bus fsyncs); concurrent marks share one flush."""
        if not delivery_ids:
            return
        at = int(time.time() * 1000)
        records = []
        for delivery_id in delivery_ids:
            doc = {"id": delivery_id, "state": state, "at": at}
            if detail:
                doc["detail"] = detail
            records.append(OutgoingRecord(CONTROL_NOTIFY_DELIVERIES, orjson.dumps(doc), key=delivery_id.encode()))
        # A slow or restarting bus is retried like every other append: the batch waits, uncommitted.
        await send_with_retry(self._producer, records, "notifier")
        for delivery_id in delivery_ids:
            self._apply(delivery_id, state, at)
