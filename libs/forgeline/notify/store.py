"""Reading and writing notify targets on the control.notify topic (CLI and notifier)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime

from forgeline.bus.follow import read_new, read_to_end
from forgeline.bus.port import Bus, Consumer, OutgoingRecord, Producer, Record
from forgeline.bus.topics import CONTROL_NOTIFY
from forgeline.notify.crypto import SecretBox
from forgeline.notify.model import SUBJECTS, Provider, Target, TargetTable, decode_target, encode_target, target_key

log = logging.getLogger(__name__)


class TargetFollower:
    """Keeps a TargetTable current by tailing control.notify (the notifier calls catch_up per batch)."""

    def __init__(self, bus: Bus) -> None:
        self.table = TargetTable()
        self._reader: Consumer = bus.reader([CONTROL_NOTIFY])

    async def start(self) -> None:
        await self._reader.start()
        await read_to_end(self._reader, self._apply)

    async def catch_up(self) -> int:
        return await read_new(self._reader, self._apply)

    def _apply(self, record: Record) -> bool:
        try:
            self.table.apply(decode_target(record.value))
        except ValueError:
            log.warning("skipping unreadable notify target", extra={"offset": record.offset})
            return False
        return True

    async def stop(self) -> None:
        await self._reader.stop()


class TargetAdmin:
    """Adds and removes targets (CLI); writes go through the bus, so it works while `up` runs."""

    def __init__(self, bus: Bus, box: SecretBox) -> None:
        self._producer: Producer = bus.producer()
        self._follower = TargetFollower(bus)
        self._box = box

    @property
    def table(self) -> TargetTable:
        return self._follower.table

    async def __aenter__(self) -> TargetAdmin:
        await self._producer.start()
        await self._follower.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()
        await self._follower.stop()

    async def catch_up(self) -> int:
        """Apply targets other writers (the CLI, the console) have added or removed since."""
        return await self._follower.catch_up()

    async def _put(self, target: Target) -> None:
        await self._producer.send(
            OutgoingRecord(CONTROL_NOTIFY, encode_target(target), key=target_key(target.id), partition=0)
        )
        self.table.apply(target)

    async def add(
        self,
        project_id: str,
        provider: Provider,
        name: str,
        settings: dict[str, str],
        secret: str,
        subjects: tuple[str, ...] = SUBJECTS,
        rate: float = 0.0,
        allow_private: bool = False,
    ) -> Target:
        target = Target(
            id=str(uuid.uuid4()),
            project_id=project_id,
            provider=provider,
            name=name,
            settings=settings,
            secret=self._box.encrypt(secret),
            subjects=subjects,
            rate=rate,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            allow_private=allow_private,
        )
        await self._put(target)
        return target

    async def remove(self, ref: str) -> Target:
        target = self.table.find(ref)
        await self._put(replace(target, removed=True))
        return target
