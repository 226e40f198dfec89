"""The embedded log's consumer: group ownership, committed offsets, polling and read-ahead."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from forgeline.atomic import fsync_dir
from forgeline.bus.embedded.files import opened, write_json_atomic
from forgeline.bus.embedded.framing import READ_CHUNK, Scanner
from forgeline.bus.embedded.layout import FIRST_SEGMENT, Segment, next_segment, offset_file_name, segment_at, segments
from forgeline.bus.embedded.log import locate
from forgeline.bus.embedded.positions import Assigned, Chunk
from forgeline.bus.embedded.store import LogStore
from forgeline.bus.port import AssignHandler, Record, RevokeHandler, TopicPartition
from forgeline.private_fs import FILE_MODE, make_private_dirs

log = logging.getLogger(__name__)

# What one poll returns at most, in record bytes (Kafka's fetch.max.bytes; the Kafka adapter's
# default is the same). A raw record can hold a whole request (megabytes), so a poll of
# thousands of records must be bounded by bytes too, or a backlog is read gigabytes at a time.
POLL_BYTES: Final = 16 << 20


class EmbeddedConsumer:
    """Reads every partition of its topics; a group consumer if ``group`` is given, else a reader.

    A group consumer holds ``groups/<group>/owner.lock`` from start to stop (a second
    consumer of the group, in any process, gets RuntimeError), starts at the committed
    offsets and commits durably. A reader starts at offset 0 and its commit does nothing.

    ``poll`` returns only complete, crc-valid records; an incomplete tail (a write in
    progress or a torn write) is "not yet available", never an error.

    Memory: a poll returns at most ``max_poll_bytes`` of records (keys and values), and each
    partition reads ahead at most ``max_partition_bytes`` of frames (Kafka's
    max.partition.fetch.bytes; by default ``max_poll_bytes`` shared out over the partitions),
    but always at least one record and one frame, so a larger record still goes through.
    Frames hold about 1 MiB (``framing.FRAME_DATA_BYTES``), so the read-ahead of all
    partitions stays near ``max_poll_bytes`` plus a frame each.
    """

    def __init__(
        self,
        bus: LogStore,
        topics: Sequence[str],
        group: str | None,
        max_poll_bytes: int = POLL_BYTES,
        max_partition_bytes: int | None = None,
    ) -> None:
        if isinstance(topics, str):
            raise TypeError("topics must be a sequence of topic names, not a string")
        if max_poll_bytes < 1 or (max_partition_bytes is not None and max_partition_bytes < 1):
            raise ValueError("byte budgets must be at least 1")
        self._bus = bus
        self._topics = list(dict.fromkeys(topics))
        self._group = group
        self._owner_fd: int | None = None
        self._parts: dict[TopicPartition, Assigned] = {}
        self._order: list[Assigned] = []
        self._next_first = 0  # rotates which partition poll serves first
        self._poll_bytes = max_poll_bytes
        self._partition_bytes_given = max_partition_bytes
        self._partition_bytes = max_partition_bytes or max_poll_bytes

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
        if self._partition_bytes_given is None:
            self._partition_bytes = max(self._poll_bytes // len(self._order), 1)

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

    def _open_all(self) -> dict[TopicPartition, Assigned]:
        parts: dict[TopicPartition, Assigned] = {}
        try:
            for topic in self._topics:
                for partition in range(self._bus.ensure_topic(topic)):
                    tp = TopicPartition(topic, partition)
                    directory = self._bus.partition_dir(topic, partition)
                    part = Assigned(tp, directory, self._bus.retention.for_topic(topic).compact)
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
        return self._bus.group_dir(self._group) / offset_file_name(*tp)

    def _load_commit(self, tp: TopicPartition) -> tuple[int, int]:
        if self._group is None:
            return 0, 0
        try:
            doc = json.loads(self._offset_path(tp).read_bytes())
        except FileNotFoundError:
            return 0, 0
        return int(doc["offset"]), int(doc["position"])

    def _seek(self, part: Assigned, offset: int, position: int) -> None:
        """Position ``part`` at ``offset``, trusting ``position`` only once it checks out."""
        found = segments(part.directory)
        if not found:  # a topic directory without its first segment: make it, empty
            os.close(os.open(part.directory / FIRST_SEGMENT, os.O_WRONLY | os.O_CREAT, FILE_MODE))
            found = segments(part.directory)
        segment = segment_at(found, position)
        frame, at_end = None, False
        if segment is not None:
            _open_segment(part, segment)
            scanner = Scanner(part.fd, position, base=segment.start)
            frame = scanner.next() if position <= scanner.size else None
            at_end = frame is None and position == scanner.size
        if frame is not None and frame.offset <= offset < frame.next_offset:
            pass  # the frame at the committed position holds the record expected
        elif at_end:
            # Caught up at the end of the log: nothing to check against yet. poll checks the
            # offset of the first record that appears there and rescans if it is wrong.
            pass
        else:
            segment, located, located_offset = locate(part.directory, offset)
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
        part.ahead_count = part.ahead_bytes = 0

    # -- reading --

    async def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` records, fairly across partitions, in offset order per partition.

        At most ``max_poll_bytes`` of them (but at least one record when any is available).

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
            if part.ahead_count < max_records and part.ahead_bytes < self._partition_bytes:
                self._read_ahead(part, max_records - part.ahead_count)
        count = len(self._order)
        first = self._next_first % count
        self._next_first += 1
        order = self._order[first:] + self._order[:first]
        # Fair shares, as if taking one record per partition in turn: rounds of equal shares,
        # the remainder one each in order (per-partition order is all the port promises).
        shares = dict.fromkeys(range(count), 0)
        left = max_records
        active = [i for i, part in enumerate(order) if part.ahead_count]
        while left and active:
            share = max(left // len(active), 1)
            still: list[int] = []
            for i in active:
                n = min(share, order[i].ahead_count - shares[i], left)
                shares[i] += n
                left -= n
                if shares[i] < order[i].ahead_count:
                    still.append(i)
                if not left:
                    break
            active = still
        out: list[Record] = []
        budget = self._poll_bytes
        for i, part in enumerate(order):
            if shares[i]:
                budget = self._take_from(part, shares[i], out, budget)
                if budget <= 0:
                    break  # the poll's bytes are spent: the rest stays ahead for the next poll
        return out

    def _take_from(self, part: Assigned, count: int, out: list[Record], budget: int) -> int:
        """Move up to ``count`` read-ahead records of ``part`` to ``out``, advancing its position.

        Takes at most ``budget`` bytes of records (the first record of a poll whatever its
        size) and returns the bytes left; 0 when a record did not fit, so the poll stops.
        """
        track = self._group is not None
        while count:
            chunk = part.ahead[0]
            start = chunk.taken
            stop = min(start + count, len(chunk.records))
            # A frame's size is at least that of its records: most polls count whole frames
            # and only the frame at the budget's edge is measured record by record.
            frame_bytes = chunk.end - chunk.position
            if frame_bytes <= budget:
                budget -= frame_bytes
            else:
                fits, used = _fitting(chunk.records, start, stop, budget, at_least_one=not out)
                budget = budget - used if fits == stop else 0
                stop = fits
                if stop == start:
                    break
            out += chunk.records[start:stop] if start or stop < len(chunk.records) else chunk.records
            count -= stop - start
            part.ahead_count -= stop - start
            chunk.taken = stop
            part.offset = chunk.records[stop - 1].offset + 1
            if stop == len(chunk.records):
                part.ahead.popleft()
                part.ahead_bytes -= frame_bytes
                part.position = chunk.end
            else:
                part.position = chunk.position  # inside the frame: resuming reads it again
            if track:
                part.returned.add(chunk.records[0].offset, chunk.records[-1].offset + 1, chunk.position, chunk.end)
            if budget <= 0:
                break
        return budget

    def _read_ahead(self, part: Assigned, limit: int) -> None:
        topic, partition = part.tp
        while True:
            scanner = Scanner(part.fd, part.ahead_position, READ_CHUNK, base=part.segment_start)
            while (
                limit > 0
                and (part.ahead_bytes < self._partition_bytes or not part.ahead)
                and (frame := scanner.next()) is not None
            ):
                wanted = part.ahead_offset
                holds = frame.offset <= wanted < frame.next_offset
                if not holds and not (part.compact and frame.offset > wanted):
                    self._resync(part, frame.offset)
                    return
                records = frame.records(topic, partition, wanted)
                part.ahead.append(Chunk(records, 0, frame.position, frame.end))
                part.ahead_count += len(records)
                part.ahead_bytes += frame.size
                part.ahead_offset, part.ahead_position = frame.next_offset, frame.end
                limit -= len(records)
            if scanner.stopped != "end" or not scanner.sealed:  # None: a record or byte limit stopped it
                return
            # The end of a closed segment: go on in the next one (None: its roll is under way).
            successor = next_segment(part.directory, part.segment_start)
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

    def _resync(self, part: Assigned, found: int) -> None:
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
        segment, position, offset = locate(part.directory, part.ahead_offset)
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
        writes: list[tuple[Assigned, int, int]] = []
        for tp, offset in offsets.items():
            part = self._parts.get(TopicPartition(*tp))
            if part is None:
                raise ValueError(f"{tp} is not assigned to this consumer")
            if offset < 0:
                raise ValueError(f"cannot commit negative offset {offset} for {tp}")
            if offset == part.committed:
                continue
            position = part.returned.position_of(offset)
            if position is None:
                position = self._position_of(part, offset)
            writes.append((part, offset, position))
        if not writes:
            return
        await asyncio.to_thread(self._write_commits, [(p.tp, o, pos) for p, o, pos in writes])
        for part, offset, position in writes:
            part.committed, part.committed_position = offset, position
            part.returned.forget_through(offset)

    def _position_of(self, part: Assigned, offset: int) -> int:
        if offset == part.offset:
            return part.position
        if offset == part.ahead_offset:
            return part.ahead_position
        if offset == 0:
            return 0
        _, position, found = locate(part.directory, offset)
        if found < offset:
            raise ValueError(f"cannot commit offset {offset} for {part.tp}: the log ends at {found}")
        return position

    def _write_commits(self, commits: list[tuple[TopicPartition, int, int]]) -> None:
        for tp, offset, position in commits:
            write_json_atomic(self._offset_path(tp), {"offset": offset, "position": position}, fsync_dir=False)
        # One directory fsync makes every rename above durable.
        assert self._group is not None
        fsync_dir(self._bus.group_dir(self._group))

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
        found = segments(directory)
        held = segment_at(found, position)
        for segment in found[found.index(held) if held is not None else 0 :]:
            if segment.start > position:
                position, offset = segment.start, max(offset, segment.base)
            with opened(segment.path) as fd:
                scanner = Scanner(fd, position, base=segment.start)
                while (frame := scanner.next()) is not None:
                    offset = frame.next_offset
                position = scanner.position
        ends[tp] = (offset, position)
    return ends


def _fitting(records: list[Record], start: int, stop: int, budget: int, at_least_one: bool) -> tuple[int, int]:
    """(end, bytes) of the longest run of ``records[start:stop]`` within ``budget`` bytes.

    ``at_least_one``: the first record counts as fitting whatever its size (a poll makes progress).
    """
    used = 0
    for i in range(start, stop):
        key, value = records[i].key, records[i].value
        size = len(value) + (0 if key is None else len(key))
        if used + size > budget and (i > start or not at_least_one):
            return i, used
        used += size
    return stop, used


def _open_segment(part: Assigned, segment: Segment) -> None:
    """Make ``segment`` the one ``part`` reads ahead in."""
    fd = os.open(segment.path, os.O_RDONLY)
    _close_segment(part)
    part.fd, part.segment_start = fd, segment.start


def _close_segment(part: Assigned) -> None:
    if part.fd >= 0:
        os.close(part.fd)
        part.fd = -1
