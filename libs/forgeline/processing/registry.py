"""What a processor is built from, and how the runner finds one by name.

Each service module exposes ``build(parts) -> ProcessorHost``; the supervisor's registry
(``services/supervisor/registry.py``) maps names to those builders, so running a processor
— in one process or alone with ``forgeline process NAME`` — is one look-up, not a chain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from forgeline.bus.port import Bus
from forgeline.config import Settings
from forgeline.processing.deadletter import DeadLetterPolicy
from forgeline.processing.host import ProcessorHost
from forgeline.warehouse.port import Warehouse


@dataclass(frozen=True)
class Parts:
    """The shared things a processor is built from (the warehouse only if it uses one)."""

    settings: Settings
    bus: Bus
    warehouse_or_none: Warehouse | None = None

    @property
    def warehouse(self) -> Warehouse:
        if self.warehouse_or_none is None:
            raise RuntimeError("this processor needs the warehouse, and none was opened")
        return self.warehouse_or_none

    @property
    def dead_letters(self) -> DeadLetterPolicy:
        s = self.settings
        return DeadLetterPolicy(s.dlq_max_ratio, s.dlq_min_records, s.dlq_window_records)


@dataclass(frozen=True)
class ServiceSpec:
    build: Callable[[Parts], ProcessorHost]
    uses_warehouse: bool = False
