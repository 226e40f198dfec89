"""A consumer's place in one partition: offsets, and the byte positions of the frames holding them.

A byte position is always a frame boundary: the start of the frame that holds the record at
the offset (reading it skips the frame's records below the offset), or the end of the log.
So a commit in the middle of a batch frame stores that frame's start, and a consumer that
resumes there gets exactly the records after the commit.
"""

from __future__ import annotations

import bisect
import collections
from dataclasses import dataclass, field
from pathlib import Path

from forgeline.bus.port import Record, TopicPartition


@dataclass(eq=False, slots=True)
class Chunk:
    """The records read from one frame, of which poll has returned the first ``taken``."""

    records: list[Record]
    taken: int
    position: int  # the frame's start
    end: int  # the frame's end: the next frame's start


class Returned:
    """Frames whose records poll returned and that are not committed yet.

    ``position_of`` answers where a commit of any offset in them resumes, without a scan of
    the log: the writer commits where its flush ended, which can be inside a frame.
    """

    def __init__(self) -> None:
        self._next_offsets: list[int] = []
        self._frames: list[tuple[int, int, int]] = []  # (first offset, start, end), as _next_offsets

    def add(self, first: int, next_offset: int, position: int, end: int) -> None:
        if self._next_offsets and self._next_offsets[-1] >= next_offset:
            return  # a frame returned over two polls is here already
        self._next_offsets.append(next_offset)
        self._frames.append((first, position, end))

    def position_of(self, offset: int) -> int | None:
        """The byte position to store with a commit of ``offset``; None if no frame here says."""
        i = bisect.bisect_left(self._next_offsets, offset)
        if i == len(self._next_offsets):
            return None
        first, position, end = self._frames[i]
        if offset == self._next_offsets[i]:
            return end
        return position if first <= offset else None

    def forget_through(self, offset: int) -> None:
        """Drop the frames wholly below ``offset`` (committed); later ones may still be committed."""
        i = bisect.bisect_right(self._next_offsets, offset)
        del self._next_offsets[:i], self._frames[:i]


@dataclass(eq=False)
class Assigned:
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
    # Frames read but not wholly returned yet, how many records they still hold, and their
    # size in bytes (whole frames: what the read-ahead holds in memory).
    ahead: collections.deque[Chunk] = field(default_factory=collections.deque)
    ahead_count: int = 0
    ahead_bytes: int = 0
    ahead_offset: int = 0
    ahead_position: int = 0
    # Returned records that are not committed yet.
    returned: Returned = field(default_factory=Returned)
    committed: int = 0
    committed_position: int = 0
    # A valid boundary at or before the end, so end_offsets scans only what is new.
    end_offset: int = 0
    end_position: int = 0
