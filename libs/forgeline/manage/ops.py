"""Management operations: the one implementation behind the CLI, the management API and
the console's Settings page, so the three cannot drift.

Every change is checked against the actor's scope (all projects, or one) and recorded as
an audit entry on control.console: who, when, what — ids, names and token prefixes, never
a secret. Tenancy rules (names, archiving, bindings) stay in ``TenancyAdmin``; this layer
adds scope, audit and the lookups by name a person types.

Errors: ``LookupError`` (nothing of that name the actor may see: 404), ``PermissionError``
(the actor's scope does not reach it: 403), ``ValueError`` (a bad request: 400).
"""

from __future__ import annotations

import asyncio
import getpass
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from forgeline.lifecycle.retention import KINDS, check_kinds, parse_days
from forgeline.manage.model import (
    ALL_PROJECTS,
    AdminKey,
    AuditEntry,
    ConsoleUser,
    generate_admin_key,
    hash_key,
)
from forgeline.manage.store import ConsoleStore
from forgeline.notify.egress import EgressPolicy, check_url, parse_networks
from forgeline.notify.model import (
    PROVIDERS,
    SUBJECTS,
    Target,
    destination_urls,
    validate_secret,
    validate_settings,
)
from forgeline.notify.store import TargetAdmin
from forgeline.tenancy.model import TOKEN_KINDS, Application, Project, Token
from forgeline.tenancy.store import TenancyAdmin

MAX_NAME_CHARS = 256
# Dead letters belong to no project: their days are a global setting.
PROJECT_RETENTION_KINDS = tuple(kind for kind in KINDS if kind != "dead_letters")
# The processors' admin port ``POST /retention`` {project_id, days} → its answer (services/admin_lifecycle.py).
RetentionCall = Callable[[str, dict[str, int]], Awaitable[dict[str, Any]]]


class Unavailable(Exception):
    """What the operation needs is not reachable from here (→ 503): the processors' admin port."""


_hasher = PasswordHasher()


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: ``name`` goes to the audit log; ``scope`` is ALL_PROJECTS or a project id."""

    name: str
    scope: str = ALL_PROJECTS
    projects: tuple[str, ...] = ()

    @property
    def everywhere(self) -> bool:
        return self.scope == ALL_PROJECTS or ALL_PROJECTS in self.projects

    def reaches(self, project_id: str) -> bool:
        return self.everywhere or project_id == self.scope or project_id in self.projects


def cli_actor() -> Actor:
    """The operator at this machine's shell (every CLI command audits as ``cli:<user>``)."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Actor(name=f"cli:{who}")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _days(kind: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return parse_days(value)
        except ValueError as err:
            raise ValueError(f"{kind}: {err}") from None
    raise ValueError(f"retention of {kind} must be days (30) or text like 30d, 2w, 1y; not {value!r}")


