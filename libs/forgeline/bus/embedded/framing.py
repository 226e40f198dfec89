"""The on-disk frame format of the embedded log, and the scanner that reads it back.

A segment file is a sequence of frames. Every frame starts with a magic byte naming its
version and a crc32 covering every byte after the crc field, so a frame is valid only when
it is complete and unchanged; a frame torn by a crash fails its crc (or is short) and is
dropped whole, with every record in it.

Version 2, the batch frame (written by every append): an append of N records is one frame,
or several consecutive ones when the records hold more than ``FRAME_DATA_BYTES`` (a reader
decodes a frame whole, so a frame's size bounds what a consumer reads at once; a record
larger than the bound is a frame of its own).

    magic (u8, 2) | crc32 (u32) | base offset (u64) | timestamp_ms (u64) | count (u32)
    | data length (u32) | count × (key length i32 (-1 = None), value length u32,
    headers length u32) | data: key, value, headers of each record in turn

Record i has offset ``base offset + i``: the offsets of one frame are consecutive (a
compaction that drops some records of a frame writes the survivors as several frames).
The length table comes before the data so that a reader unpacks it in one
``struct.iter_unpack`` call and then only slices.

Version 1, the single-record frame (written by releases before the batch frame; still read,
so a log written by them is consumed in place, and compaction keeps such frames as they are):

    magic (u8, 1) | crc32 (u32) | offset (u64) | timestamp_ms (u64) | key length (i32, -1 = None)
    | value length (u32) | headers length (u32) | key | value | headers

Headers (both versions) are a sequence of (u32 name length, utf-8 name, u32 value length,
value); their total length is in the frame, so no count is needed.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from typing import Final, Literal

from forgeline.bus.embedded.files import is_sealed
from forgeline.bus.port import OutgoingRecord, Record

SINGLE: Final = 1
BATCH: Final = 2
_CRC_END: Final = 5  # magic (u8) and crc32 (u32) come first in both versions
_MAGIC_CRC: Final = struct.Struct("<BI")
_SINGLE_HEADER: Final = struct.Struct("<BIQQiII")  # magic, crc, offset, timestamp_ms, key/value/headers lengths
_BATCH_FIELDS: Final = struct.Struct("<QQII")  # base offset, timestamp_ms, count, data length
_BATCH_HEADER: Final = struct.Struct("<BIQQII")
_LENGTHS: Final = struct.Struct("<iII")  # one record's key, value and headers lengths
_MIN_HEADER: Final = min(_SINGLE_HEADER.size, _BATCH_HEADER.size)
_U32: Final = struct.Struct("<I")
# Reads ahead for consumers are small (polls come often); scans read larger chunks.
READ_CHUNK: Final = 64 << 10
SCAN_CHUNK: Final = 1 << 20
# Record bytes (keys, values, encoded headers) one batch frame holds at most, unless a single
# record is larger. An append's cost is mostly per append (one write, one fsync), so cutting it
# into 1 MiB frames costs little, and it bounds what a reader decodes at once and keeps every
# length far below the u32 limit of the format (a frame of 4 GiB could not be encoded).
FRAME_DATA_BYTES: Final = 1 << 20

Headers = tuple[tuple[str, bytes], ...]
_new_tuple: Final = tuple.__new__


def _encode_headers(headers: Sequence[tuple[str, bytes]]) -> bytes:
    parts: list[bytes] = []
    for name, value in headers:
        raw = name.encode()
        parts += (_U32.pack(len(raw)), raw, _U32.pack(len(value)), bytes(value))
    return b"".join(parts)


def _decode_headers(raw: bytes) -> Headers:
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


def encode_batch(base_offset: int, timestamp_ms: int, records: Sequence[OutgoingRecord]) -> bytes:
    """One batch frame holding ``records`` at offsets ``base_offset``, ``base_offset + 1``, ..."""
    return encode_frames(base_offset, timestamp_ms, records, max_data_bytes=None)


def encode_frames(
    base_offset: int,
    timestamp_ms: int,
    records: Sequence[OutgoingRecord],
    max_data_bytes: int | None = FRAME_DATA_BYTES,
) -> bytes:
    """``records`` at offsets ``base_offset``, ``base_offset + 1``, ... as consecutive batch frames.

    A frame is cut before a record that would take its record bytes above ``max_data_bytes``
    (None: one frame), so every frame holds at least one record and a record larger than the
    bound is alone in its frame.
    """
    limit = max_data_bytes if max_data_bytes is not None else 1 << 62
    parts: list[bytes] = []  # every frame's pieces, joined once (one copy of the data)
    lengths: list[int] = []
    data: list[bytes] = []
    size = 0
    # Producers send many records with the same headers (a tuple constant): encode them once.
    encoded: dict[Headers, bytes] = {}
    for record in records:
        key, value = record.key, record.value
        headers = encoded.get(record.headers)
        if headers is None:
            headers = encoded[record.headers] = _encode_headers(record.headers)
        value_len, headers_len = len(value), len(headers)
        if key is None:
            key_len = -1
            record_size = value_len + headers_len
        else:
            key_len = len(key)
            record_size = key_len + value_len + headers_len
        size += record_size
        if size > limit and lengths:  # cut before this record: the frame so far is full
            parts += _batch_frame(base_offset, timestamp_ms, lengths, data)
            base_offset += len(lengths) // 3
            lengths, data, size = [], [], record_size
        if key is not None:
            data.append(key)
        lengths += (key_len, value_len, headers_len)
        data += (value, headers)
    if lengths:
        parts += _batch_frame(base_offset, timestamp_ms, lengths, data)
    return b"".join(parts)


def _batch_frame(base_offset: int, timestamp_ms: int, lengths: list[int], data: list[bytes]) -> tuple[bytes, ...]:
    """One batch frame's pieces (magic and crc, fields, length table, data), to be joined."""
    count = len(lengths) // 3
    body = b"".join(data)
    table = struct.pack(f"<{count * 'iII'}", *lengths)
    fields = _BATCH_FIELDS.pack(base_offset, timestamp_ms, count, len(body))
    crc = zlib.crc32(body, zlib.crc32(table, zlib.crc32(fields)))
    return _MAGIC_CRC.pack(BATCH, crc), fields, table, body


