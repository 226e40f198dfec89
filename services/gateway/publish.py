"""Enqueue accepted payloads: the gateway's only write, answered only once durable."""

from __future__ import annotations

import time

from forgeline.bus.port import BusUnavailable, DiskFull, OutgoingRecord, Producer
from forgeline.telemetry.metrics import BUS_PRODUCE_LATENCY, BUS_PRODUCED, LabelledChildren
from services.gateway.errors import ApiError


class Publisher:
    def __init__(self, producer: Producer, max_record_bytes: int) -> None:
        # The producer carries the publish timeout (see create_app) and raises BusUnavailable
        # past it: one timer per request, not two.
        self._producer = producer
        self._max_record_bytes = max_record_bytes
        self._produced = LabelledChildren(BUS_PRODUCED)

    async def publish(self, records: list[OutgoingRecord]) -> None:
        """Return once every record is durable; otherwise refuse with 503 + Retry-After.

        On a timeout the records may still land later; their ids are derived from the
        request, so a client retry produces the same ids and the pipeline deduplicates.
        """
        for record in records:
            size = len(record.value) + len(record.key or b"") + sum(len(k) + len(v) for k, v in record.headers)
            if size > self._max_record_bytes:
                # Accepted, it would be refused by the bus on every retry (Kafka's request size):
                # the client hears it now, and nothing of the request is enqueued.
                raise ApiError(
                    413,
                    {
                        "error": f"Payload Too Large: this request makes a {size}-byte record, "
                        f"the bus takes at most {self._max_record_bytes} bytes",
                        "code": "payload_too_large",
                        "limit_bytes": self._max_record_bytes,
                    },
                    reason="too_large",
                )
        started = time.perf_counter()
        try:
            await self._producer.send_many(records)
        except DiskFull:
            retry = str(DiskFull.retry_after_s)
            raise ApiError(
                503,
                {
                    "error": "Service Unavailable: the server is low on disk space",
                    "retry_after": DiskFull.retry_after_s,
                },
                reason="disk_full",
                headers={"Retry-After": retry},
            ) from None
        except BusUnavailable:
            raise ApiError(
                503,
                {"error": "Service Unavailable: the event bus did not acknowledge in time", "retry_after": 1},
                reason="bus_unavailable",
                headers={"Retry-After": "1"},
            ) from None
        BUS_PRODUCE_LATENCY.observe(time.perf_counter() - started)
        # One counter update per topic, not per record: a batch is hundreds of records.
        counts: dict[str, int] = {}
        for record in records:
            counts[record.topic] = counts.get(record.topic, 0) + 1
        for topic, count in counts.items():
            self._produced.get(topic).inc(count)
