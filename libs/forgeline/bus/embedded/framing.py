"""The on-disk frame format of the embedded log, and the scanner that reads it back.

magic (u8) | crc32 (u32) | offset (u64) | timestamp_ms (u64) | key length (i32, -1 = None)
| value length (u32) | headers length (u32) | key | value | headers

The crc covers every byte after the crc field, so a record is valid only when it is
complete and unchanged. Headers are a sequence of (u32 name length, utf-8 name, u32 value
length, value); their total length is in the header, so no count is needed.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from typing import Final, Literal

from forgeline.bus.embedded.files import is_sealed
from forgeline.bus.port import OutgoingRecord, Record

_MAGIC: Final = 1
_PREFIX: Final = struct.Struct("<BI")  # magic, crc32
_FIELDS: Final = struct.Struct("<QQiII")  # offset, timestamp_ms, key, value and headers lengths
_HEADER: Final = struct.Struct("<BIQQiII")  # both, for parsing
_CRC_END: Final = _PREFIX.size
_U32: Final = struct.Struct("<I")
# Reads ahead for consumers are small (polls come often); scans read larger chunks.
READ_CHUNK: Final = 64 << 10
SCAN_CHUNK: Final = 1 << 20


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


def encode_record(offset: int, timestamp_ms: int, record: OutgoingRecord) -> bytes:
    key = record.key
    headers = _encode_headers(record.headers)
    key_len = -1 if key is None else len(key)
    fields = _FIELDS.pack(offset, timestamp_ms, key_len, len(record.value), len(headers))
    body = b"".join((fields, key or b"", record.value, headers))
    return _PREFIX.pack(_MAGIC, zlib.crc32(body)) + body


class Frame:
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


class Scanner:
    """Walks the valid records of a log file from a byte position (which must be a boundary).

    Stops at the end of the file as it was when the scanner was made, or at the first record
    that is incomplete or fails its crc. ``position`` is then the end of the valid prefix and
    ``stopped`` says why: "end", "short" (incomplete: a write in progress or a torn tail) or
    "corrupt" (a complete-looking record with a bad magic, lengths or crc).
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

    def next(self) -> Frame | None:
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
        frame = Frame(self._buf, rel, self.position, size, header)
        self.position += size
        return frame
