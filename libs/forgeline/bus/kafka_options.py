"""Options of the Kafka adapter, read from the bus URL (``FORGELINE_BUS_URL``).

``kafka://host:port[,host:port…][?name=value&…]`` — switching buses stays one setting.
Every option has a default that suits a small cluster; a bad value fails at start and
names the option.

Options (name, default: meaning):

- ``send_timeout_ms`` (500): a send not acknowledged (acks=all) by then raises
  BusUnavailable, so the gateway answers 503 well within 1 s even on a busy host
  (healthy acks=all round trips take milliseconds; a leader election takes longer and
  clients retry the 503).
- ``linger_ms`` (5): how long the producer waits to fill a batch; 5 ms costs little
  latency and lets concurrent requests share one produce request.
- ``batch_bytes`` (262144): per-partition batch; a gateway burst fits one request and
  the memory stays small.
- ``max_request_bytes`` (8 MiB): largest produce request and topic ``max.message.bytes``;
  one record must fit (the gateway accepts payloads up to 4 MiB inflated).
- ``compression`` (lz4 when aiokafka can do it, i.e. ``cramjam`` is installed; else none):
  gzip is always available, but aiokafka runs it at level 9 in the event loop, which costs
  the gateway more CPU per request than it saves on a LAN; lz4 is cheap. Set
  ``compression=gzip`` where bandwidth is what is scarce.
- ``replication_factor`` (min(3, brokers)): for topics created by ``ensure_topics``.
- ``retention_ms`` (7 days), ``retention_bytes`` (unset: the broker's ``log.retention.bytes``):
  ``retention.ms`` / ``retention.bytes`` (per partition) of the raw, typed, event and
  dead-letter topics created by ``ensure_topics`` (topics.RETENTION_OVERRIDES still win);
  the control topics are compacted and kept. The embedded log's FORGELINE_BUS_RETENTION_*
  settings do not apply to Kafka: existing topics keep their configs (``kafka-configs.sh``).
- ``session_timeout_ms`` (10000): how long a dead consumer keeps its partitions.
- ``fetch_max_bytes`` (16 MiB), ``partition_fetch_bytes`` (1 MiB): what one consumer
  buffers ahead of ``poll``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlparse

_COMPRESSIONS: Final = ("none", "gzip", "lz4")


def _lz4_available() -> bool:
    # aiokafka compresses lz4 through cramjam (a compiled extension, not a dependency of ours).
    from aiokafka.codec import has_lz4

    return bool(has_lz4())


@dataclass(frozen=True, slots=True)
class KafkaOptions:
    bootstrap_servers: tuple[str, ...]
    send_timeout_ms: int = 500
    linger_ms: int = 5
    batch_bytes: int = 256 * 1024
    max_request_bytes: int = 8 * 1024 * 1024
    compression: str = "none"
    replication_factor: int | None = None
    retention_ms: int = 7 * 24 * 3600 * 1000
    retention_bytes: int | None = None
    session_timeout_ms: int = 10_000
    fetch_max_bytes: int = 16 * 1024 * 1024
    partition_fetch_bytes: int = 1024 * 1024

    @property
    def compression_type(self) -> str | None:
        return None if self.compression == "none" else self.compression

    @classmethod
    def from_url(cls, url: str) -> KafkaOptions:
        parsed = urlparse(url)
        if parsed.scheme != "kafka":
            raise ValueError(f"not a kafka:// URL: {url!r}")
        servers = tuple(s.strip() for s in parsed.netloc.split(",") if s.strip())
        if not servers:
            raise ValueError(f"FORGELINE_BUS_URL={url!r}: no broker address (kafka://host:port[,host:port])")
        ints: dict[str, int] = {}
        compression = "lz4" if _lz4_available() else "none"
        replication: int | None = None
        int_names = {
            "send_timeout_ms",
            "linger_ms",
            "batch_bytes",
            "max_request_bytes",
            "retention_ms",
            "retention_bytes",
            "session_timeout_ms",
            "fetch_max_bytes",
            "partition_fetch_bytes",
        }
        for name, raw in parse_qsl(parsed.query, keep_blank_values=True):
            if name == "compression":
                if raw not in _COMPRESSIONS:
                    raise ValueError(f"FORGELINE_BUS_URL option compression={raw!r}: use one of {_COMPRESSIONS}")
                if raw == "lz4" and not _lz4_available():
                    raise ValueError("FORGELINE_BUS_URL option compression=lz4 needs the cramjam package")
                compression = raw
            elif name == "replication_factor":
                replication = _positive(name, raw)
            elif name in int_names:
                ints[name] = _positive(name, raw)
            else:
                raise ValueError(f"FORGELINE_BUS_URL: unknown kafka option {name!r}")
        return cls(bootstrap_servers=servers, compression=compression, replication_factor=replication, **ints)


def _positive(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"FORGELINE_BUS_URL option {name}={raw!r}: must be a positive integer")
    return value
