"""Organisation → project → environment, applications, and API tokens.

The tenancy lives on a compacted control topic: every entity is one record keyed by
``<type>:<id>``, and the latest record of a key is the entity's state. Every gateway
replica folds the topic into a ``TenancyTable`` in memory, so no request ever waits on
a lookup. Tokens are stored only as SHA-256 hashes: they are 32+ random bytes, so a
fast hash is safe (no dictionary to attack) and keeps the in-memory lookup O(1).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from forgeline.entities import EntityCodec

TokenKind = Literal["forge", "logister", "msgpack_public", "msgpack_secret"]
TOKEN_KINDS: tuple[TokenKind, ...] = ("forge", "logister", "msgpack_public", "msgpack_secret")

# Prefixes tell a leaked token's kind at a glance; `lgst_` is what logister-python's
# redaction recognises as a Logister token, `flg_` is required by the Forge Logger seed.
TOKEN_PREFIXES: dict[TokenKind, str] = {
    "forge": "flg_",
    "logister": "lgst_",
    "msgpack_public": "mpk_pub_",
    "msgpack_secret": "mpk_sec_",
}


# Why a token was refused, the stable ``code`` of a 401 body. An unknown token and a revoked
# one are both ``invalid_token``: the answer never says whether a token ever existed.
RefusalCode = Literal["missing_token", "malformed_token", "invalid_token", "wrong_token_kind", "project_archived"]
REFUSAL_CODES: tuple[RefusalCode, ...] = (
    "missing_token",
    "malformed_token",
    "invalid_token",
    "wrong_token_kind",
    "project_archived",
)
# What follows a prefix: URL-safe base64 (generate_token), with room for longer tokens.
_TOKEN_BODY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_MAX_TOKEN_CHARS = 256


def kind_of_token(presented: str) -> TokenKind | None:
    """The kind a token's shape says it is (its prefix), or None when no token looks like it."""
    if len(presented) > _MAX_TOKEN_CHARS:
        return None
    # Longest prefix first: "mpk_pub_" and "mpk_sec_" share "mpk_".
    for kind, prefix in sorted(TOKEN_PREFIXES.items(), key=lambda item: -len(item[1])):
        if presented.startswith(prefix):
            body = presented[len(prefix) :]
            return kind if body and all(c in _TOKEN_BODY for c in body) else None
    return None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def generate_token(kind: TokenKind) -> str:
    return TOKEN_PREFIXES[kind] + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Organisation:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    organisation_id: str
    name: str
    archived: bool = False


@dataclass(frozen=True, slots=True)
class Environment:
    id: str
    project_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Application:
    """A game client application (MessagePack family); its id is the wire `app_id`.

    It belongs to exactly one project: its name is unique within that project (the
    `app_name` of `POST /api/models`), and only that project's tokens may be bound to it.
    """

    id: str
    project_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    kind: TokenKind
    hash: str
    # The first characters, safe to show in listings and logs (never the whole token).
    display_prefix: str
    project_id: str
    environment: str
    application_id: str | None
    created_at: str
    name: str = ""
    revoked: bool = False


Entity = Organisation | Project | Environment | Application | Token

_CODEC = EntityCodec(
    "tenancy",
    {
        "organisation": Organisation,
        "project": Project,
        "environment": Environment,
        "application": Application,
        "token": Token,
    },
)


def entity_key(entity: Entity) -> bytes:
    return _CODEC.key(entity)


def encode_entity(entity: Entity) -> bytes:
    return _CODEC.encode(entity)


def decode_entity(value: bytes) -> Entity:
    """Raises ValueError on a record we do not understand."""
    entity: Entity = _CODEC.decode(value)
    return entity


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a presented token was not accepted (see RefusalCode)."""

    code: RefusalCode


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is from, once its token has been accepted."""

    token_id: str
    kind: TokenKind
    organisation_id: str
    project_id: str
    environment: str
    application_id: str | None


