"""Pick the bus adapter from a URL; adapters are imported only when chosen."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from forgeline.bus.port import Bus
from forgeline.bus.topics import FIXED_PARTITIONS


def create_bus(url: str, default_partitions: int = 4) -> Bus:
    """``embedded:///abs/path`` → the disk log; ``kafka://host:port[,host:port]`` → Kafka."""
    parsed = urlparse(url)
    if parsed.scheme == "embedded":
        from forgeline.bus.embedded import EmbeddedBus

        root = Path(parsed.netloc + parsed.path)
        return EmbeddedBus(root, default_partitions=default_partitions, partitions=FIXED_PARTITIONS)
    if parsed.scheme == "kafka":
        try:
            from forgeline.bus.kafka import KafkaBus
        except ImportError as err:
            raise ValueError(f"FORGELINE_BUS_URL={url!r} needs aiokafka: pip install 'forgeline[kafka]'") from err
        return KafkaBus.from_url(url, default_partitions)
    raise ValueError(f"FORGELINE_BUS_URL={url!r}: unsupported scheme {parsed.scheme!r} (use embedded:// or kafka://)")
