"""The ``raw.logister`` envelope: what the gateway appends and the normalizer reads.

Two versions live on the log, and the normalizer reads both:

- ``"v": 1`` — one event per record (the single routes, and every record written before
  batches had their own shape): ``{"v":1,"route","event_id","organisation_id","project_id",
  "environment","token_id","received_at","body"}``, ``body`` the envelope's content.
- ``"v": 2`` — one accepted batch request per record: ``{"v":2,"route","organisation_id",
  "project_id","environment","token_id","items":[{"event_id","received_at","line"}...]}``.
  ``line`` is the NDJSON line exactly as accepted (a JSON object, embedded verbatim: the
  gateway never re-serializes an event), ``event_id`` the id the response promised and
  ``received_at`` (epoch ms) the item's first receive time.

Size: a batch may inflate to 16 MiB while a Kafka record must fit its 8 MiB produce request
(``forgeline.bus.kafka_options.max_request_bytes``). ``encode_batch`` therefore cuts a batch
into consecutive records of at most ``RECORD_BUDGET_BYTES`` of lines each (a single line
larger than that gets a record of its own, as a v1 record of it would). The gateway refuses
a line larger than an event sent alone may be (``logister_batch.max_line_bytes``, 4 MiB at
the default limits), so at the default limits every record is at most about 4 MiB. A batch
below the budget — every batch logister-python sends — is one record. Each record's key is
its first event id (its 16 bytes, as a v1 record's): stable across a retried request, spread
over partitions.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import msgspec

V1 = 1
V2 = 2
RECORD_BUDGET_BYTES = 4 * 1024 * 1024  # half of Kafka's produce request: room for headers and batching
_ITEM_OVERHEAD = 96  # the item's keys, id and time around its line


class RawItem(msgspec.Struct):
    """One accepted event of a batch record, as read (an id that is not a UUID fails alone)."""

    event_id: str
    received_at: int
    line: msgspec.Raw


class AcceptedItem(msgspec.Struct):
    """One accepted event, as the gateway writes it: the same JSON as RawItem, the id encoded in C."""

    event_id: uuid.UUID
    received_at: int
    line: msgspec.Raw


Item = RawItem | AcceptedItem


class _Head(msgspec.Struct):
    """What a ``"v": 2`` record says of its whole request, before its items."""

    v: int
    route: str
    organisation_id: str
    project_id: str
    environment: str
    token_id: str


class RawBatch(_Head):
    """A ``"v": 2`` record: one accepted batch request (or a slice of one, see RECORD_BUDGET_BYTES)."""

    items: list[RawItem]


class _Written(_Head):
    """RawBatch as encoded: items of either kind (msgspec checks types when decoding only)."""

    items: Sequence[Item]


class _Version(msgspec.Struct):
    v: int = V1


_encoder = msgspec.json.Encoder()
_version = msgspec.json.Decoder(_Version)
_batch = msgspec.json.Decoder(RawBatch)


def version(value: bytes) -> int:
    """The envelope version of a raw record; raises msgspec.DecodeError/ValidationError."""
    return _version.decode(value).v


def decode_batch(value: bytes) -> RawBatch:
    """A ``"v": 2`` record; raises msgspec.DecodeError/ValidationError when it is not one."""
    return _batch.decode(value)


def encode_batch(
    route: str,
    organisation_id: str,
    project_id: str,
    environment: str,
    token_id: str,
    items: Sequence[Item],
    budget: int = RECORD_BUDGET_BYTES,
) -> list[tuple[bytes, bytes]]:
    """(key, value) of the records carrying ``items``, in order: one unless above ``budget``."""
    out: list[tuple[bytes, bytes]] = []
    chunk: list[Item] = []
    size = 0
    for item in items:
        cost = len(item.line) + _ITEM_OVERHEAD
        if chunk and size + cost > budget:
            out.append(_record(route, organisation_id, project_id, environment, token_id, chunk))
            chunk, size = [], 0
        chunk.append(item)
        size += cost
    if chunk:
        out.append(_record(route, organisation_id, project_id, environment, token_id, chunk))
    return out


def encode_items(
    route: str, organisation_id: str, project_id: str, environment: str, token_id: str, items: Sequence[Item]
) -> bytes:
    """The value of one ``"v": 2`` record holding ``items`` (whatever their size)."""
    return _encoder.encode(_Written(V2, route, organisation_id, project_id, environment, token_id, items))


def _record(
    route: str, organisation_id: str, project_id: str, environment: str, token_id: str, items: list[Item]
) -> tuple[bytes, bytes]:
    value = encode_items(route, organisation_id, project_id, environment, token_id, items)
    first = items[0].event_id
    key = first if isinstance(first, uuid.UUID) else uuid.UUID(first)
    return key.bytes, value  # as a v1 record of that event is keyed