class TenancyTable:
    """The folded state of the control topic. Not thread-safe; one per event loop."""

    def __init__(self) -> None:
        self.organisations: dict[str, Organisation] = {}
        self.projects: dict[str, Project] = {}
        self.environments: dict[str, Environment] = {}
        self.applications: dict[str, Application] = {}
        self.tokens: dict[str, Token] = {}
        self._by_hash: dict[str, Token] = {}

    def apply(self, entity: Entity) -> None:
        if isinstance(entity, Organisation):
            self.organisations[entity.id] = entity
        elif isinstance(entity, Project):
            self.projects[entity.id] = entity
        elif isinstance(entity, Environment):
            self.environments[entity.id] = entity
        elif isinstance(entity, Application):
            self.applications[entity.id] = entity
        else:
            previous = self.tokens.get(entity.id)
            if previous is not None:
                self._by_hash.pop(previous.hash, None)
            self.tokens[entity.id] = entity
            self._by_hash[entity.hash] = entity

    def authenticate(self, presented: str, kinds: tuple[TokenKind, ...]) -> Principal | None:
        """The principal for a presented token, or None (unknown, revoked, archived, wrong kind)."""
        result = self.check(presented, kinds)
        return result if isinstance(result, Principal) else None

    def check(self, presented: str | None, kinds: tuple[TokenKind, ...]) -> Principal | Refusal:
        """The principal for a presented token, or why it is refused.

        The same work whatever is presented (one hash, one lookup), so the time taken does
        not tell the cases apart. Shape decides ``missing_token``, ``malformed_token`` and
        ``wrong_token_kind`` (from the prefix alone, before anything stored is consulted);
        an unknown, revoked or mismatched token is ``invalid_token`` alike.
        """
        digest = hash_token(presented or "")
        token = self._by_hash.get(digest)
        # The dict lookup is by a hash the caller cannot steer; compare_digest keeps the
        # final comparison constant-time all the same.
        found = token is not None and hmac.compare_digest(token.hash, digest)
        if not presented:
            return Refusal("missing_token")
        kind = kind_of_token(presented)
        if kind is None:
            return Refusal("malformed_token")
        if kind not in kinds:
            return Refusal("wrong_token_kind")
        if token is None or not found or token.revoked or token.kind != kind:
            return Refusal("invalid_token")
        project = self.projects.get(token.project_id)
        if project is None:
            return Refusal("invalid_token")
        if project.archived:
            return Refusal("project_archived")
        if token.application_id is not None and not self.owns_application(project.id, token.application_id):
            # Bound to another project's application (only possible for tokens created
            # before bindings were checked): refused, never a door into that application.
            return Refusal("invalid_token")
        return Principal(
            token_id=token.id,
            kind=token.kind,
            organisation_id=project.organisation_id,
            project_id=project.id,
            environment=token.environment,
            application_id=token.application_id,
        )

    def owns_application(self, project_id: str, application_id: str) -> bool:
        application = self.applications.get(application_id)
        return application is not None and application.project_id == project_id

    def applications_of(self, project_id: str) -> list[Application]:
        return sorted((a for a in self.applications.values() if a.project_id == project_id), key=lambda a: a.name)

    def application_in_project(self, project_id: str, ref: str) -> Application | None:
        """The project's application named or identified by ``ref``; another project's is None."""
        for application in self.applications_of(project_id):
            if ref in (application.id, application.name):
                return application
        return None

    def project_by_name_or_id(self, ref: str) -> Project | None:
        """By id, else by name: an active project of that name before an archived one.

        Names are unique among an organisation's projects (TenancyAdmin); two organisations
        may each have a "default", and then the oldest-applied active one is found.
        """
        if ref in self.projects:
            return self.projects[ref]
        named = [p for p in self.projects.values() if p.name == ref]
        return next((p for p in named if not p.archived), named[0] if named else None)

    def project_named(self, organisation_id: str, name: str) -> Project | None:
        """The organisation's project called ``name`` (archived or not), if any."""
        return next(
            (p for p in self.projects.values() if p.organisation_id == organisation_id and p.name == name), None
        )