class Frame:
    """One valid frame found in a log file: ``count`` records from ``offset`` on (decoded on demand)."""

    __slots__ = ("position", "size", "offset", "count", "timestamp_ms", "version", "_buf", "_at")

    def __init__(
        self, buf: bytes, at: int, position: int, size: int, version: int, offset: int, count: int, timestamp_ms: int
    ) -> None:
        self._buf, self._at, self.version = buf, at, version
        self.position, self.size = position, size
        self.offset, self.count, self.timestamp_ms = offset, count, timestamp_ms

    @property
    def end(self) -> int:
        return self.position + self.size

    @property
    def next_offset(self) -> int:
        """The offset after this frame's last record."""
        return self.offset + self.count

    def raw(self) -> bytes:
        return self._buf[self._at : self._at + self.size]

    def records(self, topic: str, partition: int, first: int = 0) -> list[Record]:
        """The records of this frame at offsets ``first`` and later, in offset order."""
        buf, offset, timestamp_ms = self._buf, self.offset, self.timestamp_ms
        out: list[Record] = []
        if self.version == SINGLE:
            if offset >= first:
                key, value, headers = self._single()
                out.append(Record(topic, partition, offset, key, value, timestamp_ms, headers))
            return out
        append = out.append
        # Records of one batch usually share their headers: decode a block once, and compare
        # the next one in place (no slice) with the last seen.
        last_raw = b""
        last_headers: Headers = ()
        at = self._data_start()
        for key_len, value_len, headers_len in self._lengths():
            if key_len < 0:
                key = None
            else:
                key = buf[at : at + key_len]
                at += key_len
            value = buf[at : at + value_len]
            at += value_len
            if headers_len != len(last_raw) or not buf.startswith(last_raw, at):
                last_raw = buf[at : at + headers_len]
                last_headers = _decode_headers(last_raw)
            at += headers_len
            if offset >= first:
                # tuple.__new__ skips the NamedTuple's Python-level __new__ (2.5× its cost).
                append(_new_tuple(Record, (topic, partition, offset, key, value, timestamp_ms, last_headers)))
            offset += 1
        self._check_end(at)
        return out

    def keys(self) -> list[bytes | None]:
        """The key of each record, in offset order (for compaction)."""
        if self.version == SINGLE:
            return [self._single()[0]]
        buf, at = self._buf, self._data_start()
        keys: list[bytes | None] = []
        for key_len, value_len, headers_len in self._lengths():
            keys.append(None if key_len < 0 else buf[at : at + key_len])
            at += max(key_len, 0) + value_len + headers_len
        self._check_end(at)
        return keys

    def _single(self) -> tuple[bytes | None, bytes, Headers]:
        _, _, _, _, key_len, value_len, headers_len = _SINGLE_HEADER.unpack_from(self._buf, self._at)
        buf, at = self._buf, self._at + _SINGLE_HEADER.size
        key = None
        if key_len >= 0:
            key = buf[at : at + key_len]
            at += key_len
        value = buf[at : at + value_len]
        return key, value, _decode_headers(buf[at + value_len : at + value_len + headers_len])

    def _data_start(self) -> int:
        return self._at + _BATCH_HEADER.size + self.count * _LENGTHS.size

    def _lengths(self) -> Iterator[tuple[int, int, int]]:
        start = self._at + _BATCH_HEADER.size
        return _LENGTHS.iter_unpack(memoryview(self._buf)[start : start + self.count * _LENGTHS.size])

    def _check_end(self, at: int) -> None:
        # The crc matched, so only a faulty writer could get here; never return misread records.
        if at != self._at + self.size:
            raise ValueError(f"batch frame at {self.position}: its lengths do not add up to its size")


