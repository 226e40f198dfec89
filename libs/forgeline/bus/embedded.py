"""The embedded bus: a durable, partitioned log in local files with Kafka's semantics.

Layout under ``root``::

    topics/<topic>/meta.json                                 {"partitions": N}, fixed at creation
    topics/<topic>/create.lock                               serialises topic creation across processes
    topics/<topic>/<partition>/00000000000000000000.log      the records (named by base offset)
    topics/<topic>/<partition>/append.lock                   serialises appends across processes
    groups/<group>/owner.lock                                held by the group's one consumer
    groups/<group>/<topic>.<partition>.offset                {"offset": N, "position": BYTE_POS}

Directories are created 0700 and files 0600 (``forgeline.private_fs``): the log is player data.

Guarantees (those of ``forgeline.bus.port``):

- ``send`` returns once the record is fsync'd. Appends from any number of processes are
  serialised by an ``flock`` on the partition's lock file, so offsets are unique and
  consecutive within a partition. Concurrent sends are group-committed: one write and one
  fsync per partition for everything pending.
- A writer killed mid-append (kill -9, crash) leaves at most an incomplete record at the
  tail. Readers treat it as "not yet available"; the next append truncates it. It was never
  acknowledged, because acknowledgement comes only after fsync.
- Commits are durable before ``commit`` returns (temp file, fsync, rename, fsync of the
  directory). A restarted consumer resumes at its last commit: at-least-once delivery.

Known limits:

- One segment file per partition: no segment rolling and no retention yet, so logs grow
  without bound. A producer scans each partition it first writes (and a consumer scans
  from its start position for ``end_offsets``) once, which is linear in the log size.
- No compaction. Readers of compacted topics (``control.*``) keep the last value per key
  themselves.
- One consumer per group (``Capabilities.shared_groups`` is False); a second one raises
  RuntimeError. Partitions are not shared between consumers.
- Timestamps are the append time (Kafka's LogAppendTime); ``OutgoingRecord`` has none.
- Consumers may read records that are written but not yet fsync'd (as another process's
  page cache makes them visible). If the machine then loses power before the fsync, a
  committed offset can point past the end of the recovered log; the consumer then resumes
  at the log's end, which loses nothing that was acknowledged.
- A corrupt record in the middle of a log (bit rot) stops consumers at that point and
  makes appends to that partition fail with BusUnavailable rather than truncate
  acknowledged data; it needs an operator.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import fcntl
import json
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from forgeline.bus.port import (
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
from forgeline.private_fs import FILE_MODE, make_private_dirs, private_dir

log = logging.getLogger(__name__)

# --- record framing ------------------------------------------------------------------------
#
# magic (u8) | crc32 (u32) | offset (u64) | timestamp_ms (u64) | key length (i32, -1 = None)
# | value length (u32) | headers length (u32) | key | value | headers
#
# The crc covers every byte after the crc field, so a record is valid only when it is
# complete and unchanged. Headers are a sequence of (u32 name length, utf-8 name, u32 value
# length, value); their total length is in the header, so no count is needed.

_MAGIC: Final = 1
_PREFIX: Final = struct.Struct("<BI")  # magic, crc32
_FIELDS: Final = struct.Struct("<QQiII")  # offset, timestamp_ms, key, value and headers lengths
_HEADER: Final = struct.Struct("<BIQQiII")  # both, for parsing
_CRC_END: Final = _PREFIX.size
_U32: Final = struct.Struct("<I")
_FIRST_SEGMENT: Final = f"{0:020d}.log"
# Reads ahead for consumers are small (polls come often); scans read larger chunks.
_READ_CHUNK: Final = 64 << 10
_SCAN_CHUNK: Final = 1 << 20
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def _encode_headers(headers: Sequence[tuple[str, bytes]]) -> bytes:
    parts: list[bytes] = []
    for name, value in headers:
        raw = name.encode()
        parts += (_U32.pack(len(raw)), raw, _U32.pack(len(value)), bytes(value))
    return b"".join(parts)


def _decode_headers(raw: bytes) -> tuple[tuple[str, bytes], ...]:
    out: list[tuple[str, bytes]] = []
    at = 0
    while at < len(raw):
        (name_len,) = _U32.unpack_from(raw, at)
        name = raw[at + 4 : at + 4 + name_len].decode()
        at += 4 + name_len
        (value_len,) = _U32.unpack_from(raw, at)
        out.append((name, raw[at + 4 : at + 4 + value_len]))
        at += 4 + value_len
    if at != len(raw):
        raise ValueError("malformed record headers")
    return tuple(out)


def _encode_record(offset: int, timestamp_ms: int, record: OutgoingRecord) -> bytes:
    key = record.key
    headers = _encode_headers(record.headers)
    key_len = -1 if key is None else len(key)
    fields = _FIELDS.pack(offset, timestamp_ms, key_len, len(record.value), len(headers))
    body = b"".join((fields, key or b"", record.value, headers))
    return _PREFIX.pack(_MAGIC, zlib.crc32(body)) + body


class _Frame:
    """One valid record found in a log file (decoded on demand)."""

    __slots__ = ("position", "size", "offset", "timestamp_ms", "_buf", "_at", "_key_len", "_value_len")

    def __init__(
        self, buf: bytes, at: int, position: int, size: int, header: tuple[int, int, int, int, int, int, int]
    ) -> None:
        _, _, self.offset, self.timestamp_ms, self._key_len, self._value_len, _ = header
        self._buf, self._at = buf, at
        self.position, self.size = position, size

    @property
    def end(self) -> int:
        return self.position + self.size

    def decode(self, topic: str, partition: int) -> Record:
        at = self._at + _HEADER.size
        key: bytes | None = None
        if self._key_len >= 0:
            key = self._buf[at : at + self._key_len]
            at += self._key_len
        value = self._buf[at : at + self._value_len]
        headers = _decode_headers(self._buf[at + self._value_len : self._at + self.size])
        return Record(topic, partition, self.offset, key, value, self.timestamp_ms, headers)


class _Scanner:
    """Walks the valid records of a log file from a byte position (which must be a boundary).

    Stops at the end of the file as it was when the scanner was made, or at the first record
    that is incomplete or fails its crc. ``position`` is then the end of the valid prefix and
    ``stopped`` says why: "end", "short" (incomplete: a write in progress or a torn tail) or
    "corrupt" (a complete-looking record with a bad magic, lengths or crc).
    """

    def __init__(self, fd: int, position: int, chunk: int = _SCAN_CHUNK) -> None:
        self._fd = fd
        self._chunk = chunk
        self.size = os.fstat(fd).st_size
        self.position = position
        self.stopped: Literal["end", "short", "corrupt"] | None = None
        # For "corrupt": the size the bad record claims, when its header could be parsed.
        self.corrupt_size: int | None = None
        self._buf = b""
        self._buf_start = position

    def _have(self, count: int) -> bool:
        """Ensure ``count`` bytes from ``position`` are buffered; False if the file is shorter."""
        rel = self.position - self._buf_start
        if rel + count <= len(self._buf):
            return True
        # Never ask past the end seen at the start: an idle poll then reads nothing.
        want = max(count, min(self._chunk, self.size - self.position))
        self._buf = os.pread(self._fd, want, self.position)
        self._buf_start = self.position
        # Shorter than asked: the file ended (or was truncated by an appender meanwhile).
        return len(self._buf) >= count

    def next(self) -> _Frame | None:
        if self.stopped is not None:
            return None
        remaining = self.size - self.position
        if remaining <= 0:
            self.stopped = "end"
            return None
        if remaining < _HEADER.size or not self._have(_HEADER.size):
            self.stopped = "short"
            return None
        rel = self.position - self._buf_start
        header = _HEADER.unpack_from(self._buf, rel)
        magic, crc, _, _, key_len, value_len, headers_len = header
        if key_len < -1:
            self.stopped = "corrupt"
            return None
        size = _HEADER.size + max(key_len, 0) + value_len + headers_len
        if magic != _MAGIC:
            self.stopped = "corrupt"
            self.corrupt_size = size if size <= remaining else None
            return None
        # Compare with the file size before reading, so a garbage length never allocates.
        if size > remaining or not self._have(size):
            self.stopped = "short"
            return None
        rel = self.position - self._buf_start
        if zlib.crc32(memoryview(self._buf)[rel + _CRC_END : rel + size]) != crc:
            self.stopped = "corrupt"
            self.corrupt_size = size
            return None
        frame = _Frame(self._buf, rel, self.position, size, header)
        self.position += size
        return frame


class _CorruptLog(OSError):
    """A record in the middle of a log is corrupt; truncating would drop acknowledged data."""


@contextmanager
def _flocked(fd: int, operation: int = fcntl.LOCK_EX) -> Iterator[None]:
    fcntl.flock(fd, operation)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_json_atomic(path: Path, doc: object, *, fsync_dir: bool = True) -> None:
    """Replace ``path`` with ``doc`` so a crash leaves either the old or the new file."""
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        _write_all(fd, json.dumps(doc).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if fsync_dir:
        _fsync_dir(path.parent)


def _check_name(kind: str, name: str) -> None:
    # Names become directory and file names; refuse anything that could escape ``root``.
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid {kind} name {name!r}: use letters, digits, '.', '_' and '-'")


# --- one partition on disk -----------------------------------------------------------------


class _PartitionLog:
    """The file of one partition, and what one producer knows about its tail.

    ``append`` is not thread-safe for one instance (the producer's flusher never runs two
    appends to the same partition at once); different instances, in any process, are
    serialised by the flock.
    """

    def __init__(self, directory: Path, fsync: bool) -> None:
        self.path = directory / _FIRST_SEGMENT
        self.lock_path = directory / "append.lock"
        self._fsync = fsync
        self._fd: int | None = None
        self._lock_fd: int | None = None
        # The end of the valid records as this producer last saw it: a record boundary.
        self._end = 0
        self._next_offset = 0
        # The file size when last seen; -1 forces a scan (first append, or after a failure).
        self._known_size = -1

    def append(self, records: Sequence[OutgoingRecord]) -> int:
        """Append ``records`` durably under the partition lock; return the first offset.

        Raises OSError when the disk fails; the records may then be partly written, and the
        next append scans and repairs the tail.
        """
        if self._fd is None or self._lock_fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        fd = self._fd
        with _flocked(self._lock_fd):
            size = os.fstat(fd).st_size
            if size != self._known_size:
                # Another process appended (or this is our first append): find the next offset.
                self._recover(size)
            first = self._next_offset
            timestamp_ms = time.time_ns() // 1_000_000
            data = b"".join(_encode_record(first + i, timestamp_ms, r) for i, r in enumerate(records))
            self._known_size = -1  # until the write and fsync succeed, the tail is unknown
            _write_all(fd, data)
            if self._fsync:
                os.fsync(fd)
            self._end += len(data)
            self._next_offset += len(records)
            self._known_size = self._end
        return first

    def _recover(self, size: int) -> None:
        """Scan from the last known boundary to the end; truncate a torn tail (lock held)."""
        assert self._fd is not None
        if size < self._end:
            # Shrunk below a boundary we saw: not something appenders do. Start over.
            self._end, self._next_offset = 0, 0
        scanner = _Scanner(self._fd, self._end)
        next_offset = self._next_offset
        while (frame := scanner.next()) is not None:
            if frame.offset != next_offset:
                raise _CorruptLog(errno.EIO, f"offset {frame.offset} where {next_offset} was expected", str(self.path))
            next_offset += 1
        if scanner.stopped == "corrupt" and scanner.corrupt_size is not None:
            follower = _Scanner(self._fd, scanner.position + scanner.corrupt_size)
            if follower.position < follower.size and follower.next() is not None:
                # Valid records follow the bad one: this is damage, not a torn tail.
                raise _CorruptLog(errno.EIO, f"corrupt record at byte {scanner.position}", str(self.path))
        if scanner.position < scanner.size:
            # We hold the lock, so no write is in progress: the tail is from a writer that died
            # before its fsync, and nobody was told it was written.
            log.warning(
                "truncating torn tail of partition log",
                extra={
                    "path": str(self.path),
                    "at": scanner.position,
                    "dropped_bytes": scanner.size - scanner.position,
                },
            )
            os.ftruncate(self._fd, scanner.position)
        self._end, self._next_offset = scanner.position, next_offset
        self._known_size = self._end

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._lock_fd = None
        self._known_size = -1


def _locate(fd: int, offset: int) -> tuple[int, int]:
    """(byte position, offset) of the record ``offset``, scanning from the start.

    When the log ends before ``offset`` this is the end of its valid records and its end offset.
    """
    scanner = _Scanner(fd, 0)
    next_offset = 0
    while (frame := scanner.next()) is not None:
        if frame.offset >= offset:
            return frame.position, frame.offset
        next_offset = frame.offset + 1
    return scanner.position, next_offset


# --- the bus -------------------------------------------------------------------------------


class EmbeddedBus:
    """A Bus on local disk, shared by the processes of one machine through ``root``.

    ``partitions`` gives the partition count of topics by name (others get
    ``default_partitions``); a topic's count is fixed when it is first created and read
    from its meta.json afterwards, whatever the arguments say. ``fsync=False`` gives up
    durability for speed (tests, throwaway runs).
    """

    def __init__(
        self,
        root: Path,
        default_partitions: int = 4,
        partitions: Mapping[str, int] | None = None,
        fsync: bool = True,
        poll_interval_s: float = 0.01,
        send_timeout_s: float = 5.0,
    ) -> None:
        if default_partitions < 1 or any(n < 1 for n in (partitions or {}).values()):
            raise ValueError("partition counts must be at least 1")
        self.capabilities = Capabilities(name="embedded", shared_groups=False, send_timeout_s=send_timeout_s)
        self.root = Path(root)
        self.default_partitions = default_partitions
        self.fsync = fsync
        self.poll_interval_s = poll_interval_s
        self.send_timeout_s = send_timeout_s
        self._configured = dict(partitions or {})
        self._counts: dict[str, int] = {}
        self._root_ready = False

    def prepare_root(self) -> None:
        """Create the root 0700, or tighten one an older version made 0755 (once per instance):
        the log holds every event as sent, so nobody but the owner may read below it."""
        if not self._root_ready:
            private_dir(self.root)
            self._root_ready = True

    def producer(self, send_timeout_s: float | None = None) -> EmbeddedProducer:
        return EmbeddedProducer(self, self.send_timeout_s if send_timeout_s is None else send_timeout_s)

    def consumer(self, group: str, topics: Sequence[str]) -> EmbeddedConsumer:
        _check_name("group", group)
        return EmbeddedConsumer(self, topics, group)

    def reader(self, topics: Sequence[str]) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, topics, None)

    def partitions(self, topic: str) -> int:
        """The partition count of ``topic``, creating the topic if it does not exist yet."""
        return self.ensure_topic(topic)

    # -- paths and topic creation (blocking; async callers run them in a thread) --

    def topic_dir(self, topic: str) -> Path:
        return self.root / "topics" / topic

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.topic_dir(topic) / str(partition)

    def group_dir(self, group: str) -> Path:
        return self.root / "groups" / group

    def known_partitions(self, topic: str) -> int | None:
        """The cached partition count, without touching the disk (None when not known yet)."""
        return self._counts.get(topic)

    def ensure_topic(self, topic: str) -> int:
        """Create ``topic`` if needed and return its partition count (blocking).

        Safe against other processes creating the same topic at once: creation happens
        under an flock and meta.json, written last and atomically, is what everyone reads.
        """
        cached = self._counts.get(topic)
        if cached is not None:
            return cached
        _check_name("topic", topic)
        directory = self.topic_dir(topic)
        meta = directory / "meta.json"
        count = self._read_meta(meta)
        if count is None:
            self.prepare_root()
            make_private_dirs(directory)
            lock_fd = os.open(directory / "create.lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
            try:
                with _flocked(lock_fd):
                    count = self._read_meta(meta)  # another process may have won the race
                    if count is None:
                        count = self._create(topic)
            finally:
                os.close(lock_fd)
        wanted = self._configured.get(topic)
        if wanted is not None and wanted != count:
            log.warning(
                "topic exists with a different partition count; keeping it",
                extra={"topic": topic, "partitions": count, "configured": wanted},
            )
        self._counts[topic] = count
        return count

    @staticmethod
    def _read_meta(meta: Path) -> int | None:
        try:
            doc = json.loads(meta.read_bytes())
        except FileNotFoundError:
            return None
        count = doc.get("partitions") if isinstance(doc, dict) else None
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"bad topic metadata in {meta}: {doc!r}")
        return count

    def _create(self, topic: str) -> int:
        count = self._configured.get(topic, self.default_partitions)
        directory = self.topic_dir(topic)
        for partition in range(count):
            pdir = self.partition_dir(topic, partition)
            make_private_dirs(pdir)
            # Readers open the log before any producer writes: create it empty now.
            os.close(os.open(pdir / _FIRST_SEGMENT, os.O_WRONLY | os.O_CREAT, FILE_MODE))
            if self.fsync:
                _fsync_dir(pdir)
        _write_json_atomic(directory / "meta.json", {"partitions": count}, fsync_dir=self.fsync)
        if self.fsync:
            _fsync_dir(directory.parent)
            _fsync_dir(directory.parent.parent)
        log.info("created topic", extra={"topic": topic, "partitions": count})
        return count


# --- producer ------------------------------------------------------------------------------


@dataclass(eq=False)
class _SendRequest:
    """One send/send_many call waiting for its records to be durable."""

    items: list[tuple[TopicPartition, OutgoingRecord]]
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

    def __init__(self, bus: EmbeddedBus, send_timeout_s: float = 5.0) -> None:
        self._bus = bus
        self._send_timeout_s = send_timeout_s
        self._logs: dict[TopicPartition, _PartitionLog] = {}
        self._pending: list[_SendRequest] = []
        self._wakeup = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._creating: dict[str, asyncio.Future[int]] = {}
        self._round_robin = 0
        self._closed = False

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
        try:
            async with asyncio.timeout(self._send_timeout_s):
                # Partition counts once per topic (a batch is usually one topic), then place
                # every record without a coroutine each.
                counts = {topic: await self._partition_count(topic) for topic in {r.topic for r in records}}
                items = [(self._place(r, counts[r.topic]), r) for r in records]
                if self._closed:  # stopped while the topic was being created
                    raise BusUnavailable("producer is stopped")
                request = _SendRequest(items, asyncio.get_running_loop().create_future())
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
        return not self._closed and root.is_dir() and os.access(root, os.W_OK | os.X_OK)

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

    def _place(self, record: OutgoingRecord, count: int) -> TopicPartition:
        if record.partition is not None:
            if not 0 <= record.partition < count:
                raise ValueError(f"partition {record.partition} out of range for {record.topic!r} ({count})")
            return TopicPartition(record.topic, record.partition)
        partition = partition_for(record.key, count, fallback=self._round_robin)
        if record.key is None:
            self._round_robin += 1
        return TopicPartition(record.topic, partition)

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
                await self._wakeup.wait()
                continue
            batch, self._pending = self._pending, []
            await self._flush([r for r in batch if not r.future.done()])

    async def _flush(self, batch: list[_SendRequest]) -> None:
        by_partition: dict[TopicPartition, list[OutgoingRecord]] = collections.defaultdict(list)
        for request in batch:
            for tp, record in request.items:
                by_partition[tp].append(record)
        tps = list(by_partition)
        # Partitions have separate files and locks: write them in parallel threads.
        results = await asyncio.gather(
            *(asyncio.to_thread(self._log(tp).append, by_partition[tp]) for tp in tps),
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
            error = next((failures[tp] for tp, _ in request.items if tp in failures), None)
            if error is None:
                request.future.set_result(None)
            elif isinstance(error, OSError):
                unavailable = BusUnavailable(f"embedded bus write failed: {error}")
                unavailable.__cause__ = error
                request.future.set_exception(unavailable)
            else:
                request.future.set_exception(error)

    def _log(self, tp: TopicPartition) -> _PartitionLog:
        plog = self._logs.get(tp)
        if plog is None:
            plog = _PartitionLog(self._bus.partition_dir(tp.topic, tp.partition), self._bus.fsync)
            self._logs[tp] = plog
        return plog


# --- consumer ------------------------------------------------------------------------------


@dataclass(eq=False)
class _Assigned:
    """A consumer's state for one partition."""

    tp: TopicPartition
    fd: int
    # The position (Kafka's sense): the next record poll returns, as offset and byte position.
    offset: int = 0
    position: int = 0
    # Records read but not returned yet, each with the byte position after it.
    ahead: collections.deque[tuple[Record, int]] = field(default_factory=collections.deque)
    ahead_offset: int = 0
    ahead_position: int = 0
    # next offset -> byte position, for returned records that are not committed yet.
    returned: dict[int, int] = field(default_factory=dict)
    committed: int = 0
    committed_position: int = 0
    # A valid boundary at or before the end, so end_offsets scans only what is new.
    end_offset: int = 0
    end_position: int = 0


