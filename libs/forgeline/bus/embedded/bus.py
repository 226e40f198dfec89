"""The embedded bus: the data directory (``LogStore``) and its producers and consumers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from forgeline.bus.embedded.consumer import EmbeddedConsumer
from forgeline.bus.embedded.layout import check_name
from forgeline.bus.embedded.producer import EmbeddedProducer
from forgeline.bus.embedded.store import LogStore
from forgeline.bus.port import Bus


class EmbeddedBus(LogStore):
    """A Bus on local disk, shared by the processes of one machine through ``root``.

    Its settings (partition counts, fsync, retention, free space) are ``LogStore``'s.
    """

    def producer(self, send_timeout_s: float | None = None) -> EmbeddedProducer:
        return EmbeddedProducer(self, self.send_timeout_s if send_timeout_s is None else send_timeout_s)

    def consumer(self, group: str, topics: Sequence[str]) -> EmbeddedConsumer:
        check_name("group", group)
        return EmbeddedConsumer(self, topics, group)

    def reader(self, topics: Sequence[str]) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, topics, None)


if TYPE_CHECKING:
    # mypy proves here that the adapter satisfies the port.
    _PORT_CHECK: Bus = EmbeddedBus(Path("."))
