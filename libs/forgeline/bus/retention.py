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
  key and never deletes by age or size; "delete" is everything else.

Unlike Kafka, the embedded log also keeps a closed segment that a consumer group has not
committed past yet, unless ``retention.bytes`` forces it out (the disk bound wins; the
records lost to a group are then counted and logged).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

CleanupPolicy = Literal["delete", "compact"]

DAY_MS = 24 * 3600 * 1000


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
        return self.cleanup_policy == "compact"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Defaults for every topic, the compacted topics, and per-topic overrides.

    ``overrides`` maps a topic name to Kafka-named settings ("retention.ms", "retention.bytes",
    "segment.bytes", "segment.ms"; -1 means unbounded); ``check_interval_s`` is how often a
    producer looks for segments to delete (Kafka's ``log.retention.check.interval.ms``) besides
    every time it closes a segment.
    """

    default: TopicRetention = field(default_factory=TopicRetention)
    compacted: frozenset[str] = frozenset()
    overrides: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    check_interval_s: float = 30.0

    def for_topic(self, topic: str) -> TopicRetention:
        settings = self.default
        if topic in self.compacted:
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