class Scanner:
    """Walks the valid frames of a log file from a byte position (which must be a boundary).

    Stops at the end of the file as it was when the scanner was made, or at the first frame
    that is incomplete or fails its crc. ``position`` is then the end of the valid prefix and
    ``stopped`` says why: "end", "short" (incomplete: a write in progress or a torn tail) or
    "corrupt" (a complete-looking frame with a bad magic, lengths or crc).
    """

    def __init__(self, fd: int, position: int, chunk: int = SCAN_CHUNK, base: int = 0) -> None:
        # Positions are logical (the segment's start plus the byte in its file): ``base`` is
        # where this file starts. ``sealed``: a later segment has replaced it as the active one.
        self._fd = fd
        self._chunk = chunk
        self._base = base
        st = os.fstat(fd)
        self.size = base + st.st_size
        self.sealed = is_sealed(st.st_mode)
        self.position = position
        self.stopped: Literal["end", "short", "corrupt"] | None = None
        # For "corrupt": the sizes the bad frame may have, as far as its header tells (a
        # recovering appender looks for valid frames after it, which mean damage, not a torn tail).
        self.corrupt_sizes: tuple[int, ...] = ()
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

    def _stop(self, why: Literal["end", "short", "corrupt"], *sizes: int) -> None:
        self.stopped = why
        remaining = self.size - self.position
        self.corrupt_sizes = tuple(size for size in sizes if 0 < size <= remaining)

    def next(self) -> Frame | None:
        if self.stopped is not None:
            return None
        remaining = self.size - self.position
        if remaining <= 0:
            self._stop("end")
            return None
        if remaining < _MIN_HEADER or not self._have(_MIN_HEADER):
            self._stop("short")
            return None
        rel = self.position - self._buf_start
        version = self._buf[rel]
        if version not in (SINGLE, BATCH):
            # A damaged magic byte: the frame's size is that of either layout.
            self._stop("corrupt", *self._claimed_sizes(rel))
            return None
        if version == BATCH:
            _, crc, offset, timestamp_ms, count, data_len = _BATCH_HEADER.unpack_from(self._buf, rel)
            size = _BATCH_HEADER.size + count * _LENGTHS.size + data_len
            if count == 0:
                self._stop("corrupt", size)
                return None
        else:
            if remaining < _SINGLE_HEADER.size or not self._have(_SINGLE_HEADER.size):
                self._stop("short")
                return None
            rel = self.position - self._buf_start
            _, crc, offset, timestamp_ms, key_len, value_len, headers_len = _SINGLE_HEADER.unpack_from(self._buf, rel)
            if key_len < -1:
                self._stop("corrupt")
                return None
            size = _SINGLE_HEADER.size + max(key_len, 0) + value_len + headers_len
            count = 1
        # Compare with the file size before reading, so a garbage length never allocates.
        if size > remaining or not self._have(size):
            self._stop("short")
            return None
        rel = self.position - self._buf_start
        if zlib.crc32(memoryview(self._buf)[rel + _CRC_END : rel + size]) != crc:
            self._stop("corrupt", size)
            return None
        frame = Frame(self._buf, rel, self.position, size, version, offset, count, timestamp_ms)
        self.position += size
        return frame

    def _claimed_sizes(self, rel: int) -> list[int]:
        """The sizes a frame with a bad magic byte would have as each version."""
        _, _, _, _, count, data_len = _BATCH_HEADER.unpack_from(self._buf, rel)
        sizes = [_BATCH_HEADER.size + count * _LENGTHS.size + data_len]
        if self._have(_SINGLE_HEADER.size):
            rel = self.position - self._buf_start
            _, _, _, _, key_len, value_len, headers_len = _SINGLE_HEADER.unpack_from(self._buf, rel)
            sizes.append(_SINGLE_HEADER.size + max(key_len, 0) + value_len + headers_len)
        return sizes
