"""Pick the bus adapter from a URL; adapters are imported only when chosen."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from forgeline.bus.port import Bus
from forgeline.bus.topics import FIXED_PARTITIONS

if TYPE_CHECKING:
    from forgeline.bus.retention import RetentionPolicy
    from forgeline.config import Settings


def create_bus(url: str, default_partitions: int = 4, settings: Settings | None = None) -> Bus:
    """``embedded:///abs/path`` → the disk log; ``kafka://host:port[,host:port]`` → Kafka.

    The embedded log's retention and free-space threshold come from ``settings`` (when not
    given: from the FORGELINE_* environment, as every service reads its settings); Kafka
    keeps its brokers' and topics' own settings.
    """
    parsed = urlparse(url)
    if parsed.scheme == "embedded":
        from forgeline.bus.embedded import EmbeddedBus
        from forgeline.config import Settings

        root = Path(parsed.netloc + parsed.path)
        settings = settings or Settings.from_env(os.environ)
        return EmbeddedBus(
            root,
            default_partitions=default_partitions,
            partitions=FIXED_PARTITIONS,
            retention=retention_policy(settings),
            min_free_bytes=settings.min_free_bytes,
            min_free_percent=settings.min_free_percent,
        )
    if parsed.scheme == "kafka":
        try:
            from forgeline.bus.kafka import KafkaBus
        except ImportError as err:
            raise ValueError(f"FORGELINE_BUS_URL={url!r} needs aiokafka: pip install 'forgeline[kafka]'") from err
        return KafkaBus.from_url(url, default_partitions)
    raise ValueError(f"FORGELINE_BUS_URL={url!r}: unsupported scheme {parsed.scheme!r} (use embedded:// or kafka://)")


def retention_policy(settings: Settings) -> RetentionPolicy:
    """The embedded log's retention: the settings' defaults, compaction for the control
    topics, and the per-topic overrides of ``forgeline.bus.topics.RETENTION_OVERRIDES``."""
    from forgeline.bus.retention import RetentionPolicy, TopicRetention
    from forgeline.bus.topics import CONTROL_TOPICS, RETENTION_OVERRIDES

    def unbounded(value: int) -> int | None:
        return None if value < 0 else value

    default = TopicRetention(
        retention_ms=unbounded(settings.bus_retention_ms),
        retention_bytes=unbounded(settings.bus_retention_bytes),
        segment_bytes=settings.bus_segment_bytes,
        segment_ms=unbounded(settings.bus_segment_ms),
    )
    return RetentionPolicy(default=default, compacted=frozenset(CONTROL_TOPICS), overrides=RETENTION_OVERRIDES)
