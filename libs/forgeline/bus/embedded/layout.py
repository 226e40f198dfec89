"""Where the embedded log keeps things under its root, and how segment files are named.

    topics/<topic>/meta.json                                 {"partitions": N}, fixed at creation
    topics/<topic>/create.lock                               serialises topic creation across processes
    topics/<topic>/<partition>/00000000000000000000.log      the first segment
    topics/<topic>/<partition>/<start>-<base offset>.log     later segments
    topics/<topic>/<partition>/append.lock                   serialises appends across processes
    topics/<topic>/<partition>/retention.lock                one retention run per partition at a time
    groups/<group>/owner.lock                                held by the group's one consumer
    groups/<group>/<topic>.<partition>.offset                {"offset": N, "position": BYTE_POS}

A partition is a directory of segment files. The first is ``00000000000000000000.log``;
every later one is named ``<start>-<base offset>.log``: ``start`` is the logical byte
position where it begins (every record has a logical position, the segment's start plus
its byte in the file, which is what commits store) and ``base offset`` the offset of its
first record. The segment with the highest start is the active one; appends go only there.
Closing a segment (rolling) marks it read-only (mode 0400) before its successor is created:
every appender checks the mode of its file under the append lock, so none ever appends to
a closed segment, even one that was rolled by another process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final, NamedTuple

FIRST_SEGMENT: Final = f"{0:020d}.log"
_SEGMENT_NAME: Final = re.compile(r"(\d{20})(?:-(\d{20}))?\.log")
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def check_name(kind: str, name: str) -> None:
    # Names become directory and file names; refuse anything that could escape ``root``.
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid {kind} name {name!r}: use letters, digits, '.', '_' and '-'")


def offset_file_name(topic: str, partition: int) -> str:
    """A group's committed offset of one partition, in ``groups/<group>/``."""
    return f"{topic}.{partition}.offset"


class Segment(NamedTuple):
    start: int
    base: int
    path: Path


def segment_name(start: int, base: int) -> str:
    return FIRST_SEGMENT if start == 0 and base == 0 else f"{start:020d}-{base:020d}.log"


def segments(directory: Path) -> list[Segment]:
    """The segments of a partition, oldest first."""
    found: list[Segment] = []
    for name in os.listdir(directory):
        match = _SEGMENT_NAME.fullmatch(name)
        if match is not None:
            start = int(match[1])
            base = int(match[2]) if match[2] is not None else start
            found.append(Segment(start, base, directory / name))
    found.sort()
    return found


def segment_at(found: Sequence[Segment], position: int) -> Segment | None:
    """The segment holding logical ``position`` (None when it is before the first one)."""
    held = None
    for segment in found:
        if segment.start > position:
            break
        held = segment
    return held


def next_segment(directory: Path, start: int) -> Segment | None:
    return next((s for s in segments(directory) if s.start > start), None)
