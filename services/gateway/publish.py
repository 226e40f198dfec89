"""Enqueue accepted payloads: the gateway's only write, answered only once durable."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from forgeline.bus.port import BusUnavailable, OutgoingRecord, Producer
from forgeline.telemetry.metrics import BUS_PRODUCE_LATENCY, BUS_PRODUCED
from services.gateway.errors import ApiError


class Publisher:
    def __init__(self, producer: Producer, timeout_s: float) -> None:
        self._producer = producer
        self._timeout_s = timeout_s

    async def publish(self, records: list[OutgoingRecord]) -> None:
        """Return once every record is durable; otherwise refuse with 503 + Retry-After.

        On a timeout the records may still land later; their ids are derived from the
        request, so a client retry produces the same ids and the pipeline deduplicates.
        """
        started = time.perf_counter()
        try:
            # asyncio.timeout, not wait_for: no extra task per request on the hot path.
            async with asyncio.timeout(self._timeout_s):
                await self._producer.send_many(records)
        except (TimeoutError, BusUnavailable):
            raise ApiError(
                503,
                {"error": "Service Unavailable: the event bus did not acknowledge in time", "retry_after": 1},
                reason="bus_unavailable",
                headers={"Retry-After": "1"},
            ) from None
        BUS_PRODUCE_LATENCY.observe(time.perf_counter() - started)
        # One counter update per topic, not per record: a batch is hundreds of records.
        for topic, count in Counter(record.topic for record in records).items():
            BUS_PRODUCED.labels(topic=topic).inc(count)