def _name(value: str, what: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_NAME_CHARS or not value.isprintable():
        raise ValueError(f"a {what} name is 1 to {MAX_NAME_CHARS} printable characters")
    return value


class Management:
    """Operations over an open ``TenancyAdmin`` and ``ConsoleStore`` (both on the same bus)."""

    def __init__(
        self,
        tenancy: TenancyAdmin,
        console: ConsoleStore,
        targets: TargetAdmin | None = None,
        allowed_networks: tuple[str, ...] = (),
        cannot_add_targets: str = "",
        retention: RetentionCall | None = None,
    ) -> None:
        self.tenancy = tenancy
        self.console = console
        # Notify targets: only where the notify key is at hand (the console, `forgeline notify`).
        self.targets = targets
        self.allowed_networks = allowed_networks
        # Why new targets cannot be added here (their secret would be sealed with a key the
        # notifier does not have); listing and removing need no key.
        self.cannot_add_targets = cannot_add_targets
        # Retention lives with the warehouse (the processors): None where no admin port is known.
        self._retention = retention
        self._refreshing = asyncio.Lock()  # the refresh loop and requests share the readers

    async def refresh(self) -> None:
        """Apply what other writers sent (another console replica, the CLI) before deciding."""
        async with self._refreshing:
            await self.tenancy.catch_up()
            await self.console.catch_up()
            if self.targets is not None:
                await self.targets.catch_up()

    async def _audit(self, actor: Actor, action: str, target: str, project_id: str = "", **details: str) -> None:
        entry = AuditEntry(
            id=str(uuid.uuid4()),
            at=now_iso(),
            actor=actor.name,
            action=action,
            target=target,
            project_id=project_id,
            details=details,
        )
        await self.console.put(entry)

    # Projects -------------------------------------------------------------------------

    def project(self, actor: Actor, ref: str) -> Project:
        project = self.tenancy.table.project_by_name_or_id(ref)
        if project is None or not actor.reaches(project.id):
            raise LookupError(f"no project {ref!r}")
        return project

    def projects(self, actor: Actor) -> list[Project]:
        found = [p for p in self.tenancy.table.projects.values() if actor.reaches(p.id)]
        return sorted(found, key=lambda p: p.name)

    def _require_everywhere(self, actor: Actor, what: str) -> None:
        if not actor.everywhere:
            raise PermissionError(f"{what} needs a key or user with access to all projects")

    async def create_project(self, actor: Actor, name: str) -> Project:
        self._require_everywhere(actor, "creating a project")
        await self.refresh()
        org = next(iter(self.tenancy.table.organisations.values()), None)
        if org is None:
            raise LookupError("no organisation yet: run `forgeline up` (or `forgeline bootstrap`) once first")
        # TenancyAdmin decides what a project name may be (unique in the organisation).
        project = await self.tenancy.create_project(org.id, _name(name, "project"))
        await self.tenancy.create_environment(project.id, "production")
        await self._audit(actor, "project.create", project.id, project.id, name=project.name)
        return project

    async def rename_project(self, actor: Actor, ref: str, name: str) -> Project:
        await self.refresh()
        project = self.project(actor, ref)
        name = _name(name, "project")
        clash = self.tenancy.table.project_named(project.organisation_id, name)
        if clash is not None and clash.id != project.id:
            raise ValueError(f"the organisation has a project named {name!r} already")
        renamed = replace(project, name=name)
        await self.tenancy.put(renamed)
        await self._audit(actor, "project.rename", project.id, project.id, old_name=project.name, name=name)
        return renamed

    async def set_archived(self, actor: Actor, ref: str, archived: bool, confirm: str | None = None) -> Project:
        """Archive (its tokens are refused from then on) or unarchive. Archiving asks for the
        project's name again as ``confirm`` when given one (the API and console always do)."""
        await self.refresh()
        project = self.project(actor, ref)
        if archived and confirm is not None and confirm != project.name:
            raise ValueError(f"to archive, confirm with the project's name ({project.name!r})")
        if archived:
            changed = await self.tenancy.archive_project(project.id)
        else:
            # By name, TenancyAdmin prefers the archived project of that name: the one to bring back.
            changed = await self.tenancy.unarchive_project(ref if actor.everywhere else project.id)
        await self._audit(actor, "project.archive" if archived else "project.unarchive", changed.id, changed.id)
        return changed

    # Retention -------------------------------------------------------------------------

    async def retention(self, actor: Actor, ref: str) -> dict[str, Any]:
        """The project's days for every kind, and which of them are its own (not the defaults)."""
        return await self._call_retention(self.project(actor, ref).id, {})

    async def set_retention(self, actor: Actor, ref: str, given: Mapping[str, object]) -> dict[str, Any]:
        """Set some kinds' days (ints, or text like ``30d``); the others keep theirs."""
        project = self.project(actor, ref)
        unknown = sorted(set(given) - set(PROJECT_RETENTION_KINDS))
        if unknown:
            raise ValueError(
                f"unknown retention kind(s) {', '.join(unknown)}; kinds: {', '.join(PROJECT_RETENTION_KINDS)}"
            )
        days = check_kinds({kind: _days(kind, value) for kind, value in given.items()})
        if not days:
            raise ValueError(f"name at least one kind to set: {', '.join(PROJECT_RETENTION_KINDS)}")
        result = await self._call_retention(project.id, days)
        await self._audit(
            actor, "project.retention", project.id, project.id, **{kind: f"{n}d" for kind, n in sorted(days.items())}
        )
        return result

    async def _call_retention(self, project_id: str, days: dict[str, int]) -> dict[str, Any]:
        if self._retention is None:
            raise Unavailable("retention is kept by the processors, and their admin port is not configured here")
        result = await self._retention(project_id, days)
        # The dead-letter kind is global: not a project's to show or change.
        for part in ("days", "own"):
            if isinstance(result.get(part), dict):
                result[part] = {k: v for k, v in result[part].items() if k in PROJECT_RETENTION_KINDS}
        return result

    # Tokens ---------------------------------------------------------------------------

    def tokens(self, actor: Actor, project_ref: str | None = None) -> list[Token]:
        wanted = self.project(actor, project_ref).id if project_ref else None
        found = [
            t
            for t in self.tenancy.table.tokens.values()
            if actor.reaches(t.project_id) and (wanted is None or t.project_id == wanted)
        ]
        return sorted(found, key=lambda t: t.created_at)

    async def create_token(
        self,
        actor: Actor,
        kind: str,
        project_ref: str,
        environment: str = "production",
        application_ref: str | None = None,
        name: str = "",
    ) -> tuple[Token, str]:
        """The stored record and the token itself (shown once: only its hash is kept)."""
        if kind not in TOKEN_KINDS:
            raise ValueError(f"kind must be one of {', '.join(TOKEN_KINDS)}")
        await self.refresh()
        project = self.project(actor, project_ref)
        if project.archived:
            raise ValueError(f"project {project.name!r} is archived: unarchive it before creating tokens")
        environment = _name(environment, "environment")
        if len(name) > MAX_NAME_CHARS:
            raise ValueError(f"a token name is at most {MAX_NAME_CHARS} characters")
        application_id: str | None = None
        if application_ref:
            application = self.tenancy.table.application_in_project(project.id, application_ref)
            if application is None:
                raise LookupError(f"no application {application_ref!r} in project {project.name}")
            application_id = application.id
        token, secret = await self.tenancy.create_token(kind, project.id, environment, application_id, name)
        await self._audit(
            actor, "token.create", token.id, project.id, kind=token.kind, prefix=token.display_prefix, name=name
        )
        return token, secret

    async def revoke_token(self, actor: Actor, token_ref: str) -> Token:
        await self.refresh()
        matches = [
            t
            for t in self.tenancy.table.tokens.values()
            if (t.id == token_ref or (len(token_ref) >= 4 and t.id.startswith(token_ref)))
            and actor.reaches(t.project_id)
        ]
        if len(matches) != 1:
            raise LookupError(f"no single token matches {token_ref!r}")
        revoked = await self.tenancy.revoke_token(matches[0].id)
        await self._audit(actor, "token.revoke", revoked.id, revoked.project_id, prefix=revoked.display_prefix)
        return revoked

    # Applications (MessagePack) -------------------------------------------------------

    def applications(self, actor: Actor, project_ref: str | None = None) -> list[Application]:
        projects = [self.project(actor, project_ref)] if project_ref else self.projects(actor)
        return [a for p in projects for a in self.tenancy.table.applications_of(p.id)]

    async def create_application(self, actor: Actor, project_ref: str, name: str) -> Application:
        await self.refresh()
        project = self.project(actor, project_ref)
        app = await self.tenancy.create_application(project.id, _name(name, "application"))
        await self._audit(actor, "application.create", app.id, project.id, name=app.name)
        return app

    # Notify targets ---------------------------------------------------------------------

    def _target_admin(self) -> TargetAdmin:
        if self.targets is None:
            raise LookupError("notify targets are not managed here")
        return self.targets

    def notify_targets(self, actor: Actor, project_ref: str | None = None) -> list[Target]:
        table = self._target_admin().table
        wanted = self.project(actor, project_ref).id if project_ref else None
        found = [
            t
            for t in table.targets.values()
            if actor.reaches(t.project_id) and (wanted is None or t.project_id == wanted)
        ]
        return sorted(found, key=lambda t: t.created_at)

    async def add_notify_target(
        self,
        actor: Actor,
        project_ref: str,
        provider: str,
        name: str,
        settings: dict[str, str],
        secret: str = "",
        subjects: tuple[str, ...] = SUBJECTS,
        rate: float = 0.0,
        allow_private: bool = False,
    ) -> tuple[Target, str | None]:
        """A target and, for a webhook given no secret, the signing secret generated for it
        (shown once). The destination must pass the notifier's egress rules now too."""
        admin = self._target_admin()
        if self.cannot_add_targets:
            raise ValueError(self.cannot_add_targets)
        await self.refresh()
        project = self.project(actor, project_ref)
        if provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}")
        if allow_private and not actor.everywhere:
            # Reaching private networks is an operator's decision, not one project's.
            raise PermissionError("allow_private needs a key or user with access to all projects")
        checked = validate_settings(provider, settings)
        generated = None
        if not secret and provider == "webhook":
            secret = generated = "whsec_" + secrets.token_urlsafe(32)
        validate_secret(provider, secret)
        unknown = [s for s in subjects if s not in SUBJECTS]
        if unknown or not subjects:
            raise ValueError(f"subjects are some of {', '.join(SUBJECTS)}")
        if rate < 0:
            raise ValueError("rate must be positive")
        policy = EgressPolicy(allow_private, parse_networks(self.allowed_networks))
        for url in destination_urls(provider, checked, secret):
            await check_url(url, policy)  # BlockedDestination is a ValueError
        target = await admin.add(
            project.id, provider, _name(name or provider, "target"), checked, secret, subjects, rate, allow_private
        )
        # The provider and name only: a target's URL or settings may embed credentials.
        await self._audit(actor, "notify.add", target.id, project.id, provider=provider, name=target.name)
        return target, generated

    async def remove_notify_target(self, actor: Actor, ref: str) -> Target:
        admin = self._target_admin()
        await self.refresh()
        target = admin.table.find(ref)
        if not actor.reaches(target.project_id):
            raise LookupError(f"no single notify target matches {ref!r}")
        await admin.remove(target.id)
        await self._audit(actor, "notify.remove", target.id, target.project_id, provider=target.provider)
        return target

    # Admin keys -----------------------------------------------------------------------

    def admin_keys(self, actor: Actor) -> list[AdminKey]:
        keys = [k for k in self.console.table.admin_keys.values() if actor.everywhere or k.scope == actor.scope]
        return sorted(keys, key=lambda k: k.created_at)

    async def create_admin_key(self, actor: Actor, project_ref: str | None, name: str = "") -> tuple[AdminKey, str]:
        """A key for the management API, for every project (``project_ref`` None) or one."""
        await self.refresh()
        if project_ref is None:
            self._require_everywhere(actor, "a key for all projects")
            scope = ALL_PROJECTS
        else:
            scope = self.project(actor, project_ref).id
        secret = generate_admin_key()
        key = AdminKey(
            id=str(uuid.uuid4()),
            hash=hash_key(secret),
            display_prefix=secret[:12],
            scope=scope,
            name=name[:MAX_NAME_CHARS],
            created_at=now_iso(),
        )
        await self.console.put(key)
        await self._audit(
            actor, "admin_key.create", key.id, "" if scope == ALL_PROJECTS else scope, prefix=key.display_prefix
        )
        return key, secret

    async def revoke_admin_key(self, actor: Actor, key_ref: str) -> AdminKey:
        await self.refresh()
        matches = [
            k for k in self.admin_keys(actor) if k.id == key_ref or (len(key_ref) >= 4 and k.id.startswith(key_ref))
        ]
        if len(matches) != 1:
            raise LookupError(f"no single admin key matches {key_ref!r}")
        revoked = replace(matches[0], revoked=True)
        await self.console.put(revoked)
        await self._audit(actor, "admin_key.revoke", revoked.id, prefix=revoked.display_prefix)
        return revoked

    def actor_for_key(self, presented: str) -> Actor | None:
        key = self.console.table.admin_key(presented)
        if key is None:
            return None
        return Actor(name=f"admin-key:{key.display_prefix}", scope=key.scope)

    # Console users --------------------------------------------------------------------

    async def create_user(
        self, actor: Actor, username: str, projects: tuple[str, ...] = (ALL_PROJECTS,), password: str | None = None
    ) -> tuple[ConsoleUser, str]:
        """A console user; returns it and its password (generated when not given; shown once)."""
        await self.refresh()
        username = _name(username, "user")
        if self.console.table.user_by_name(username) is not None:
            raise ValueError(f"a user named {username!r} exists already")
        if ALL_PROJECTS in projects:
            self._require_everywhere(actor, "a user of all projects")
            ids: tuple[str, ...] = (ALL_PROJECTS,)
        else:
            ids = tuple(self.project(actor, ref).id for ref in projects)
        password = password or secrets.token_urlsafe(18)
        if len(password) < 12:
            raise ValueError("a password is at least 12 characters")
        user = ConsoleUser(
            id=str(uuid.uuid4()),
            username=username,
            password_hash=hash_password(password),
            projects=ids,
            created_at=now_iso(),
        )
        await self.console.put(user)
        await self._audit(actor, "user.create", user.id, username=username, projects=",".join(ids))
        return user, password

    async def set_user_disabled(self, actor: Actor, username: str, disabled: bool) -> ConsoleUser:
        """A disabled user cannot sign in, and their open sessions stop at the next request."""
        self._require_everywhere(actor, "changing a user")
        await self.refresh()
        user = self.console.table.user_by_name(username)
        if user is None:
            raise LookupError(f"no user {username!r}")
        changed = replace(user, disabled=disabled)
        await self.console.put(changed)
        await self._audit(actor, "user.disable" if disabled else "user.enable", user.id, username=username)
        return changed

    def audit(self, actor: Actor, limit: int = 100) -> list[AuditEntry]:
        entries = [e for e in self.console.table.audit if actor.everywhere or e.project_id == actor.scope]
        return entries[-limit:][::-1]
