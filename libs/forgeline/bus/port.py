"""The bus port: a partitioned, durable, replayable log (Kafka's model).

Guarantees every adapter keeps (embedded disk log, Kafka via aiokafka):

- A topic has a fixed number of partitions. A record with a key always goes to the
  same partition (``partition_for(key, n)``); order is kept within a partition only.
- ``Producer.send`` returns only once the record is durable (fsync'd on local disk, or
  acknowledged by all in-sync replicas). If it raises, the record may or may not have
  been written: callers make that harmless with ids derived from the input.
- Offsets name the *next* record to read, as in Kafka: committing offset 10 for a
  partition means records 0..9 are done.
- Consumers belong to a group; committed offsets are per (group, topic, partition).
  Nothing commits automatically: a consumer commits after its sink has the data, which
  gives at-least-once delivery. After a crash the group resumes from its last commit.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class Record(NamedTuple):
    """One record read from the bus.

    A NamedTuple rather than a frozen dataclass: every consumer builds one per record, and
    a frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost ~4× more.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class OutgoingRecord(NamedTuple):
    """One record to append; the partition is derived from the key unless given.

    A NamedTuple for the same reason as Record: the gateway builds one per accepted event.
    """

    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None


# Room left in a produce request for the record batch's own framing.
RECORD_OVERHEAD_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What differs between adapters, as fields rather than hasattr checks."""

    name: str
    # Several consumers of one group share partitions (Kafka) or one owns them all (embedded).
    shared_groups: bool
    # How long a producer waits for an acknowledgement unless told otherwise (Kafka's
    # ``send_timeout_ms``); a client-facing caller takes the shorter of this and its own.
    send_timeout_s: float
    # The largest record (value, key and headers) the bus takes: Kafka refuses one above its
    # request size on every retry, so a producer facing clients refuses it first. The embedded
    # log keeps Kafka's default, so a studio moving to Kafka sees the same limit.
    max_record_bytes: int = 8 * 1024 * 1024 - RECORD_OVERHEAD_BYTES


# Called with the partitions a consumer is about to lose (see ``Consumer.on_revoke``).
RevokeHandler = Callable[[set["TopicPartition"]], Awaitable[None]]
# Called with the partitions a consumer has just been given (see ``Consumer.on_assign``).
AssignHandler = Callable[[set["TopicPartition"]], Awaitable[None]]


# How long operator commands (CLI, first-start bootstrap) wait for an acknowledgement: a
# cluster that is still starting takes seconds to accept its first writes.
ADMIN_SEND_TIMEOUT_S = 10.0


class BusUnavailable(Exception):
    """The bus could not take or serve records in time (retriable)."""


class DiskFull(BusUnavailable):
    """The bus's disk is (almost) out of space: nothing was acknowledged; retry later.

    The embedded bus raises it below its free-space threshold and on ENOSPC; the gateway
    answers 503 with a longer Retry-After than for a slow acknowledgement.
    """

    retry_after_s = 10


class Producer(Protocol):
    async def start(self) -> None: ...

    async def send(self, record: OutgoingRecord) -> None:
        """Append one record; return once it is durable (raises BusUnavailable on timeout)."""

    async def send_many(self, records: Sequence[OutgoingRecord]) -> None:
        """Append several records; return once all are durable. Not atomic across partitions."""

    async def ready(self) -> bool:
        """Whether the bus takes writes right now (used by /ready)."""

    async def stop(self) -> None: ...


class Consumer(Protocol):
    async def start(self) -> None: ...

    async def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Return up to ``max_records`` records from the assigned partitions.

        Waits at most ``timeout_s`` when nothing is available and then returns [].
        Records of one partition come in offset order.
        """

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit the next offset to read for each partition (durable before return)."""

    async def committed(self, tp: TopicPartition) -> int:
        """The committed offset of ``tp`` for this group (0 when none)."""

    async def end_offsets(self) -> dict[TopicPartition, int]:
        """The current end (next offset to be written) of every assigned partition."""

    def assignment(self) -> set[TopicPartition]: ...

    def on_revoke(self, handler: RevokeHandler) -> None:
        """Register ``handler``, awaited with the partitions this consumer is about to lose.

        It runs before the group hands them to another consumer, so the owner can flush
        what it buffered and commit it; offsets it does not commit are redelivered to the
        next owner. Adapters that never move partitions (embedded) never call it.
        """

    def on_assign(self, handler: AssignHandler) -> None:
        """Register ``handler``, awaited with the partitions this consumer has just been given.

        It runs once every previous owner has run its revoke handler and before ``poll``
        returns any record of those partitions: the place to (re)load per-partition state.
        Adapters whose assignment is complete when ``start`` returns (embedded) never call it.
        """

    async def stop(self) -> None: ...


class Bus(Protocol):
    capabilities: Capabilities

    def producer(self, send_timeout_s: float | None = None) -> Producer:
        """A producer; ``send_timeout_s`` overrides the adapter's default wait for an acknowledgement
        (operator commands wait longer than a client request)."""

    def consumer(self, group: str, topics: Sequence[str]) -> Consumer:
        """A consumer of ``topics`` in ``group``; it starts at the group's committed offsets."""

    def reader(self, topics: Sequence[str]) -> Consumer:
        """A consumer with no group: reads from the beginning, never commits (control topics)."""

    def partitions(self, topic: str) -> int: ...


def partition_for(key: bytes | None, partitions: int, fallback: int = 0) -> int:
    """Stable key → partition mapping (crc32; the same in every process and run)."""
    if key is None:
        return fallback % partitions
    return zlib.crc32(key) % partitions
