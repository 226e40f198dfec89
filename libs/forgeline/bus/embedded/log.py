"""One partition's log: appends to its active segment, rolling, torn-tail recovery, lookups."""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from forgeline.atomic import fsync_dir, write_all
from forgeline.bus.embedded.files import SEALED_MODE, flocked, is_sealed, opened
from forgeline.bus.embedded.framing import Scanner, encode_frames
from forgeline.bus.embedded.layout import FIRST_SEGMENT, Segment, segment_name, segments
from forgeline.bus.port import OutgoingRecord
from forgeline.bus.retention import TopicRetention
from forgeline.private_fs import FILE_MODE

log = logging.getLogger(__name__)


class CorruptLog(OSError):
    """A record in the middle of a log is corrupt; truncating would drop acknowledged data."""


class PartitionLog:
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
        return self.directory / segment_name(self._start, self._base)

    def _open_active(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        found = segments(self.directory)
        if found:
            active = found[-1]
        else:  # a topic directory made before the first segment was (or tampered with)
            active = Segment(0, 0, self.directory / FIRST_SEGMENT)
        self._fd = os.open(active.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)
        self._start, self._base = active.start, active.base
        self._end, self._next_offset = active.start, active.base
        self._known_size = -1
        self._first_ms = None

    def append(self, records: Sequence[OutgoingRecord]) -> int:
        """Append ``records`` durably under the partition lock; return the first offset.

        Raises OSError when the disk fails (ENOSPC included); whatever part of the records
        was written is cut off again, so the log never keeps a torn record. The records
        become batch frames of at most ``framing.FRAME_DATA_BYTES`` each (one frame unless
        they are larger), written with one write and one fsync, so the cost per append is
        mostly per append.
        """
        if self._lock_fd is None:
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        self.rolled = False
        with flocked(self._lock_fd):
            if self._fd is None:
                self._open_active()
            assert self._fd is not None
            st = os.fstat(self._fd)
            if st.st_nlink == 0 or is_sealed(st.st_mode):
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
            data = encode_frames(first, timestamp_ms, records)  # bounded frames, one write
            self._known_size = -1  # until the write and fsync succeed, the tail is unknown
            try:
                write_all(fd, data)
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
        if is_sealed(mode):
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
        os.fchmod(self._fd, SEALED_MODE)
        successor = self.directory / segment_name(self._end, self._next_offset)
        fd = os.open(successor, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)
        if self._fsync:
            fsync_dir(self.directory)
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
        scanner = Scanner(self._fd, self._end, base=self._start)
        next_offset = self._next_offset
        while (frame := scanner.next()) is not None:
            if frame.offset != next_offset:
                raise CorruptLog(errno.EIO, f"offset {frame.offset} where {next_offset} was expected", str(self.path))
            if from_start and self._first_ms is None:
                self._first_ms = frame.timestamp_ms
            next_offset = frame.next_offset
        for claimed in scanner.corrupt_sizes if scanner.stopped == "corrupt" else ():
            follower = Scanner(self._fd, scanner.position + claimed, base=self._start)
            if follower.position < follower.size and follower.next() is not None:
                # Valid frames follow the bad one: this is damage, not a torn tail.
                raise CorruptLog(errno.EIO, f"corrupt frame at byte {scanner.position}", str(self.path))
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


def locate(directory: Path, offset: int) -> tuple[Segment, int, int]:
    """(segment, logical position, offset) of the first record at or after ``offset``.

    The position is that of the frame holding the record: a reader skips the records of the
    frame below the offset.

    When the log ends before ``offset`` this is the end of its valid records and its end
    offset; when ``offset`` is below the log start (retention removed it), the first record.
    """
    found = segments(directory)
    if not found:
        raise FileNotFoundError(errno.ENOENT, "partition has no segment", str(directory))
    first = 0
    for i, segment in enumerate(found):
        if segment.base <= offset:
            first = i
    segment, position, next_offset = found[first], found[first].start, found[first].base
    for segment in found[first:]:
        with opened(segment.path) as fd:
            scanner = Scanner(fd, segment.start, base=segment.start)
            next_offset = max(next_offset, segment.base)
            while (frame := scanner.next()) is not None:
                if frame.next_offset > offset:
                    # The frame holds ``offset`` (a reader skips the records before it) or
                    # starts after it (a gap that compaction or retention left).
                    return segment, frame.position, max(offset, frame.offset)
                next_offset = frame.next_offset
            position = scanner.position
    return segment, position, next_offset
