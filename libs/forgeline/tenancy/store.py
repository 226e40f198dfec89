"""Reading and writing the tenancy control topic through the bus port."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

from forgeline.bus.follow import read_new, read_to_end
from forgeline.bus.port import ADMIN_SEND_TIMEOUT_S, Bus, Consumer, OutgoingRecord, Producer, Record, TopicPartition
from forgeline.bus.topics import CONTROL_TENANCY
from forgeline.tenancy.model import (
    Application,
    Entity,
    Environment,
    Organisation,
    Project,
    TenancyTable,
    Token,
    TokenKind,
    decode_entity,
    encode_entity,
    entity_key,
    generate_token,
    hash_token,
)

log = logging.getLogger(__name__)

# How long a refresh for an unknown token may read the control topic before giving up, and
# how often refreshes may start (a flood of unknown tokens asks the bus 50 times a second).
REFRESH_TIMEOUT_S = 2.0
REFRESH_MIN_INTERVAL_S = 0.02


class TenancyFollower:
    """Keeps a TenancyTable current by tailing the control topic (gateway side)."""

    def __init__(self, bus: Bus) -> None:
        self.table = TenancyTable()
        self._reader: Consumer = bus.reader([CONTROL_TENANCY])
        self.loaded = False
        # Next offset to read per partition: how far refresh() has to go to reach the end.
        self._positions: dict[TopicPartition, int] = {}
        self._refresh_lock = asyncio.Lock()
        self._refreshes_started = 0
        self._last_refresh = float("-inf")

    async def start(self) -> None:
        """Read the topic up to its end as it is now; only then is the table ``loaded``."""
        await self._reader.start()
        await read_to_end(self._reader, self._apply)
        self.loaded = True

    async def catch_up(self) -> int:
        """Apply every record that has arrived since the last call; returns how many."""
        async with self._refresh_lock:  # one reader of the consumer at a time
            return await read_new(self._reader, self._apply)

    async def refresh(self, timeout_s: float = REFRESH_TIMEOUT_S) -> None:
        """Read the topic to the end it has *now* (not just what a poll happens to return).

        For a token the table does not know yet: ``tokens create`` returns once its record
        is on the bus, and a request that arrives before the next periodic catch-up must
        still be accepted. Coalesced: callers waiting together share one read that started
        after they asked, so a flood of unknown tokens costs one read at a time.
        """
        asked = self._refreshes_started
        async with self._refresh_lock:
            if self._refreshes_started > asked:
                return  # a read that started after we asked has finished
            pause = self._last_refresh + REFRESH_MIN_INTERVAL_S - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)  # callers arriving meanwhile share the read below
            self._refreshes_started += 1
            self._last_refresh = time.monotonic()
            ends = await self._reader.end_offsets()
            deadline = time.monotonic() + timeout_s
            while any(self._positions.get(tp, 0) < end for tp, end in ends.items()):
                if time.monotonic() > deadline:
                    log.warning("tenancy refresh did not reach the end of the topic in time")
                    return
                for record in await self._reader.poll(max_records=1000, timeout_s=0.05):
                    self._apply(record)

    def _apply(self, record: Record) -> bool:
        self._positions[record.tp] = record.offset + 1
        try:
            self.table.apply(decode_entity(record.value))
        except ValueError:
            log.warning(
                "skipping unreadable tenancy record", extra={"partition": record.partition, "offset": record.offset}
            )
            return False
        return True

    async def follow(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.catch_up()

    async def stop(self) -> None:
        await self._reader.stop()


class TenancyAdmin:
    """Creates and changes tenancy entities (CLI, first start). Writes go through the bus."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        # Operator writes (CLI, bootstrap): worth waiting for a cluster that is still starting.
        self._producer: Producer = bus.producer(send_timeout_s=ADMIN_SEND_TIMEOUT_S)
        self._follower = TenancyFollower(bus)

    @property
    def table(self) -> TenancyTable:
        return self._follower.table

    async def __aenter__(self) -> TenancyAdmin:
        await self._producer.start()
        await self._follower.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()
        await self._follower.stop()

    async def catch_up(self) -> int:
        """Apply what other writers (CLI, console, another replica) have sent since."""
        return await self._follower.catch_up()

    async def put(self, *entities: Entity) -> None:
        await self._producer.send_many(
            [OutgoingRecord(CONTROL_TENANCY, encode_entity(e), key=entity_key(e), partition=0) for e in entities]
        )
        for entity in entities:
            self.table.apply(entity)

    async def create_organisation(self, name: str) -> Organisation:
        org = Organisation(id=str(uuid.uuid4()), name=name)
        await self.put(org)
        return org

    async def create_project(self, organisation_id: str, name: str) -> Project:
        """A new project; its name must be new in the organisation, archived projects included
        (a second "default" would make ``--project default`` ambiguous)."""
        if organisation_id not in self.table.organisations:
            raise LookupError(f"no organisation {organisation_id!r}")
        if not name.strip() or len(name) > 256:
            raise ValueError("a project name is 1 to 256 characters")
        existing = self.table.project_named(organisation_id, name)
        if existing is not None:
            state = " (archived: `forgeline projects unarchive` brings it back)" if existing.archived else ""
            raise ValueError(f"the organisation has a project named {name!r} already{state}")
        project = Project(id=str(uuid.uuid4()), organisation_id=organisation_id, name=name)
        await self.put(project)
        return project

    async def create_environment(self, project_id: str, name: str) -> Environment:
        env = Environment(id=str(uuid.uuid4()), project_id=project_id, name=name)
        await self.put(env)
        return env

    async def create_application(self, project_id: str, name: str) -> Application:
        """A new application of ``project_id``; its name must be new in that project."""
        if project_id not in self.table.projects:
            raise LookupError(f"no project {project_id!r}")
        if not name.strip() or len(name) > 256:
            raise ValueError("an application name is 1 to 256 characters")
        if any(a.name == name for a in self.table.applications_of(project_id)):
            raise ValueError(f"the project has an application named {name!r} already")
        app = Application(id=str(uuid.uuid4()), project_id=project_id, name=name)
        await self.put(app)
        return app

    async def create_token(
        self,
        kind: TokenKind,
        project_id: str,
        environment: str,
        application_id: str | None = None,
        name: str = "",
    ) -> tuple[Token, str]:
        """Returns the stored token record and the token itself (shown once, never stored).

        MessagePack tokens are bound to one application of their own project (ValueError
        otherwise); the other kinds to none. An archived project gets no new tokens
        (ValueError): they would be refused on every request.
        """
        project = self.table.projects.get(project_id)
        if project is None:
            raise LookupError(f"no project {project_id!r}")
        if project.archived:
            raise ValueError(
                f"project {project.name!r} is archived: its tokens are refused "
                "(`forgeline projects unarchive` brings it back)"
            )
        if kind in ("msgpack_public", "msgpack_secret"):
            if application_id is None:
                raise ValueError(f"a {kind} token needs an application of its project")
            application = self.table.applications.get(application_id)
            if application is None:
                raise LookupError(f"no application {application_id!r}")
            if application.project_id != project_id:
                raise ValueError(
                    f"application {application.name!r} belongs to another project; "
                    "a token can only be bound to an application of its own project"
                )
        elif application_id is not None:
            raise ValueError(f"a {kind} token is not bound to an application")
        secret = generate_token(kind)
        token = Token(
            id=str(uuid.uuid4()),
            kind=kind,
            hash=hash_token(secret),
            display_prefix=secret[:12],
            project_id=project_id,
            environment=environment,
            application_id=application_id,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            name=name,
        )
        await self.put(token)
        return token, secret

    async def revoke_token(self, token_id: str) -> Token:
        token = self._find_token(token_id)
        revoked = replace(token, revoked=True)
        await self.put(revoked)
        return revoked

    async def archive_project(self, ref: str) -> Project:
        """Its tokens are refused (401 ``project_archived``) until it is unarchived."""
        return await self._set_archived(ref, True)

    async def unarchive_project(self, ref: str) -> Project:
        """Its tokens that are not revoked work again."""
        return await self._set_archived(ref, False)

    async def _set_archived(self, ref: str, archived: bool) -> Project:
        project = self.table.project_by_name_or_id(ref)
        if project is None:
            raise LookupError(f"no project {ref!r}")
        if archived:
            # By name, the active one is found first; "archive" twice names the same project.
            changed = replace(project, archived=True)
        else:
            # By name, prefer the archived one: that is the one to bring back.
            named = [p for p in self.table.projects.values() if p.name == ref and p.archived]
            changed = replace(named[0] if ref not in self.table.projects and named else project, archived=False)
            clash = self.table.project_named(changed.organisation_id, changed.name)
            if clash is not None and clash.id != changed.id and not clash.archived:
                raise ValueError(f"another active project is named {changed.name!r}; archive that one first")
        await self.put(changed)
        return changed

    def _find_token(self, ref: str) -> Token:
        matches = [t for t in self.table.tokens.values() if t.id == ref or t.id.startswith(ref)]
        if len(matches) != 1:
            raise LookupError(f"no single token matches {ref!r}")
        return matches[0]
