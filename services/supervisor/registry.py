"""Every processor by name: how to build it, and whether it needs the warehouse."""

from __future__ import annotations

from forgeline.processing.registry import ServiceSpec
from services.errors import main as errors
from services.exporter import main as exporter
from services.monitors import main as monitors
from services.normalizer import main as normalizer
from services.notifier import main as notifier
from services.spans import main as spans
from services.writer import main as writer

# Dict order is start order (and the order `forgeline up` lists them in).
SERVICES: dict[str, ServiceSpec] = {
    "normalizer": ServiceSpec(normalizer.build),
    "writer": ServiceSpec(writer.build, uses_warehouse=True),
    "errors": ServiceSpec(errors.build, uses_warehouse=True),
    "spans": ServiceSpec(spans.build, uses_warehouse=True),
    "monitors": ServiceSpec(monitors.build, uses_warehouse=True),
    "exporter": ServiceSpec(exporter.build),
    "notifier": ServiceSpec(notifier.build),
}
