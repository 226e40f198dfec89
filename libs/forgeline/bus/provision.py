"""Create the pipeline's topics on whichever bus is configured (idempotent).

Kafka: through the admin client, with partition counts, retention and the compacted
control topic (``forgeline.bus.kafka_admin``). Embedded: the topic directories, created
exactly as a first send would create them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from forgeline.bus.port import Bus
from forgeline.bus.topics import provisioned_topics


async def ensure_topics(bus: Bus, topics: Sequence[str] | None = None) -> dict[str, int]:
    """Create missing topics; return each topic's partition count. Raises BusUnavailable."""
    wanted = list(provisioned_topics() if topics is None else topics)
    if bus.capabilities.name == "kafka":
        from forgeline.bus.kafka import KafkaBus

        assert isinstance(bus, KafkaBus)
        return await bus.ensure_topics(wanted)
    # The embedded bus creates a topic when its partition count is first asked for.
    return {topic: await asyncio.to_thread(bus.partitions, topic) for topic in wanted}
