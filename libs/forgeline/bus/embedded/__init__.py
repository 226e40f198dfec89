"""The embedded bus: a durable, partitioned log in local files with Kafka's semantics.

Layout under ``root``: ``forgeline.bus.embedded.layout``; the frame format: ``framing``.

Directories are created 0700 and files 0600 (``forgeline.private_fs``): the log is player data.

Guarantees (those of ``forgeline.bus.port``):

- ``send`` returns once the record is fsync'd. Appends from any number of processes are
  serialised by an ``flock`` on the partition's lock file, so offsets are unique and
  consecutive within a partition. Concurrent sends are group-committed: one write and one
  fsync per partition for everything pending.
- Each append (a send_many, or every send the group commit gathered for a partition) is
  written as batch frames with one crc each (``framing``), cut so that a frame holds at most
  ``FRAME_DATA_BYTES`` (1 MiB) of records, or one larger record alone: appends and reads cost
  per batch, offsets stay per record, and what a reader must decode whole (a frame) stays
  small. Consumers bound each poll by bytes too (``EmbeddedConsumer``). Segments written
  by releases before batch frames are read and appended to in place.
- A writer killed mid-append (kill -9, crash) leaves at most an incomplete frame at the
  tail. Readers treat it as "not yet available"; the next append truncates it, with every
  record in it. None was acknowledged, because acknowledgement comes only after fsync. An
  append of several frames may keep its first, complete frames: records that were not
  acknowledged, which the sender retries (delivery is at least once).
- Commits are durable before ``commit`` returns (temp file, fsync, rename, fsync of the
  directory). A restarted consumer resumes at its last commit: at-least-once delivery.

Retention (``forgeline.bus.retention``, Kafka's setting names): the active segment is closed
at ``segment.bytes`` or ``segment.ms``; closed segments are deleted by ``retention.ms`` and
``retention.bytes`` (oldest first, never the active one), by the producer that closed one and
every ``check_interval_s``. Age never deletes a segment a consumer group has not committed
past; the size bound does, and counts (``forgeline_bus_retention_unread_deleted_records_total``)
and logs what the group loses. A consumer whose offset is gone resumes at the log start
(Kafka's ``auto.offset.reset=earliest``). Compacted topics (``control.*``) keep the last record
per key (and every keyless one) in closed segments; their offsets then have gaps. Compaction
runs whenever a producer closes a segment of the topic. "compact,delete" topics (the notifier's
delivery log) also drop, from closed segments, every key whose last record is older than their
``retention.ms`` (``retention.key_retention_ms``).

Disk space: below ``min_free_bytes`` / ``min_free_percent`` free under the root, sends raise
DiskFull without writing; an append that hits ENOSPC anyway is cut back to the last record
boundary and raises DiskFull. Either way nothing torn or unacknowledged stays in the log.

Known limits:

- A producer scans the active segment of each partition it first writes (and a consumer
  scans from its start position for ``end_offsets``) once, linear in the segment size.
- Compaction keeps small closed segments as they are (it does not merge them), and keys
  of "compact" topics are never forgotten (there are no tombstones: state records carry
  flags such as ``revoked``), so such a topic grows with its number of keys (the audit
  entries of ``control.console``, one key per change, included).
- A frame is read and decoded whole: a consumer holds every record of the frame it reads
  (about 1 MiB, or one larger record; frames written by the release before this bound hold
  a whole append), whatever ``max_records`` or byte budget its poll asks for.
- The segment roll is checked before an append, so one large append can take a segment
  past ``segment.bytes`` by its size.
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

Modules: ``layout`` (paths and segment names), ``framing`` (the frame codec and scanner),
``files`` (locks, sealed files), ``log`` (one partition's appends and recovery), ``cleanup``
(retention and compaction), ``store`` (topics, free space), ``producer``, ``positions`` (a
consumer's place in a partition), ``consumer``, ``bus``.
"""

from forgeline.bus.embedded.bus import EmbeddedBus
from forgeline.bus.embedded.consumer import EmbeddedConsumer
from forgeline.bus.embedded.framing import Scanner as _Scanner
from forgeline.bus.embedded.producer import EmbeddedProducer

# ``_Scanner`` is kept for tests that check segment files frame by frame.
__all__ = ["EmbeddedBus", "EmbeddedConsumer", "EmbeddedProducer", "_Scanner"]
