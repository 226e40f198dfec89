"""Topic provisioning on Kafka (``forgeline topics ensure`` and every service start).

Guarantees: ``ensure_topics`` is idempotent and safe to run from many processes at once
(a topic another process created meanwhile counts as success). It never changes an
existing topic: a partition count that differs from the configured one is logged and kept,
because raising it would move keys to other partitions.

Failure modes: an unreachable cluster raises BusUnavailable (retriable); a refused
creation (bad config, not authorised) raises RuntimeError naming the topic and the
broker's error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from forgeline.bus.kafka_options import KafkaOptions
from forgeline.bus.port import BusUnavailable
from forgeline.bus.retention import key_retention_ms
from forgeline.bus.topics import COMPACT_DELETE_TOPICS, CONTROL_TOPICS, RETENTION_OVERRIDES

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
# Control topics holding state are compacted (last value per key) and never expire, except
# the compact+delete ones (one key per event) whose keys expire; everything else expires
# after the configured retention.
COMPACTED_TOPICS = frozenset(CONTROL_TOPICS)
# The topics created here leave segment.ms to the broker: log.roll.hours, 168 by default.
# Keys of compact+delete topics are kept as if the other topics' segments closed that late.
BROKER_SEGMENT_MS = 7 * 24 * 3600 * 1000


def topic_config(topic: str, options: KafkaOptions, replication: int) -> dict[str, str]:
    """The configuration a topic is created with."""
    config: dict[str, str] = {
        # acks=all is only as strong as the in-sync replicas it waits for.
        "min.insync.replicas": "2" if replication >= 3 else "1",
        "max.message.bytes": str(options.max_request_bytes),
    }
    if topic in COMPACT_DELETE_TOPICS:
        # A key goes once its last record is older than what the other topics may still replay
        # (retention.key_retention_ms); never by size, which could forget a recent key.
        key_ms = key_retention_ms(options.retention_ms, BROKER_SEGMENT_MS)
        config["cleanup.policy"] = "compact,delete"
        config["retention.ms"] = str(key_ms)
        config["retention.bytes"] = "-1"
    elif topic in COMPACTED_TOPICS:
        config["cleanup.policy"] = "compact"
    else:
        config["cleanup.policy"] = "delete"
        config["retention.ms"] = str(options.retention_ms)
        if options.retention_bytes is not None:
            config["retention.bytes"] = str(options.retention_bytes)
    # The same per-topic settings the embedded log applies (Kafka's names, -1 = unbounded).
    config.update({name: str(value) for name, value in RETENTION_OVERRIDES.get(topic, {}).items()})
    return config


async def ensure_topics(
    options: KafkaOptions,
    topics: Iterable[str],
    default_partitions: int,
    partitions: Mapping[str, int],
    timeout_s: float = 15.0,
) -> dict[str, int]:
    """Create the missing ``topics``; return every topic's actual partition count."""
    wanted = list(dict.fromkeys(topics))
    admin = AIOKafkaAdminClient(
        bootstrap_servers=list(options.bootstrap_servers),
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            cluster = await admin.describe_cluster()
            brokers = len(cluster.get("brokers", [])) or 1
            replication = options.replication_factor or min(3, brokers)
            existing = await _partition_counts(admin, wanted)
            missing = [t for t in wanted if t not in existing]
            if missing:
                new = [
                    NewTopic(
                        name=t,
                        num_partitions=partitions.get(t, default_partitions),
                        replication_factor=replication,
                        topic_configs=topic_config(t, options, replication),
                    )
                    for t in missing
                ]
                response = await admin.create_topics(new, timeout_ms=int(timeout_s * 1000))
                for name, code, *rest in response.topic_errors:
                    if code not in (0, _TOPIC_ALREADY_EXISTS):
                        raise RuntimeError(f"creating Kafka topic {name!r} failed: error {code} {rest}")
                    if code == 0:
                        log.info("created topic", extra={"topic": name, "replication": replication})
                existing.update(await _wait_visible(admin, missing))
    except (KafkaConnectionError, KafkaTimeoutError, TimeoutError) as err:
        raise BusUnavailable(f"Kafka at {','.join(options.bootstrap_servers)} unreachable: {err!r}") from err
    except KafkaError as err:
        if getattr(err, "retriable", False):
            raise BusUnavailable(f"Kafka refused topic provisioning for now: {err!r}") from err
        raise
    finally:
        await admin.close()
    for topic in wanted:
        configured = partitions.get(topic, default_partitions)
        if existing[topic] != configured:
            log.warning(
                "topic exists with a different partition count; keeping it",
                extra={"topic": topic, "partitions": existing[topic], "configured": configured},
            )
    return {t: existing[t] for t in wanted}


async def _partition_counts(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    # Describing a missing topic by name would auto-create it on brokers with
    # auto.create.topics.enable (aiokafka asks for that): list all names first.
    present = set(await admin.list_topics())
    asked = [t for t in topics if t in present]
    if not asked:
        return {}
    described: list[dict[str, Any]] = await admin.describe_topics(asked)
    counts: dict[str, int] = {}
    for doc in described:
        parts = doc.get("partitions") or []
        # Count a topic only once every partition has a leader: before that, the first
        # sends to a new topic fail with NotLeaderForPartition and eat the send timeout.
        if doc.get("error_code", 0) == 0 and parts and all(p.get("leader", -1) >= 0 for p in parts):
            counts[str(doc["topic"])] = len(parts)
    return counts


async def _wait_visible(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    """Wait until metadata shows every partition of the new topics (creation is asynchronous)."""
    while True:
        counts = await _partition_counts(admin, topics)
        if all(t in counts for t in topics):
            return counts
        await asyncio.sleep(0.05)
