"""THE PREVIOUS FRAME FORMAT, frozen: the single-record frame (version 1) that every append
wrote before batch frames. Copied from forgeline/bus/embedded.py as of commit f8322d0
so tests can write segments as an older release left them; never change these lines.

magic (u8, 1) | crc32 (u32) | offset (u64) | timestamp_ms (u64) | key length (i32, -1 = None)
| value length (u32) | headers length (u32) | key | value | headers
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

from forgeline.bus.port import OutgoingRecord

_MAGIC = 1
_PREFIX = struct.Struct("<BI")  # magic, crc32
_FIELDS = struct.Struct("<QQiII")  # offset, timestamp_ms, key, value and headers lengths
_U32 = struct.Struct("<I")


def _encode_headers(headers: Sequence[tuple[str, bytes]]) -> bytes:
    parts: list[bytes] = []
    for name, value in headers:
        raw = name.encode()
        parts += (_U32.pack(len(raw)), raw, _U32.pack(len(value)), bytes(value))
    return b"".join(parts)


def encode_record_v1(offset: int, timestamp_ms: int, record: OutgoingRecord) -> bytes:
    key = record.key
    headers = _encode_headers(record.headers)
    key_len = -1 if key is None else len(key)
    fields = _FIELDS.pack(offset, timestamp_ms, key_len, len(record.value), len(headers))
    body = b"".join((fields, key or b"", record.value, headers))
    return _PREFIX.pack(_MAGIC, zlib.crc32(body)) + body


def append_v1(path: Path, first_offset: int, records: Sequence[OutgoingRecord], timestamp_ms: int = 1) -> int:
    """Append ``records`` to a segment file as the previous release did; returns the next offset."""
    with path.open("ab") as handle:
        handle.write(b"".join(encode_record_v1(first_offset + i, timestamp_ms, r) for i, r in enumerate(records)))
    return first_offset + len(records)
