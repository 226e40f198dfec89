"""Console users, admin keys and the audit log: the state of ``control.console``.

Like the tenancy, every entity is one record keyed ``<type>:<id>`` on a compacted control
topic; the latest record of a key is its state. Audit entries have keys of their own, so
compaction keeps every one. Secrets never go on the topic: admin keys are SHA-256 hashes
(32 random bytes, nothing to guess), passwords are argon2id hashes.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from forgeline.entities import EntityCodec

ADMIN_KEY_PREFIX = "fla_"
# A scope of None means every project (an operator's key); otherwise one project id.
ALL_PROJECTS = "*"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def generate_admin_key() -> str:
    return ADMIN_KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class AdminKey:
    id: str
    hash: str
    display_prefix: str
    # ALL_PROJECTS or one project id.
    scope: str
    name: str
    created_at: str
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    id: str
    username: str
    # argon2id, as argon2-cffi encodes it (parameters and salt included).
    password_hash: str
    # ALL_PROJECTS, or the ids of the projects this user may see and change.
    projects: tuple[str, ...]
    created_at: str
    disabled: bool = False

    def may_access(self, project_id: str) -> bool:
        return ALL_PROJECTS in self.projects or project_id in self.projects


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who changed what, when. ``details`` never holds a secret (only ids, names, prefixes)."""

    id: str
    at: str
    actor: str
    action: str
    target: str
    project_id: str = ""
    details: dict[str, str] = field(default_factory=dict)


Entity = AdminKey | ConsoleUser | AuditEntry


def _revive(cls: type[Any], data: dict[str, Any]) -> dict[str, Any]:
    if cls is ConsoleUser:
        data["projects"] = tuple(data["projects"])  # JSON gave a list
    return data


_CODEC = EntityCodec("console", {"admin_key": AdminKey, "user": ConsoleUser, "audit": AuditEntry}, _revive)


def entity_key(entity: Entity) -> bytes:
    return _CODEC.key(entity)


def encode_entity(entity: Entity) -> bytes:
    return _CODEC.encode(entity)


def decode_entity(value: bytes) -> Entity:
    """Raises ValueError on a record we do not understand."""
    entity: Entity = _CODEC.decode(value)
    return entity


class ConsoleTable:
    """The folded state of control.console. Audit entries are kept newest last, bounded."""

    MAX_AUDIT_IN_MEMORY = 10_000

    def __init__(self) -> None:
        self.admin_keys: dict[str, AdminKey] = {}
        self.users: dict[str, ConsoleUser] = {}
        self.audit: list[AuditEntry] = []
        self._audit_ids: set[str] = set()
        self._keys_by_hash: dict[str, AdminKey] = {}

    def apply(self, entity: Entity) -> None:
        if isinstance(entity, AdminKey):
            previous = self.admin_keys.get(entity.id)
            if previous is not None:
                self._keys_by_hash.pop(previous.hash, None)
            self.admin_keys[entity.id] = entity
            self._keys_by_hash[entity.hash] = entity
        elif isinstance(entity, ConsoleUser):
            self.users[entity.id] = entity
        elif entity.id not in self._audit_ids:  # a writer applies its own entry, then reads it back
            self.audit.append(entity)
            self._audit_ids.add(entity.id)
            if len(self.audit) > self.MAX_AUDIT_IN_MEMORY:
                for old in self.audit[: len(self.audit) - self.MAX_AUDIT_IN_MEMORY]:
                    self._audit_ids.discard(old.id)
                del self.audit[: len(self.audit) - self.MAX_AUDIT_IN_MEMORY]

    def admin_key(self, presented: str) -> AdminKey | None:
        """The live admin key ``presented`` is, or None (unknown or revoked)."""
        key = self._keys_by_hash.get(hash_key(presented))
        return None if key is None or key.revoked else key

    def user_by_name(self, username: str) -> ConsoleUser | None:
        for user in self.users.values():
            if user.username == username:
                return user
        return None
