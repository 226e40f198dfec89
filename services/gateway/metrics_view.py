"""The gateway's /metrics: its own series, not every metric the process happens to import.

The metrics are module-level objects in one registry (``forgeline.telemetry.metrics``), so
importing the processors' code registers their gauges too, and an unlabelled gauge reports
0 from every process: a gateway showed ``forgeline_spans_open_traces 0``. This view keeps
the gateway's families, the bus producer's (the gateway publishes) and the process's.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric

GATEWAY_PREFIXES = ("forgeline_gateway_", "forgeline_bus_produce", "forgeline_bus_records_produced")


def is_gateway_series(name: str) -> bool:
    return not name.startswith("forgeline_") or name.startswith(GATEWAY_PREFIXES)


class _GatewayOnly:
    def collect(self) -> Iterable[Metric]:
        return (family for family in REGISTRY.collect() if is_gateway_series(family.name))


def gateway_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_GatewayOnly())  # a collector needs only collect()
    return registry
