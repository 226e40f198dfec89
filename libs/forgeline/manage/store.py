"""Reading and writing control.console (users, admin keys, audit) through the bus port."""

from __future__ import annotations

import asyncio
import logging

from forgeline.bus.follow import read_new, read_to_end
from forgeline.bus.port import ADMIN_SEND_TIMEOUT_S, Bus, Consumer, OutgoingRecord, Producer, Record
from forgeline.bus.topics import CONTROL_CONSOLE
from forgeline.manage.model import ConsoleTable, Entity, decode_entity, encode_entity, entity_key

log = logging.getLogger(__name__)


class ConsoleStore:
    """The console's state, read to the end at start and caught up on demand; writes via the bus."""

    def __init__(self, bus: Bus) -> None:
        self.table = ConsoleTable()
        self._reader: Consumer = bus.reader([CONTROL_CONSOLE])
        self._producer: Producer = bus.producer(send_timeout_s=ADMIN_SEND_TIMEOUT_S)
        # One poll of the reader at a time: requests and the refresh loop both catch up.
        self._reading = asyncio.Lock()

    async def __aenter__(self) -> ConsoleStore:
        await self._producer.start()
        await self._reader.start()
        await read_to_end(self._reader, self._apply)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()
        await self._reader.stop()

    async def catch_up(self) -> int:
        async with self._reading:
            return await read_new(self._reader, self._apply)

    def _apply(self, record: Record) -> bool:
        try:
            self.table.apply(decode_entity(record.value))
        except ValueError:
            log.warning("skipping unreadable console record", extra={"offset": record.offset})
            return False
        return True

    async def put(self, *entities: Entity) -> None:
        await self._producer.send_many(
            [OutgoingRecord(CONTROL_CONSOLE, encode_entity(e), key=entity_key(e), partition=0) for e in entities]
        )
        for entity in entities:
            self.table.apply(entity)
