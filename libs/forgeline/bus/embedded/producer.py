"""The embedded log's producer: group commit of concurrent sends, one write and fsync per partition."""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import os
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from forgeline.bus.embedded.log import PartitionLog
from forgeline.bus.embedded.store import LogStore
from forgeline.bus.port import BusUnavailable, DiskFull, OutgoingRecord, TopicPartition

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _SendRequest:
    """One send/send_many call waiting for its records to be durable."""

    # The call's records by partition, each list in send order.
    by_partition: dict[TopicPartition, list[OutgoingRecord]]
    future: asyncio.Future[None]


class EmbeddedProducer:
    """Appends records to the embedded bus with group commit.

    Every ``send`` joins a pending list; one flusher task takes all that is pending, writes
    each partition's share in one write and one fsync (in worker threads), and then wakes
    every waiter. Concurrency therefore buys throughput instead of fsyncs.

    Failures: a disk error fails the waiters of that partition with BusUnavailable (chained
    from the OSError); a send that is not durable within ``send_timeout_s`` raises
    BusUnavailable. In both cases the record may or may not have been written.
    """

    def __init__(self, bus: LogStore, send_timeout_s: float = 5.0) -> None:
        self._bus = bus
        self._send_timeout_s = send_timeout_s
        self._logs: dict[TopicPartition, PartitionLog] = {}
        self._pending: list[_SendRequest] = []
        self._wakeup = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._creating: dict[str, asyncio.Future[int]] = {}
        self._round_robin = 0
        self._closed = False
        # When each partition's retention is next checked (monotonic seconds).
        self._retention_due: dict[TopicPartition, float] = {}

    async def start(self) -> None:
        await asyncio.to_thread(self._bus.prepare_root)
        self._ensure_flusher()

    async def send(self, record: OutgoingRecord) -> None:
        """Append one record; return once it is fsync'd. Raises BusUnavailable on failure."""
        await self.send_many([record])

    async def send_many(self, records: Sequence[OutgoingRecord]) -> None:
        """Append several records; return once all are fsync'd.

        Records of one partition are written together and in order; across partitions the
        call is not atomic (some partitions may be written when it raises).
        """
        if self._closed:
            raise BusUnavailable("producer is stopped")
        if not records:
            return
        problem = self._bus.space_problem()
        if problem is not None:
            raise DiskFull(problem)
        try:
            async with asyncio.timeout(self._send_timeout_s):
                # Partition counts once per topic (a batch is usually one topic), then place
                # every record without a coroutine each.
                counts = {topic: await self._partition_count(topic) for topic in {r.topic for r in records}}
                by_partition = self._place(records, counts)
                if self._closed:  # stopped while the topic was being created
                    raise BusUnavailable("producer is stopped")
                request = _SendRequest(by_partition, asyncio.get_running_loop().create_future())
                self._pending.append(request)
                self._ensure_flusher()
                self._wakeup.set()
                # On timeout this future is cancelled, so the flusher skips it if it has not
                # taken it yet (then the records are certainly not written).
                await request.future
        except TimeoutError as exc:
            raise BusUnavailable(f"records not durable within {self._send_timeout_s}s") from exc
        except OSError as exc:
            # Creating the topic failed (disk full, permissions).
            raise BusUnavailable(f"embedded bus cannot create topic: {exc}") from exc

    async def ready(self) -> bool:
        """True when the root directory is writable (and the producer is not stopped)."""
        root = self._bus.root
        writable = not self._closed and root.is_dir() and os.access(root, os.W_OK | os.X_OK)
        return writable and self._bus.space_problem() is None

    async def stop(self) -> None:
        """Write what is pending, stop the flusher and close the files."""
        self._closed = True
        self._wakeup.set()
        if self._flusher is not None:
            await self._flusher
            self._flusher = None
        logs, self._logs = list(self._logs.values()), {}
        for plog in logs:
            plog.close()

    def _place(
        self, records: Sequence[OutgoingRecord], counts: Mapping[str, int]
    ) -> dict[TopicPartition, list[OutgoingRecord]]:
        """Group ``records`` by the partition each goes to (given, by key, or round robin)."""
        # The gateway's hot path: per record only a crc and a dict lookup. Groups are keyed by
        # plain (topic, partition) tuples (a TopicPartition per record cost more than placing
        # it) and the key's partition is ``partition_for`` inlined (test_keyed_partitioning_is_stable).
        groups: dict[tuple[str, int], list[OutgoingRecord]] = {}
        round_robin = self._round_robin
        for record in records:
            topic, partition = record.topic, record.partition
            if partition is None:
                key = record.key
                if key is None:
                    partition = round_robin % counts[topic]
                    round_robin += 1
                else:
                    partition = zlib.crc32(key) % counts[topic]
            elif not 0 <= partition < counts[topic]:
                raise ValueError(f"partition {partition} out of range for {topic!r} ({counts[topic]})")
            group = groups.get((topic, partition))
            if group is None:
                groups[topic, partition] = [record]
            else:
                group.append(record)
        self._round_robin = round_robin
        return {TopicPartition(*tp): group for tp, group in groups.items()}

    async def _partition_count(self, topic: str) -> int:
        count = self._bus.known_partitions(topic)
        if count is not None:
            return count
        # Many first sends to a new topic share one creation instead of one thread each.
        creating = self._creating.get(topic)
        if creating is None:
            creating = asyncio.ensure_future(asyncio.to_thread(self._bus.ensure_topic, topic))
            self._creating[topic] = creating
            creating.add_done_callback(lambda _: self._creating.pop(topic, None))
        return await asyncio.shield(creating)

    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._run_flusher())

    async def _run_flusher(self) -> None:
        while True:
            if not self._pending:
                if self._closed:
                    return
                self._wakeup.clear()
                try:
                    async with asyncio.timeout(self._bus.retention.check_interval_s):
                        await self._wakeup.wait()
                except TimeoutError:
                    # Idle (or refusing writes on a full disk): retention still has to run,
                    # or nothing would ever free the space.
                    await asyncio.to_thread(self._sweep)
                continue
            batch, self._pending = self._pending, []
            await self._flush([r for r in batch if not r.future.done()])

    async def _flush(self, batch: list[_SendRequest]) -> None:
        by_partition: dict[TopicPartition, list[OutgoingRecord]] = collections.defaultdict(list)
        for request in batch:
            for tp, records in request.by_partition.items():
                by_partition[tp] += records
        tps = list(by_partition)
        # Partitions have separate files and locks: write them in parallel threads.
        results: list[int | BaseException]
        if len(tps) == 1:  # the common case: one thread hop, without gather's tasks around it
            try:
                results = [await asyncio.to_thread(self._append, tps[0], by_partition[tps[0]])]
            except Exception as exc:
                results = [exc]
        else:
            results = await asyncio.gather(
                *(asyncio.to_thread(self._append, tp, by_partition[tp]) for tp in tps),
                return_exceptions=True,
            )
        failures: dict[TopicPartition, BaseException] = {}
        for tp, result in zip(tps, results, strict=True):
            if isinstance(result, BaseException):
                failures[tp] = result
                log.error(
                    "embedded bus append failed",
                    extra={"topic": tp.topic, "partition": tp.partition},
                    exc_info=result,
                )
        for request in batch:
            if request.future.done():
                continue
            error = next((failures[tp] for tp in request.by_partition if tp in failures), None)
            if error is None:
                request.future.set_result(None)
            elif isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
                full = DiskFull(f"embedded bus write failed: {error}")
                full.__cause__ = error
                request.future.set_exception(full)
            elif isinstance(error, OSError):
                unavailable = BusUnavailable(f"embedded bus write failed: {error}")
                unavailable.__cause__ = error
                request.future.set_exception(unavailable)
            else:
                request.future.set_exception(error)

    def _append(self, tp: TopicPartition, records: list[OutgoingRecord]) -> int:
        """Append (in a worker thread), then apply retention when a segment closed or it is time.

        Retention runs after the append lock is released and its errors are only logged: the
        records are durable by then and the writer is told so.
        """
        plog = self._log(tp)
        first = plog.append(records)
        self._retain(tp, force=plog.rolled)
        return first

    def _sweep(self) -> None:
        """Retention for every partition this producer has written, when it is due."""
        for tp in list(self._logs):
            self._retain(tp, force=False)

    def _retain(self, tp: TopicPartition, force: bool) -> None:
        now = time.monotonic()
        if not force and now < self._retention_due.get(tp, 0.0):
            return
        if not force and self._log(tp).compact:
            return  # closed segments change only when one closes: compact then, not on a timer
        self._retention_due[tp] = now + self._bus.retention.check_interval_s
        try:
            self._bus.enforce_retention(tp.topic, tp.partition)
        except OSError:
            log.exception("log retention failed", extra={"topic": tp.topic, "partition": tp.partition})

    def _log(self, tp: TopicPartition) -> PartitionLog:
        plog = self._logs.get(tp)
        if plog is None:
            settings = self._bus.retention.for_topic(tp.topic)
            plog = PartitionLog(self._bus.partition_dir(tp.topic, tp.partition), self._bus.fsync, settings)
            self._logs[tp] = plog
        return plog
