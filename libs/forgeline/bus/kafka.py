"""The Kafka bus: the port's guarantees on Apache Kafka through aiokafka.

Guarantees (those of ``forgeline.bus.port``):

- ``send``/``send_many`` return only once the broker acknowledged every record with
  ``acks="all"`` (all in-sync replicas). The producer is idempotent, so its internal
  retries never duplicate or reorder records within a partition.
- Keyed records go to ``partition_for(key, n)`` (crc32), computed here rather than by
  Kafka's murmur2 partitioner, so that a key lands in the same partition on both buses.
- Consumers never auto-commit; ``commit`` takes next offsets and returns once the group
  coordinator stored them. Consumers of one group share the partitions
  (``Capabilities.shared_groups``); before partitions move, the handler registered with
  ``on_revoke`` runs, so that the owner can flush and commit what it holds; after the
  group assigned them, the new owner's ``on_assign`` handler runs before it polls them.
- Topics are created on first use (``ensure_topics``): by every producer for the topics it
  writes and by every consumer for the topics it reads.

Failure modes:

- A send not acknowledged within ``send_timeout_ms`` raises BusUnavailable. The records
  stay queued in aiokafka and may still land later (ids derived from input make that
  harmless). Queued data is bounded: aiokafka blocks a send once a partition's batch is
  full and undelivered, and that wait is inside the same timeout.
- ``start`` raises BusUnavailable when no broker answers; once started, clients
  reconnect by themselves when the cluster returns.
- A commit that loses against a rebalance (the partitions went to another consumer) is
  dropped with a warning: the new owner re-reads those records, which is at-least-once.

Known limits:

- Raising the partition count of a keyed topic moves keys; ``ensure_topics`` never does it.
- ``Bus.partitions`` is synchronous: it answers from what provisioning saw, else the
  configured count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaConnectionError, KafkaError

from forgeline.bus.kafka_admin import ensure_topics
from forgeline.bus.kafka_options import KafkaOptions
from forgeline.bus.port import (
    RECORD_OVERHEAD_BYTES,
    AssignHandler,
    Bus,
    BusUnavailable,
    Capabilities,
    OutgoingRecord,
    Record,
    RevokeHandler,
    TopicPartition,
    partition_for,
)
from forgeline.bus.topics import FIXED_PARTITIONS, provisioned_topics

log = logging.getLogger(__name__)

_READY_CACHE_S = 1.0
_READY_TIMEOUT_S = 0.5
# Offset look-ups (lag reports) give up quickly instead of aiokafka's 40 s request timeout:
# a loop must not stall on them while the cluster is away.
_QUERY_TIMEOUT_S = 2.0


class KafkaBus:
    """A Bus on a Kafka cluster; clients are created per producer/consumer, started by their owner."""

    def __init__(
        self,
        options: KafkaOptions,
        default_partitions: int = 4,
        partitions: Mapping[str, int] | None = None,
    ) -> None:
        if default_partitions < 1:
            raise ValueError("partition counts must be at least 1")
        self.capabilities = Capabilities(
            name="kafka",
            shared_groups=True,
            send_timeout_s=options.send_timeout_ms / 1000,
            max_record_bytes=options.max_request_bytes - RECORD_OVERHEAD_BYTES,
        )
        self.options = options
        self.default_partitions = default_partitions
        self._configured = dict(FIXED_PARTITIONS if partitions is None else partitions)
        self._counts: dict[str, int] = {}
        self._ensuring: dict[str, asyncio.Future[dict[str, int]]] = {}

    @classmethod
    def from_url(cls, url: str, default_partitions: int = 4) -> KafkaBus:
        return cls(KafkaOptions.from_url(url), default_partitions)

    def producer(self, send_timeout_s: float | None = None) -> KafkaProducer:
        timeout = self.options.send_timeout_ms / 1000 if send_timeout_s is None else send_timeout_s
        return KafkaProducer(self, timeout)

    def consumer(self, group: str, topics: Sequence[str]) -> KafkaConsumer:
        return KafkaConsumer(self, topics, group)

    def reader(self, topics: Sequence[str]) -> KafkaConsumer:
        return KafkaConsumer(self, topics, None)

    def partitions(self, topic: str) -> int:
        """The partition count provisioning saw, else the count the topic would be created with."""
        return self._counts.get(topic) or self._configured.get(topic, self.default_partitions)

    def known_partitions(self, topic: str) -> int | None:
        return self._counts.get(topic)

    async def ensure_topics(self, topics: Sequence[str]) -> dict[str, int]:
        """Create missing topics (idempotent); return their partition counts.

        Concurrent calls for the same topic share one round trip to the cluster.
        """
        missing = [t for t in dict.fromkeys(topics) if t not in self._counts]
        if missing:
            key = ",".join(sorted(missing))
            pending = self._ensuring.get(key)
            if pending is None:
                pending = asyncio.ensure_future(
                    ensure_topics(self.options, missing, self.default_partitions, self._configured)
                )
                self._ensuring[key] = pending
                pending.add_done_callback(lambda _: self._ensuring.pop(key, None))
            self._counts.update(await asyncio.shield(pending))
        return {t: self._counts[t] for t in topics}


# --- producer ------------------------------------------------------------------------------


class KafkaProducer:
    """An idempotent aiokafka producer with acks=all, batched by linger and batch size.

    ``send_many`` queues every record first (so they share produce requests) and then
    waits for every acknowledgement; all within ``send_timeout_s``.
    """

    def __init__(self, bus: KafkaBus, send_timeout_s: float) -> None:
        self._bus = bus
        self._send_timeout_s = send_timeout_s
        # aiokafka binds a client to the running loop at construction: build it in start().
        self._producer: AIOKafkaProducer | None = None
        self._started = False
        self._round_robin = 0
        self._ready_at = 0.0
        self._ready = False
        self._ready_check: asyncio.Task[bool] | None = None

    async def start(self) -> None:
        """Connect and provision the topics this process writes; BusUnavailable when no broker answers."""
        if self._started:
            return
        options = self._bus.options
        self._producer = AIOKafkaProducer(
            bootstrap_servers=list(options.bootstrap_servers),
            acks="all",
            enable_idempotence=True,
            linger_ms=options.linger_ms,
            max_batch_size=options.batch_bytes,
            max_request_size=options.max_request_bytes,
            compression_type=options.compression_type,
            # Bounds aiokafka's own waits (buffer space, metadata); the send timeout is the
            # one callers see, and records keep being retried in the background until this.
            request_timeout_ms=max(int(self._send_timeout_s * 1000), 5000),
            retry_backoff_ms=50,
        )
        try:
            await self._producer.start()
            # Warm up: the pipeline's topics exist and their metadata is cached, so the first
            # send does not spend its (short) timeout on provisioning and a metadata round trip.
            topics = list(await self._bus.ensure_topics(provisioned_topics()))
            await self._producer.client.set_topics(topics)
        except (KafkaConnectionError, KafkaError, OSError, BusUnavailable) as err:
            await self._producer.stop()
            self._producer = None
            raise BusUnavailable(f"cannot reach Kafka: {err!r}") from err
        self._started = True

    async def stop(self) -> None:
        """Deliver what is queued (bounded by aiokafka's request timeout) and close."""
        if self._ready_check is not None:
            self._ready_check.cancel()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        self._started = False

    async def send(self, record: OutgoingRecord) -> None:
        await self.send_many([record])

    async def send_many(self, records: Sequence[OutgoingRecord]) -> None:
        """Return once every record is acknowledged by all in-sync replicas.

        Raises BusUnavailable when that does not happen within the send timeout or the
        broker refuses; some records may then be written. Not atomic across partitions.
        """
        producer = self._producer
        if producer is None:
            raise BusUnavailable("producer is not started")
        if not records:
            return
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await self._bus.ensure_topics([r.topic for r in records])
                acks: list[asyncio.Future[Any]] = []
                for record in records:
                    acks.append(
                        await producer.send(
                            record.topic,
                            record.value,
                            key=record.key,
                            partition=self._partition(record),
                            headers=list(record.headers) or None,
                        )
                    )
                await asyncio.gather(*acks)
        except TimeoutError as err:
            raise BusUnavailable(f"records not acknowledged within {self._send_timeout_s}s") from err
        except KafkaError as err:
            raise BusUnavailable(f"Kafka refused the records: {err!r}") from err

    def _partition(self, record: OutgoingRecord) -> int:
        count = self._bus.partitions(record.topic)
        if record.partition is not None:
            if not 0 <= record.partition < count:
                raise ValueError(f"partition {record.partition} out of range for {record.topic!r} ({count})")
            return record.partition
        partition = partition_for(record.key, count, fallback=self._round_robin)
        if record.key is None:
            self._round_robin += 1
        return partition

    async def ready(self) -> bool:
        """Whether a broker answered a metadata request recently (cached ~1 s, 0.5 s timeout)."""
        if not self._started:
            return False
        now = time.monotonic()
        if now - self._ready_at < _READY_CACHE_S:
            return self._ready
        if self._ready_check is None or self._ready_check.done():
            self._ready_check = asyncio.create_task(self._check_ready())
        # Concurrent /ready calls share one check; shield it from their cancellation.
        self._ready = await asyncio.shield(self._ready_check)
        self._ready_at = time.monotonic()
        return self._ready

    async def _check_ready(self) -> bool:
        if self._producer is None:
            return False
        try:
            async with asyncio.timeout(_READY_TIMEOUT_S):
                metadata = await self._producer.client.fetch_all_metadata()
        except (TimeoutError, KafkaError, OSError):
            return False
        return bool(metadata.brokers())


# --- consumer ------------------------------------------------------------------------------


def _ours(tp: KafkaTopicPartition) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


def _theirs(tp: TopicPartition) -> KafkaTopicPartition:
    return KafkaTopicPartition(tp.topic, tp.partition)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka's ABC is untyped
    """Hands revoked partitions to the owner's handler before the group reassigns them."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[KafkaTopicPartition]) -> None:
        await self._consumer._revoked({_ours(tp) for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[KafkaTopicPartition]) -> None:
        await self._consumer._assigned({_ours(tp) for tp in assigned})


class KafkaConsumer:
    """A group consumer (``group`` given) or a group-less reader from offset 0.

    A group consumer subscribes to its topics; the group coordinator assigns partitions,
    and positions start at the group's committed offsets (the earliest offset when none).
    A reader is assigned every partition of its topics and starts at the beginning; its
    ``commit`` does nothing.

    Memory is bounded by the fetch limits: at most ``fetch_max_bytes`` per fetch and
    ``partition_fetch_bytes`` per partition are buffered ahead of ``poll``.
    """

    def __init__(self, bus: KafkaBus, topics: Sequence[str], group: str | None) -> None:
        if isinstance(topics, str):
            raise TypeError("topics must be a sequence of topic names, not a string")
        self._bus = bus
        self._topics = list(dict.fromkeys(topics))
        self.group = group
        self._on_revoke: RevokeHandler | None = None
        self._on_assign: AssignHandler | None = None
        # Built in start(): aiokafka binds a client to the running loop at construction.
        self._client: AIOKafkaConsumer | None = None
        self._started = False

    def on_revoke(self, handler: RevokeHandler) -> None:
        self._on_revoke = handler

    def on_assign(self, handler: AssignHandler) -> None:
        self._on_assign = handler

    async def _assigned(self, partitions: set[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"group": self.group, "partitions": sorted(map(str, partitions))})
        if self._on_assign is not None:
            try:
                await self._on_assign(partitions)
            except Exception:
                log.exception("assign handler failed")
                raise

    async def _revoked(self, partitions: set[TopicPartition]) -> None:
        log.info("partitions revoked", extra={"group": self.group, "partitions": sorted(map(str, partitions))})
        if self._on_revoke is not None and partitions:
            # aiokafka logs and swallows a listener's exception; log ours with context too.
            try:
                await self._on_revoke(partitions)
            except Exception:
                log.exception("revoke handler failed; uncommitted records will be redelivered")
                raise

    async def start(self) -> None:
        """Provision the topics, connect, and subscribe (group) or assign everything (reader)."""
        if self._started:
            return
        counts = await self._bus.ensure_topics(self._topics)
        options = self._bus.options
        self._client = AIOKafkaConsumer(
            bootstrap_servers=list(options.bootstrap_servers),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=options.fetch_max_bytes,
            max_partition_fetch_bytes=options.partition_fetch_bytes,
            session_timeout_ms=options.session_timeout_ms,
            heartbeat_interval_ms=max(options.session_timeout_ms // 3, 100),
            # Only committed data of transactional producers (none today; cheap insurance).
            isolation_level="read_committed",
        )
        try:
            await self._client.start()
        except (KafkaConnectionError, KafkaError, OSError) as err:
            await self._client.stop()
            self._client = None
            raise BusUnavailable(f"cannot reach Kafka: {err!r}") from err
        if self.group is None:
            tps = [KafkaTopicPartition(t, p) for t in self._topics for p in range(counts[t])]
            self._consumer.assign(tps)
            await self._consumer.seek_to_beginning(*tps)
        else:
            self._consumer.subscribe(self._topics, listener=_Listener(self))
        self._started = True

    async def stop(self) -> None:
        """Leave the group (partitions move at once) and close. Uncommitted records are redelivered."""
        if self._client is not None:
            await self._client.stop()
            self._client = None
        self._started = False

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        if self._client is None:
            raise RuntimeError("consumer is not started")
        return self._client

    async def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if not self._started:
            raise RuntimeError("consumer is not started")
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        batches = await self._consumer.getmany(timeout_ms=max(int(timeout_s * 1000), 0), max_records=max_records)
        out: list[Record] = []
        for tp, messages in batches.items():
            for m in messages:
                out.append(
                    Record(
                        topic=tp.topic,
                        partition=tp.partition,
                        offset=m.offset,
                        key=m.key,
                        value=m.value if m.value is not None else b"",
                        timestamp_ms=m.timestamp,
                        headers=tuple((name, bytes(value)) for name, value in m.headers),
                    )
                )
        return out

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit next offsets of the partitions still assigned (a no-op for a reader).

        Offsets of partitions this consumer no longer owns are dropped: their new owner
        re-reads from the group's last commit.
        """
        if self.group is None or not offsets:
            return
        if not self._started:
            raise RuntimeError("consumer is not started")
        owned = self._consumer.assignment()
        wanted = {_theirs(TopicPartition(*tp)): offset for tp, offset in offsets.items()}
        keep = {tp: offset for tp, offset in wanted.items() if tp in owned}
        if len(keep) != len(wanted):
            log.warning(
                "not committing partitions that were revoked",
                extra={"group": self.group, "partitions": sorted(f"{t}/{p}" for t, p in set(wanted) - set(keep))},
            )
        if not keep:
            return
        try:
            await self._consumer.commit(keep)
        except (CommitFailedError, IllegalStateError) as err:
            log.warning("commit lost to a rebalance; records will be redelivered", extra={"error": repr(err)})
        except KafkaError as err:
            raise BusUnavailable(f"commit failed: {err!r}") from err

    async def committed(self, tp: TopicPartition) -> int:
        if self.group is None:
            return 0
        try:
            async with asyncio.timeout(_QUERY_TIMEOUT_S):
                offset = await self._consumer.committed(_theirs(tp))
        except (KafkaError, TimeoutError) as err:
            raise BusUnavailable(f"cannot read committed offset: {err!r}") from err
        return int(offset) if offset is not None else 0

    async def end_offsets(self) -> dict[TopicPartition, int]:
        if not self._started:
            raise RuntimeError("consumer is not started")
        assigned = list(self._consumer.assignment())
        if not assigned:
            return {}
        try:
            async with asyncio.timeout(_QUERY_TIMEOUT_S):
                ends = await self._consumer.end_offsets(assigned)
        except (KafkaError, TimeoutError) as err:
            raise BusUnavailable(f"cannot read end offsets: {err!r}") from err
        return {_ours(tp): int(end) for tp, end in ends.items()}

    def assignment(self) -> set[TopicPartition]:
        if not self._started:
            return set()
        return {_ours(tp) for tp in self._consumer.assignment()}


if TYPE_CHECKING:
    # mypy proves here that the adapter satisfies the port.
    _PORT_CHECK: Bus = KafkaBus(KafkaOptions(("localhost:9092",)))
