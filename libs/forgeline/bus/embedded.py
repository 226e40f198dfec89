"""The embedded bus: a durable, partitioned log in local files with Kafka's semantics.

Layout under ``root``::

    topics/<topic>/meta.json                                 {"partitions": N}, fixed at creation
    topics/<topic>/create.lock                               serialises topic creation across processes
    topics/<topic>/<partition>/00000000000000000000.log      the first segment
    topics/<topic>/<partition>/<start>-<base offset>.log     later segments (see "segments" below)
    topics/<topic>/<partition>/append.lock                   serialises appends across processes
    topics/<topic>/<partition>/retention.lock                one retention run per partition at a time
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

Retention (``forgeline.bus.retention``, Kafka's setting names): the active segment is closed
at ``segment.bytes`` or ``segment.ms``; closed segments are deleted by ``retention.ms`` and
``retention.bytes`` (oldest first, never the active one), by the producer that closed one and
every ``check_interval_s``. Age never deletes a segment a consumer group has not committed
past; the size bound does, and counts (``forgeline_bus_retention_unread_deleted_records_total``)
and logs what the group loses. A consumer whose offset is gone resumes at the log start
(Kafka's ``auto.offset.reset=earliest``). Compacted topics (``control.*``) keep the last record
per key (and every keyless one) in closed segments; their offsets then have gaps.

Disk space: below ``min_free_bytes`` / ``min_free_percent`` free under the root, sends raise
DiskFull without writing; an append that hits ENOSPC anyway is cut back to the last record
boundary and raises DiskFull. Either way nothing torn or unacknowledged stays in the log.

Known limits:

- A producer scans the active segment of each partition it first writes (and a consumer
  scans from its start position for ``end_offsets``) once, linear in the segment size.
- Compaction keeps small closed segments as they are (it does not merge them), and keys
  are never forgotten (there are no tombstones: state records carry flags such as
  ``revoked``), so a compacted topic grows with its number of keys.
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
import stat
import struct
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, NamedTuple

from forgeline.bus.port import (
    AssignHandler,
    Bus,
    BusUnavailable,
    Capabilities,
    DiskFull,
    OutgoingRecord,
    Record,
    RevokeHandler,
    TopicPartition,
    partition_for,
)
from forgeline.bus.retention import RetentionPolicy, TopicRetention
from forgeline.private_fs import FILE_MODE, make_private_dirs, private_dir
from forgeline.telemetry.metrics import BUS_RETENTION_UNREAD_DELETED

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

    def key(self) -> bytes | None:
        if self._key_len < 0:
            return None
        at = self._at + _HEADER.size
        return self._buf[at : at + self._key_len]

    def raw(self) -> bytes:
        return self._buf[self._at : self._at + self.size]

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

    def __init__(self, fd: int, position: int, chunk: int = _SCAN_CHUNK, base: int = 0) -> None:
        # Positions are logical (the segment's start plus the byte in its file): ``base`` is
        # where this file starts. ``sealed``: a later segment has replaced it as the active one.
        self._fd = fd
        self._chunk = chunk
        self._base = base
        st = os.fstat(fd)
        self.size = base + st.st_size
        self.sealed = _is_sealed(st.st_mode)
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
        self._buf = os.pread(self._fd, want, self.position - self._base)
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


# --- segments ------------------------------------------------------------------------------
#
# A partition is a directory of segment files. The first is ``00000000000000000000.log``;
# every later one is named ``<start>-<base offset>.log``: ``start`` is the logical byte
# position where it begins (every record has a logical position, the segment's start plus
# its byte in the file, which is what commits store) and ``base offset`` the offset of its
# first record. The segment with the highest start is the active one; appends go only there.
# Closing a segment (rolling) marks it read-only (mode 0400) before its successor is created:
# every appender checks the mode of its file under the append lock, so none ever appends to
# a closed segment, even one that was rolled by another process.

_SEGMENT_NAME: Final = re.compile(r"(\d{20})(?:-(\d{20}))?\.log")
_SEALED_MODE: Final = 0o400


class _Segment(NamedTuple):
    start: int
    base: int
    path: Path


def _is_sealed(mode: int) -> bool:
    return not mode & stat.S_IWUSR


def _segment_name(start: int, base: int) -> str:
    return _FIRST_SEGMENT if start == 0 and base == 0 else f"{start:020d}-{base:020d}.log"


def _segments(directory: Path) -> list[_Segment]:
    """The segments of a partition, oldest first."""
    found: list[_Segment] = []
    for name in os.listdir(directory):
        match = _SEGMENT_NAME.fullmatch(name)
        if match is not None:
            start = int(match[1])
            base = int(match[2]) if match[2] is not None else start
            found.append(_Segment(start, base, directory / name))
    found.sort()
    return found


def _segment_at(segments: Sequence[_Segment], position: int) -> _Segment | None:
    """The segment holding logical ``position`` (None when it is before the first one)."""
    held = None
    for segment in segments:
        if segment.start > position:
            break
        held = segment
    return held


def _next_segment(directory: Path, start: int) -> _Segment | None:
    return next((s for s in _segments(directory) if s.start > start), None)


# --- one partition on disk -----------------------------------------------------------------


class _PartitionLog:
    """The active segment of one partition, and what one producer knows about its tail.

    ``append`` is not thread-safe for one instance (the producer's flusher never runs two
    appends to the same partition at once); different instances, in any process, are
    serialised by the flock.
    """

    def __init__(self, directory: Path, fsync: bool, settings: TopicRetention | None = None) -> None:
        self.directory = directory
        self.lock_path = directory / "append.lock"
        self._fsync = fsync
        self._settings = settings or TopicRetention()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        # The active segment's logical start and base offset.
        self._start = 0
        self._base = 0
        # The end of the valid records as this producer last saw it: a record boundary.
        self._end = 0
        self._next_offset = 0
        # The file size when last seen; -1 forces a scan (first append, or after a failure).
        self._known_size = -1
        # When the active segment's first record was written (for segment.ms); None if empty.
        self._first_ms: int | None = None
        self.rolled = False  # set by an append that closed a segment

    @property
    def compact(self) -> bool:
        return self._settings.compact

    @property
    def path(self) -> Path:
        """The active segment's file as this producer last saw it."""
        return self.directory / _segment_name(self._start, self._base)

    def _open_active(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        segments = _segments(self.directory)
        if segments:
            active = segments[-1]
        else:  # a topic directory made before the first segment was (or tampered with)
            active = _Segment(0, 0, self.directory / _FIRST_SEGMENT)
        self._fd = os.open(active.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)
        self._start, self._base = active.start, active.base
        self._end, self._next_offset = active.start, active.base
        self._known_size = -1
        self._first_ms = None

    def append(self, records: Sequence[OutgoingRecord]) -> int:
        """Append ``records`` durably under the partition lock; return the first offset.

        Raises OSError when the disk fails (ENOSPC included); whatever part of the records
        was written is cut off again, so the log never keeps a torn record.
        """
        if self._lock_fd is None:
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        self.rolled = False
        with _flocked(self._lock_fd):
            if self._fd is None:
                self._open_active()
            assert self._fd is not None
            st = os.fstat(self._fd)
            if st.st_nlink == 0 or _is_sealed(st.st_mode):
                # Another producer closed this segment (or retention removed it): find the new one.
                self._open_active()
                assert self._fd is not None
                st = os.fstat(self._fd)
            if self._start + st.st_size != self._known_size:
                # Another process appended (or this is our first append): find the next offset.
                self._recover(st.st_size)
            if self._should_roll(st.st_mode):
                self._roll()
            fd = self._fd
            first = self._next_offset
            timestamp_ms = time.time_ns() // 1_000_000
            data = b"".join(_encode_record(first + i, timestamp_ms, r) for i, r in enumerate(records))
            self._known_size = -1  # until the write and fsync succeed, the tail is unknown
            try:
                _write_all(fd, data)
                if self._fsync:
                    os.fsync(fd)
            except OSError:
                self._cut_back()
                raise
            if self._first_ms is None:
                self._first_ms = timestamp_ms
            self._end += len(data)
            self._next_offset += len(records)
            self._known_size = self._end
        return first

    def _cut_back(self) -> None:
        """After a failed write (ENOSPC, EIO): remove what part of it landed (lock held)."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._end - self._start)
            if self._fsync:
                os.fsync(self._fd)
        except OSError:
            log.exception("could not cut back a failed append; the next append repairs the tail")
            return
        self._known_size = self._end

    def _should_roll(self, mode: int) -> bool:
        size = self._end - self._start
        if _is_sealed(mode):
            if size == 0:  # nothing to close: take the empty file back as the active one
                assert self._fd is not None
                os.fchmod(self._fd, FILE_MODE)
                return False
            return True  # a roll was cut short by a crash: the successor was never made
        if size == 0:
            return False
        if size >= self._settings.segment_bytes:
            return True
        segment_ms = self._settings.segment_ms
        return (
            segment_ms is not None
            and self._first_ms is not None
            and time.time_ns() // 1_000_000 - self._first_ms >= segment_ms
        )

    def _roll(self) -> None:
        """Close the active segment and start the next one at the current end (lock held)."""
        assert self._fd is not None
        # The closed segment must be whole on disk before anything names it closed.
        os.fsync(self._fd)
        os.fchmod(self._fd, _SEALED_MODE)
        successor = self.directory / _segment_name(self._end, self._next_offset)
        fd = os.open(successor, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)
        if self._fsync:
            _fsync_dir(self.directory)
        os.close(self._fd)
        self._fd = fd
        self._start, self._base = self._end, self._next_offset
        self._known_size = self._end
        self._first_ms = None
        self.rolled = True
        log.info(
            "rolled partition log segment",
            extra={"path": str(successor), "start": self._start, "base_offset": self._base},
        )

    def _recover(self, size: int) -> None:
        """Scan from the last known boundary to the end; truncate a torn tail (lock held)."""
        assert self._fd is not None
        if self._start + size < self._end:
            # Shrunk below a boundary we saw: not something appenders do. Start over.
            self._end, self._next_offset = self._start, self._base
        from_start = self._end == self._start
        scanner = _Scanner(self._fd, self._end, base=self._start)
        next_offset = self._next_offset
        while (frame := scanner.next()) is not None:
            if frame.offset != next_offset:
                raise _CorruptLog(errno.EIO, f"offset {frame.offset} where {next_offset} was expected", str(self.path))
            if from_start and self._first_ms is None:
                self._first_ms = frame.timestamp_ms
            next_offset += 1
        if scanner.stopped == "corrupt" and scanner.corrupt_size is not None:
            follower = _Scanner(self._fd, scanner.position + scanner.corrupt_size, base=self._start)
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
            os.ftruncate(self._fd, scanner.position - self._start)
        self._end, self._next_offset = scanner.position, next_offset
        self._known_size = self._end

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._lock_fd = None
        self._known_size = -1


def _locate(directory: Path, offset: int) -> tuple[_Segment, int, int]:
    """(segment, logical position, offset) of the first record at or after ``offset``.

    When the log ends before ``offset`` this is the end of its valid records and its end
    offset; when ``offset`` is below the log start (retention removed it), the first record.
    """
    segments = _segments(directory)
    if not segments:
        raise FileNotFoundError(errno.ENOENT, "partition has no segment", str(directory))
    first = 0
    for i, segment in enumerate(segments):
        if segment.base <= offset:
            first = i
    segment, position, next_offset = segments[first], segments[first].start, segments[first].base
    for segment in segments[first:]:
        with _opened(segment.path) as fd:
            scanner = _Scanner(fd, segment.start, base=segment.start)
            next_offset = max(next_offset, segment.base)
            while (frame := scanner.next()) is not None:
                if frame.offset >= offset:
                    return segment, frame.position, frame.offset
                next_offset = frame.offset + 1
            position = scanner.position
    return segment, position, next_offset


def _compact(directory: Path, fsync: bool) -> int:
    """Keep only the last record per key in the closed segments (Kafka's cleanup.policy=compact).

    Records without a key are kept. Offsets do not change (a compacted log has gaps, which
    readers skip); a segment left empty is deleted. Each rewrite is a new file renamed over
    the old one, so a crash leaves either version, and a reader that has the old one open
    reads it to its end.
    """
    for stale in directory.glob("*.log.compact.*"):
        stale.unlink(missing_ok=True)  # a rewrite a crash cut short (we hold retention.lock)
    segments = _segments(directory)
    if len(segments) < 2:
        return 0
    latest: dict[bytes, int] = {}
    for segment in segments:  # the active segment too: its records supersede older ones
        with _opened(segment.path) as fd:
            scanner = _Scanner(fd, segment.start, base=segment.start)
            while (frame := scanner.next()) is not None:
                key = frame.key()
                if key is not None:
                    latest[key] = frame.offset
    changed = 0
    for segment in segments[:-1]:
        kept: list[bytes] = []
        dropped = 0
        with _opened(segment.path) as fd:
            scanner = _Scanner(fd, segment.start, base=segment.start)
            while (frame := scanner.next()) is not None:
                key = frame.key()
                if key is None or latest.get(key) == frame.offset:
                    kept.append(frame.raw())
                else:
                    dropped += 1
        if not dropped:
            continue
        changed += 1
        if not kept:
            segment.path.unlink()
            continue
        tmp = segment.path.with_name(f"{segment.path.name}.compact.{os.getpid()}")
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            _write_all(out, b"".join(kept))
            os.fsync(out)
            os.fchmod(out, _SEALED_MODE)
        finally:
            os.close(out)
        os.replace(tmp, segment.path)
    if changed:
        if fsync:
            _fsync_dir(directory)
        log.info("compacted partition log", extra={"path": str(directory), "segments": changed})
    return changed


@contextmanager
def _opened(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


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
        retention: RetentionPolicy | None = None,
        min_free_bytes: int = 0,
        min_free_percent: float = 0.0,
    ) -> None:
        if default_partitions < 1 or any(n < 1 for n in (partitions or {}).values()):
            raise ValueError("partition counts must be at least 1")
        self.capabilities = Capabilities(name="embedded", shared_groups=False, send_timeout_s=send_timeout_s)
        self.root = Path(root)
        self.default_partitions = default_partitions
        self.fsync = fsync
        self.poll_interval_s = poll_interval_s
        self.send_timeout_s = send_timeout_s
        self.retention = retention or RetentionPolicy()
        self.min_free_bytes = min_free_bytes
        self.min_free_percent = min_free_percent
        self._configured = dict(partitions or {})
        self._counts: dict[str, int] = {}
        self._root_ready = False
        self._space_checked = -1.0
        self._space_problem: str | None = None

    # -- disk space --

    def space_problem(self, max_age_s: float = 0.5) -> str | None:
        """Why the data directory is too full to take writes, or None (statvfs, cached briefly).

        Writes are refused while free space is below ``min_free_bytes`` or ``min_free_percent``
        of the filesystem, so the disk never fills up under the log (or the warehouse beside it).
        """
        if self.min_free_bytes <= 0 and self.min_free_percent <= 0:
            return None
        now = time.monotonic()
        if now - self._space_checked < max_age_s:
            return self._space_problem
        path = self.root
        while not path.exists() and path.parent != path:
            path = path.parent
        try:
            st = os.statvfs(path)
        except OSError as err:
            problem: str | None = f"cannot check free space of {path}: {err}"
        else:
            free = st.f_bavail * st.f_frsize
            total = st.f_blocks * st.f_frsize
            needed = max(self.min_free_bytes, int(total * self.min_free_percent / 100))
            problem = None
            if free < needed:
                problem = f"disk almost full: {free} bytes free under {path}, below the {needed} kept free"
        if problem != self._space_problem:
            if problem is None:
                log.info("free disk space is back above the threshold; taking writes again")
            else:
                log.error("refusing writes: %s", problem)
        self._space_checked, self._space_problem = now, problem
        return problem

    # -- retention (blocking; producers run it in their flush threads) --

    def enforce_retention(self, topic: str, partition: int) -> int:
        """Delete or compact the closed segments of one partition as its settings say.

        Returns how many segments were deleted or rewritten. Another process doing the same
        partition at the moment makes this a no-op (it holds ``retention.lock``).
        """
        settings = self.retention.for_topic(topic)
        directory = self.partition_dir(topic, partition)
        fd = os.open(directory / "retention.lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0
            if settings.compact:
                return _compact(directory, self.fsync)
            return self._delete_old(TopicPartition(topic, partition), directory, settings)
        finally:
            os.close(fd)  # releases the flock

    def _group_commits(self, tp: TopicPartition) -> dict[str, int]:
        """Each consumer group's committed offset of ``tp`` (groups that never committed it: none)."""
        commits: dict[str, int] = {}
        groups = self.root / "groups"
        try:
            names = os.listdir(groups)
        except FileNotFoundError:
            return commits
        for group in names:
            try:
                doc = json.loads((groups / group / f"{tp.topic}.{tp.partition}.offset").read_bytes())
                commits[group] = int(doc["offset"])
            except (FileNotFoundError, ValueError, KeyError, TypeError):
                continue
        return commits

    def _delete_old(self, tp: TopicPartition, directory: Path, settings: TopicRetention) -> int:
        segments = _segments(directory)
        if len(segments) < 2:
            return 0  # the active segment is never deleted
        sizes = {s.path: s.path.stat().st_size for s in segments}
        total = sum(sizes.values())
        now_ms = time.time_ns() // 1_000_000
        commits = self._group_commits(tp)
        deleted = 0
        for segment, successor in zip(segments, segments[1:], strict=False):
            by_size = settings.retention_bytes is not None and total > settings.retention_bytes
            by_age = (
                settings.retention_ms is not None
                and segment.path.stat().st_mtime_ns // 1_000_000 < now_ms - settings.retention_ms
            )
            if not (by_size or by_age):
                break
            # Records [segment.base, successor.base) are in this segment.
            unread = {g: successor.base - max(o, segment.base) for g, o in commits.items() if o < successor.base}
            if unread and not by_size:
                break  # a group still needs it: age alone never takes it away
            for group, count in unread.items():
                BUS_RETENTION_UNREAD_DELETED.labels(topic=tp.topic, group=group).inc(count)
                log.warning(
                    "retention.bytes forces out records a consumer group has not read",
                    extra={
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "group": group,
                        "committed": commits[group],
                        "deleted_from": segment.base,
                        "deleted_to": successor.base,
                        "unread": count,
                    },
                )
            segment.path.unlink()
            total -= sizes[segment.path]
            deleted += 1
            log.info(
                "deleted partition log segment",
                extra={"path": str(segment.path), "by": "retention.bytes" if by_size else "retention.ms"},
            )
        if deleted and self.fsync:
            _fsync_dir(directory)
        return deleted

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
            for tp, record in request.items:
                by_partition[tp].append(record)
        tps = list(by_partition)
        # Partitions have separate files and locks: write them in parallel threads.
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
            error = next((failures[tp] for tp, _ in request.items if tp in failures), None)
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

    def _log(self, tp: TopicPartition) -> _PartitionLog:
        plog = self._logs.get(tp)
        if plog is None:
            settings = self._bus.retention.for_topic(tp.topic)
            plog = _PartitionLog(self._bus.partition_dir(tp.topic, tp.partition), self._bus.fsync, settings)
            self._logs[tp] = plog
        return plog


# --- consumer ------------------------------------------------------------------------------


@dataclass(eq=False)
class _Assigned:
    """A consumer's state for one partition."""

    tp: TopicPartition
    directory: Path
    # Compacted topics have gaps in their offsets; others only where retention removed records.
    compact: bool
    # The segment being read ahead: its file, logical start and base offset (-1: none open).
    fd: int = -1
    segment_start: int = 0
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
            _close_segment(part)
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
                    directory = self._bus.partition_dir(topic, partition)
                    part = _Assigned(tp, directory, self._bus.retention.for_topic(topic).compact)
                    parts[tp] = part
                    offset, position = self._load_commit(tp)
                    part.committed, part.committed_position = offset, position
                    self._seek(part, offset, position)
        except BaseException:
            for part in parts.values():
                _close_segment(part)
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
        segments = _segments(part.directory)
        if not segments:  # a topic directory without its first segment: make it, empty
            os.close(os.open(part.directory / _FIRST_SEGMENT, os.O_WRONLY | os.O_CREAT, FILE_MODE))
            segments = _segments(part.directory)
        segment = _segment_at(segments, position)
        frame, at_end = None, False
        if segment is not None:
            _open_segment(part, segment)
            scanner = _Scanner(part.fd, position, base=segment.start)
            frame = scanner.next() if position <= scanner.size else None
            at_end = frame is None and position == scanner.size
        if frame is not None and frame.offset == offset:
            pass  # the record at the committed position is the one expected
        elif at_end:
            # Caught up at the end of the log: nothing to check against yet. poll checks the
            # offset of the first record that appears there and rescans if it is wrong.
            pass
        else:
            segment, located, located_offset = _locate(part.directory, offset)
            _open_segment(part, segment)
            if located_offset < offset:
                log.warning(
                    "committed offset is past the end of the log; resuming at the end",
                    extra={"topic": part.tp.topic, "partition": part.tp.partition, "committed": offset},
                )
            elif located_offset > offset and offset > 0 and not part.compact:
                # Kafka's auto.offset.reset=earliest: retention removed what the group had not read.
                log.warning(
                    "committed offset is below the log start (retention removed records); resuming at the log start",
                    extra={
                        "topic": part.tp.topic,
                        "partition": part.tp.partition,
                        "committed": offset,
                        "log_start": located_offset,
                        "skipped": located_offset - offset,
                    },
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
        topic, partition = part.tp
        while True:
            scanner = _Scanner(part.fd, part.ahead_position, _READ_CHUNK, base=part.segment_start)
            while limit > 0 and (frame := scanner.next()) is not None:
                if frame.offset != part.ahead_offset and not (part.compact and frame.offset > part.ahead_offset):
                    self._resync(part, frame.offset)
                    return
                part.ahead.append((frame.decode(topic, partition), frame.end))
                part.ahead_offset, part.ahead_position = frame.offset + 1, frame.end
                limit -= 1
            if limit <= 0 or scanner.stopped != "end" or not scanner.sealed:
                return
            # The end of a closed segment: go on in the next one (None: its roll is under way).
            successor = _next_segment(part.directory, part.segment_start)
            if successor is None:
                return
            if successor.base > part.ahead_offset and not part.compact:
                log.warning(
                    "retention removed records this consumer had not read; skipping to the log start",
                    extra={
                        "topic": topic,
                        "partition": partition,
                        "expected": part.ahead_offset,
                        "log_start": successor.base,
                        "skipped": successor.base - part.ahead_offset,
                    },
                )
            _open_segment(part, successor)
            part.ahead_position = successor.start
            part.ahead_offset = max(part.ahead_offset, successor.base)

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
        segment, position, offset = _locate(part.directory, part.ahead_offset)
        _open_segment(part, segment)
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
        _, position, found = _locate(part.directory, offset)
        if found < offset:
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
        starts: dict[TopicPartition, tuple[Path, int, int]] = {}
        for part in self._order:
            # Start from the furthest boundary known, so each scan only covers new records.
            if part.ahead_offset > part.end_offset:
                part.end_offset, part.end_position = part.ahead_offset, part.ahead_position
            starts[part.tp] = (part.directory, part.end_position, part.end_offset)
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
    starts: Mapping[TopicPartition, tuple[Path, int, int]],
) -> dict[TopicPartition, tuple[int, int]]:
    ends: dict[TopicPartition, tuple[int, int]] = {}
    for tp, (directory, position, offset) in starts.items():
        segments = _segments(directory)
        held = _segment_at(segments, position)
        for segment in segments[segments.index(held) if held is not None else 0 :]:
            if segment.start > position:
                position, offset = segment.start, max(offset, segment.base)
            with _opened(segment.path) as fd:
                scanner = _Scanner(fd, position, base=segment.start)
                while (frame := scanner.next()) is not None:
                    offset = frame.offset + 1
                position = scanner.position
        ends[tp] = (offset, position)
    return ends


def _open_segment(part: _Assigned, segment: _Segment) -> None:
    """Make ``segment`` the one ``part`` reads ahead in."""
    fd = os.open(segment.path, os.O_RDONLY)
    _close_segment(part)
    part.fd, part.segment_start = fd, segment.start


def _close_segment(part: _Assigned) -> None:
    if part.fd >= 0:
        os.close(part.fd)
        part.fd = -1


if TYPE_CHECKING:
    # mypy proves here that the adapter satisfies the port.
    _PORT_CHECK: Bus = EmbeddedBus(Path("."))