class EmbeddedConsumer:
    """Reads every partition of its topics; a group consumer if ``group`` is given, else a reader.

    A group consumer holds ``groups/<group>/owner.lock`` from start to stop (a second
    consumer of the group, in any process, gets RuntimeError), starts at the committed
    offsets and commits durably. A reader starts at offset 0 and its commit does nothing.

    ``poll`` returns only complete, crc-valid records; an incomplete tail (a write in
    progress or a torn write) is "not yet available", never an error.
    """

    def __init__(self, bus: EmbeddedBus, topics: Sequence[str], group: str | None) -> None:
        if isinstance(topics, str):
            raise TypeError("topics must be a sequence of topic names, not a string")
        self._bus = bus
        self._topics = list(dict.fromkeys(topics))
        self._group = group
        self._owner_fd: int | None = None
        self._parts: dict[TopicPartition, _Assigned] = {}
        self._order: list[_Assigned] = []
        self._next_first = 0  # rotates which partition poll serves first

    # -- lifecycle --

    async def start(self) -> None:
        """Take the group's ownership, create missing topics and open every partition.

        Raises RuntimeError if another consumer of the group is running.
        """
        if self._order:
            return
        if self._group is not None:
            self._take_ownership(self._group)
        try:
            self._parts = await asyncio.to_thread(self._open_all)
        except BaseException:
            self._release()
            raise
        self._order = list(self._parts.values())

    async def stop(self) -> None:
        """Close the files and release the group. Uncommitted records will be redelivered."""
        self._release()

    def _take_ownership(self, group: str) -> None:
        directory = self._bus.group_dir(group)
        self._bus.prepare_root()
        make_private_dirs(directory)
        path = directory / "owner.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(
                f"consumer group {group!r} already has a running consumer (the embedded bus allows "
                f"one consumer per group; lock {path} is held)"
            ) from None
        self._owner_fd = fd

    def _release(self) -> None:
        for part in self._parts.values():
            os.close(part.fd)
        self._parts, self._order = {}, []
        if self._owner_fd is not None:
            os.close(self._owner_fd)  # closing the file releases the flock
            self._owner_fd = None

    def _open_all(self) -> dict[TopicPartition, _Assigned]:
        parts: dict[TopicPartition, _Assigned] = {}
        try:
            for topic in self._topics:
                for partition in range(self._bus.ensure_topic(topic)):
                    tp = TopicPartition(topic, partition)
                    path = self._bus.partition_dir(topic, partition) / _FIRST_SEGMENT
                    part = _Assigned(tp, os.open(path, os.O_RDONLY | os.O_CREAT, FILE_MODE))
                    parts[tp] = part
                    offset, position = self._load_commit(tp)
                    part.committed, part.committed_position = offset, position
                    self._seek(part, offset, position)
        except BaseException:
            for part in parts.values():
                os.close(part.fd)
            raise
        return parts

    def _offset_path(self, tp: TopicPartition) -> Path:
        assert self._group is not None
        return self._bus.group_dir(self._group) / f"{tp.topic}.{tp.partition}.offset"

    def _load_commit(self, tp: TopicPartition) -> tuple[int, int]:
        if self._group is None:
            return 0, 0
        try:
            doc = json.loads(self._offset_path(tp).read_bytes())
        except FileNotFoundError:
            return 0, 0
        return int(doc["offset"]), int(doc["position"])

    def _seek(self, part: _Assigned, offset: int, position: int) -> None:
        """Position ``part`` at ``offset``, trusting ``position`` only once it checks out."""
        scanner = _Scanner(part.fd, position)
        frame = scanner.next() if position <= scanner.size else None
        if frame is not None and frame.offset == offset:
            pass  # the record at the committed position is the one expected
        elif frame is None and (position == scanner.size or (offset, position) == (0, 0)):
            # Caught up at the end of the log: nothing to check against yet. poll checks the
            # offset of the first record that appears there and rescans if it is wrong.
            pass
        else:
            located, located_offset = _locate(part.fd, offset)
            if located_offset != offset:
                log.warning(
                    "committed offset is past the end of the log; resuming at the end",
                    extra={"topic": part.tp.topic, "partition": part.tp.partition, "committed": offset},
                )
            offset, position = located_offset, located
        part.offset = part.ahead_offset = part.end_offset = offset
        part.position = part.ahead_position = part.end_position = position
        part.ahead.clear()

    # -- reading --

    async def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` records, fairly across partitions, in offset order per partition.

        Waits up to ``timeout_s`` (in ``poll_interval_s`` sleeps) when none are available,
        then returns []. The position advances past what is returned.
        """
        if not self._order:
            raise RuntimeError("consumer is not started")
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout_s, 0.0)
        while True:
            records = self._take(max_records)
            remaining = deadline - loop.time()
            if records or remaining <= 0:
                return records
            await asyncio.sleep(min(self._bus.poll_interval_s, remaining))

    def _take(self, max_records: int) -> list[Record]:
        for part in self._order:
            if len(part.ahead) < max_records:
                self._read_ahead(part, max_records - len(part.ahead))
        out: list[Record] = []
        count = len(self._order)
        first = self._next_first % count
        self._next_first += 1
        order = self._order[first:] + self._order[:first]
        track = self._group is not None
        while len(out) < max_records:
            progressed = False
            for part in order:
                if not part.ahead:
                    continue
                record, after = part.ahead.popleft()
                out.append(record)
                part.offset, part.position = record.offset + 1, after
                if track:
                    part.returned[part.offset] = after
                progressed = True
                if len(out) == max_records:
                    break
            if not progressed:
                break
        return out

    def _read_ahead(self, part: _Assigned, limit: int) -> None:
        scanner = _Scanner(part.fd, part.ahead_position, _READ_CHUNK)
        topic, partition = part.tp
        while limit > 0 and (frame := scanner.next()) is not None:
            if frame.offset != part.ahead_offset:
                self._resync(part, frame.offset)
                return
            part.ahead.append((frame.decode(topic, partition), frame.end))
            part.ahead_offset, part.ahead_position = frame.offset + 1, frame.end
            limit -= 1

    def _resync(self, part: _Assigned, found: int) -> None:
        # The byte position did not hold the expected offset (a stale commit position);
        # find the offset by scanning from the start. Rare: at most once after a start.
        log.warning(
            "record offset does not match the read position; rescanning the partition",
            extra={
                "topic": part.tp.topic,
                "partition": part.tp.partition,
                "expected": part.ahead_offset,
                "found": found,
            },
        )
        position, offset = _locate(part.fd, part.ahead_offset)
        if not part.ahead:
            part.offset, part.position = offset, position
        part.ahead_offset, part.ahead_position = offset, position

    # -- offsets --

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Durably commit next-offsets (a no-op for a reader).

        Raises ValueError for a partition that is not assigned or an offset past the end.
        """
        if self._group is None:
            return
        if not self._order:
            raise RuntimeError("consumer is not started")
        writes: list[tuple[_Assigned, int, int]] = []
        for tp, offset in offsets.items():
            part = self._parts.get(TopicPartition(*tp))
            if part is None:
                raise ValueError(f"{tp} is not assigned to this consumer")
            if offset < 0:
                raise ValueError(f"cannot commit negative offset {offset} for {tp}")
            if offset == part.committed:
                continue
            position = part.returned.get(offset)
            if position is None:
                position = self._position_of(part, offset)
            writes.append((part, offset, position))
        if not writes:
            return
        await asyncio.to_thread(self._write_commits, [(p.tp, o, pos) for p, o, pos in writes])
        for part, offset, position in writes:
            part.committed, part.committed_position = offset, position
            # Forget positions at or below the commit; later ones may still be committed.
            part.returned = {o: p for o, p in part.returned.items() if o > offset}

    def _position_of(self, part: _Assigned, offset: int) -> int:
        if offset == part.offset:
            return part.position
        if offset == part.ahead_offset:
            return part.ahead_position
        if offset == 0:
            return 0
        position, found = _locate(part.fd, offset)
        if found != offset:
            raise ValueError(f"cannot commit offset {offset} for {part.tp}: the log ends at {found}")
        return position

    def _write_commits(self, commits: list[tuple[TopicPartition, int, int]]) -> None:
        for tp, offset, position in commits:
            _write_json_atomic(self._offset_path(tp), {"offset": offset, "position": position}, fsync_dir=False)
        # One directory fsync makes every rename above durable.
        assert self._group is not None
        _fsync_dir(self._bus.group_dir(self._group))

    async def committed(self, tp: TopicPartition) -> int:
        """The group's committed offset for ``tp`` (0 when none; always 0 for a reader)."""
        part = self._parts.get(TopicPartition(*tp))
        if part is not None:
            return part.committed
        if self._group is None:
            return 0
        offset, _ = await asyncio.to_thread(self._load_commit, TopicPartition(*tp))
        return offset

    async def end_offsets(self) -> dict[TopicPartition, int]:
        """The next offset to be written in each assigned partition (complete records only)."""
        if not self._order:
            raise RuntimeError("consumer is not started")
        starts: dict[TopicPartition, tuple[int, int, int]] = {}
        for part in self._order:
            # Start from the furthest boundary known, so each scan only covers new records.
            if part.ahead_offset > part.end_offset:
                part.end_offset, part.end_position = part.ahead_offset, part.ahead_position
            starts[part.tp] = (part.fd, part.end_position, part.end_offset)
        ends = await asyncio.to_thread(_scan_ends, starts)
        out: dict[TopicPartition, int] = {}
        for tp, (offset, position) in ends.items():
            known = self._parts.get(tp)  # None if stop() ran meanwhile
            if known is not None and offset >= known.end_offset:
                known.end_offset, known.end_position = offset, position
            out[tp] = offset
        return out

    def assignment(self) -> set[TopicPartition]:
        return set(self._parts)

    def on_revoke(self, handler: RevokeHandler) -> None:
        """Accepted for the port; never called, because one consumer owns every partition."""

    def on_assign(self, handler: AssignHandler) -> None:
        """Accepted for the port; never called: every partition is assigned when start() returns."""


def _scan_ends(
    starts: Mapping[TopicPartition, tuple[int, int, int]],
) -> dict[TopicPartition, tuple[int, int]]:
    ends: dict[TopicPartition, tuple[int, int]] = {}
    for tp, (fd, position, offset) in starts.items():
        scanner = _Scanner(fd, position)
        while (frame := scanner.next()) is not None:
            offset = frame.offset + 1
        ends[tp] = (offset, scanner.position)
    return ends


if TYPE_CHECKING:
    # mypy proves here that the adapter satisfies the port.
    _PORT_CHECK: Bus = EmbeddedBus(Path("."))
