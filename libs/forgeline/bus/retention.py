"""How long the embedded log keeps records, in Kafka's own terms.

Per topic, as Kafka's topic configs of the same names:

- ``retention.ms``: a closed segment whose newest record is older than this is deleted
  (None: kept by age forever, Kafka's -1).
- ``retention.bytes``: per partition; the oldest closed segments are deleted while the
  partition is larger than this (None: no size bound, Kafka's -1 and default).
- ``segment.bytes`` / ``segment.ms``: when the active segment is closed and a new one started.
  Only closed segments are ever deleted or compacted, so these bound how much retention can
  lag behind its setting.
- ``cleanup.policy``: "compact" (the control topics, as on Kafka) keeps the last record per
  key and never deletes by age or size; "compact,delete" (control topics with one key per
  event, such as the notifier's delivery log) also forgets a key once its last record is
  older than ``retention.ms`` (see ``key_retention_ms``), never by size; "delete" is
  everything else.

Unlike Kafka, the embedded log also keeps a closed segment that a consumer group has not
committed past yet, unless ``retention.bytes`` forces it out (the disk bound wins; the
records lost to a group are then counted and logged).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from forgeline.bus.topics import COMPACT_DELETE_TOPICS

CleanupPolicy = Literal["delete", "compact", "compact,delete"]

DAY_MS = 24 * 3600 * 1000


def key_retention_ms(log_retention_ms: int | None, log_segment_ms: int | None) -> int | None:
    """``retention.ms`` of a "compact,delete" topic, from the settings of the topics whose
    records its keys answer for (None: keys are never forgotten).

    Such a key records what was done with a record of another topic (the notifier's delivery
    log: "this delivery was sent"), so it may be forgotten only once that record can no longer
    be replayed. A record stays until its segment is deleted: the segment closes at most
    ``segment.ms`` after the record, and goes ``retention.ms`` after its newest record, so a
    record lives at most ``retention.ms + segment.ms``. Twice that also covers a consumer that
    stopped with a batch in flight and comes back as late (it replays the batch then, and the
    embedded log keeps records a group has not read). Either setting unbounded (-1) means
    records may stay forever, and so do the keys.
    """
    if log_retention_ms is None or log_segment_ms is None:
        return None
    return 2 * (log_retention_ms + log_segment_ms)


@dataclass(frozen=True, slots=True)
class TopicRetention:
    """The settings of one topic (see the module docstring)."""

    retention_ms: int | None = 7 * DAY_MS
    retention_bytes: int | None = None
    segment_bytes: int = 64 * 1024 * 1024
    segment_ms: int | None = 3600 * 1000
    cleanup_policy: CleanupPolicy = "delete"

    @property
    def compact(self) -> bool:
        """Keys are compacted ("compact" or "compact,delete")."""
        return self.cleanup_policy != "delete"

    @property
    def key_expiry_ms(self) -> int | None:
        """A compacted topic's age after which a key's last record goes too (None: never)."""
        return self.retention_ms if self.cleanup_policy == "compact,delete" else None


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Defaults for every topic, the compacted topics, and per-topic overrides.

    ``compact_delete`` are the compacted topics whose keys also expire: their ``retention.ms`` is
    ``key_retention_ms`` of the default settings, and no size bound applies (forgetting a key
    for space could send a notification twice).

    ``overrides`` maps a topic name to Kafka-named settings ("retention.ms", "retention.bytes",
    "segment.bytes", "segment.ms"; -1 means unbounded); ``check_interval_s`` is how often a
    producer looks for segments to delete (Kafka's ``log.retention.check.interval.ms``) besides
    every time it closes a segment.
    """

    default: TopicRetention = field(default_factory=TopicRetention)
    compacted: frozenset[str] = frozenset()
    compact_delete: frozenset[str] = frozenset(COMPACT_DELETE_TOPICS)
    overrides: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    check_interval_s: float = 30.0

    def for_topic(self, topic: str) -> TopicRetention:
        settings = self.default
        if topic in self.compact_delete:
            settings = replace(
                settings,
                cleanup_policy="compact,delete",
                retention_ms=key_retention_ms(settings.retention_ms, settings.segment_ms),
                retention_bytes=None,
            )
        elif topic in self.compacted:
            settings = replace(settings, cleanup_policy="compact")
        for name, value in self.overrides.get(topic, {}).items():
            settings = _override(settings, topic, name, value)
        return settings


def _override(settings: TopicRetention, topic: str, name: str, value: int) -> TopicRetention:
    unbounded = None if value < 0 else value
    if name == "retention.ms":
        return replace(settings, retention_ms=unbounded)
    if name == "retention.bytes":
        return replace(settings, retention_bytes=unbounded)
    if name == "segment.ms":
        return replace(settings, segment_ms=unbounded)
    if name == "segment.bytes" and value > 0:
        return replace(settings, segment_bytes=value)
    raise ValueError(f"topic {topic!r}: unknown or invalid retention override {name}={value}")
