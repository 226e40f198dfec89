"""Erasure by person: one player's rows, uploads and exported lines, gone; an audit row says so.

A person is named by identifiers of four kinds (``player_id``, ``device_id``, ``user_id``,
``email``); each kind matches the columns that hold it (``PERSON_COLUMNS``). Rows reached
only through the person's sessions or events (a Forge session's game events, reports and
uploads; a grouped error's group membership; a span's place in its trace tree) are found
first, then everything is deleted with mutations that the call waits for
(``mutations_sync = 2``). The audit table keeps a salted hash of each identifier, never
the identifier itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from forgeline.blobstore.port import BlobStore
from forgeline.lifecycle.retention import quote, quote_all
from forgeline.private_fs import private_dir
from forgeline.warehouse.port import Warehouse

log = logging.getLogger(__name__)

IDENTIFIER_KINDS = ("player_id", "device_id", "user_id", "email")
MAX_IDENTIFIERS = 100
MAX_IDENTIFIER_CHARS = 512
SALT_FILE = "erasure-salt.key"
_CHUNK = 1000
_LOGISTER = ("errors", "logs", "metrics", "transactions", "spans")
_ANALYTICS = ("players", "funnel_steps", "gameplay_events", "trajectories")
# Where the Logister SDKs put an address: context.email, context.user_email, context.user.email.
_EMAIL = (
    "JSONExtractString(context, 'email')",
    "JSONExtractString(context, 'user_email')",
    "JSONExtractString(context, 'user', 'email')",
)
# table → identifier kind → the expressions holding it.
PERSON_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    **{table: {"user_id": ("user_id",), "email": _EMAIL} for table in _LOGISTER},
    "sessions": {"player_id": ("player_external_id",), "device_id": ("device_id",)},
    **{table: {"player_id": ("player_id",)} for table in _ANALYTICS},
}
# Fields of an exported line that name a person (line field → identifier kind).
_LINE_FIELDS = {"player_id": "player_id", "player_external_id": "player_id", "device_id": "device_id",
                "user_id": "user_id"}  # fmt: skip


class StoreUnreachable(Exception):
    """A store holding the person's data is not configured in this process (→ 503)."""


@dataclass(frozen=True, slots=True)
class Subject:
    project_id: str
    identifiers: Mapping[str, tuple[str, ...]]

    @classmethod
    def parse(cls, doc: Mapping[str, Any]) -> Subject:
        """From a request body; ValueError (→ 400) says what is wrong."""
        project = doc.get("project_id")
        if not isinstance(project, str) or not project.strip():
            raise ValueError("project_id is required")
        found: dict[str, tuple[str, ...]] = {}
        for kind in IDENTIFIER_KINDS:
            values = doc.get(kind + "s", [])
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ValueError(f"{kind}s must be a list of strings")
            values = [v for v in values if v.strip()]
            if any(len(v) > MAX_IDENTIFIER_CHARS for v in values):
                raise ValueError(f"an identifier is longer than {MAX_IDENTIFIER_CHARS} characters")
            if values:
                found[kind] = tuple(dict.fromkeys(values))
        unknown = set(doc) - {"project_id", *(k + "s" for k in IDENTIFIER_KINDS)}
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
        if not found:
            raise ValueError("name the person: at least one of player_ids, device_ids, user_ids, emails")
        if sum(map(len, found.values())) > MAX_IDENTIFIERS:
            raise ValueError(f"at most {MAX_IDENTIFIERS} identifiers per request")
        return cls(project, found)

    def values(self, kind: str) -> tuple[str, ...]:
        return self.identifiers.get(kind, ())


@dataclass
class Outcome:
    request_id: str
    rows_deleted: dict[str, int] = field(default_factory=dict)
    blobs_deleted: int = 0
    export_lines_removed: int = 0
    export_files_rewritten: int = 0
    # Stores this process does not reach (not configured here): said, never silently skipped.
    not_reached: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "not_reached": self.not_reached,
            "request_id": self.request_id,
            "rows_deleted": self.rows_deleted,
            "blobs_deleted": self.blobs_deleted,
            "export_lines_removed": self.export_lines_removed,
            "export_files_rewritten": self.export_files_rewritten,
        }


def load_salt(data_dir: Path, configured: str = "") -> bytes:
    """FORGELINE_ERASURE_SALT, else a random salt generated once into the data dir (0600)."""
    if configured.strip():
        return configured.strip().encode()
    path = data_dir / SALT_FILE
    private_dir(data_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    salt = os.urandom(32).hex().encode()
    with os.fdopen(fd, "wb") as handle:
        handle.write(salt + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return salt


def subject_hashes(salt: bytes, subject: Subject) -> list[str]:
    """One HMAC-SHA256 per identifier: the same person gives the same hashes, nobody can read them back."""
    return sorted(
        hmac.new(salt, f"{subject.project_id}\0{kind}\0{value}".encode(), hashlib.sha256).hexdigest()
        for kind, values in subject.identifiers.items()
        for value in values
    )


class Eraser:
    def __init__(self, warehouse: Warehouse, uploads: BlobStore | None, exports: BlobStore | None, salt: bytes) -> None:
        self._warehouse = warehouse
        self._uploads = uploads
        self._exports = exports
        self._salt = salt

    def erase(self, subject: Subject) -> Outcome:
        outcome = Outcome(str(uuid.uuid4()))
        hashes = subject_hashes(self._salt, subject)
        requested_at = datetime.now(UTC)
        self._audit(outcome, subject, hashes, "requested", requested_at, None)
        plan = self._plan(subject)
        if plan.blob_keys and self._uploads is None:
            raise StoreUnreachable(
                f"{len(plan.blob_keys)} uploads of this person are in a blob store this process does not reach: "
                "set FORGELINE_BLOB_STORE_URL (and its credentials) for the processors too; nothing was erased"
            )
        if self._exports is None:
            outcome.not_reached.append("exports (FORGELINE_EXPORT_URL is not set for the processors)")
        if self._uploads is not None:
            for key in sorted(plan.blob_keys):
                self._uploads.delete(key)
                outcome.blobs_deleted += 1
        for table, where in plan.deletes:
            outcome.rows_deleted[table] = self._delete(table, where)
        if plan.group_ids:
            # A group whose every event was theirs goes too (its title is their message);
            # a group other players share stays, counted without their events.
            db = self._warehouse.database
            for start in range(0, len(plan.group_ids), _CHUNK):  # literal lists stay far below max_query_size
                chunk = plan.group_ids[start : start + _CHUNK]
                groups = quote_all(chunk)
                left = set(self._strings(f"SELECT group_id FROM {db}.error_group_events WHERE group_id IN ({groups})"))
                alone = [g for g in chunk if g not in left]
                if alone:
                    where = f"project_id = {quote(subject.project_id)} AND group_id IN ({quote_all(alone)})"
                    deleted = self._delete("error_groups", where)
                    outcome.rows_deleted["error_groups"] = outcome.rows_deleted.get("error_groups", 0) + deleted
        if self._exports is not None:
            self._rewrite_exports(subject, plan, outcome)
        self._audit(outcome, subject, hashes, "completed", requested_at, datetime.now(UTC))
        log.info("erasure completed", extra={"request_id": outcome.request_id, **outcome.as_dict()})
        return outcome

    def _plan(self, subject: Subject) -> _Plan:
        db, project = self._warehouse.database, quote(subject.project_id)
        plan = _Plan()
        direct: dict[str, str] = {}
        for table, kinds in PERSON_COLUMNS.items():
            terms = [
                f"{expr} IN ({quote_all(subject.values(kind))})"
                for kind, exprs in kinds.items()
                if subject.values(kind)
                for expr in exprs
            ]
            if terms:
                direct[table] = f"project_id = {project} AND ({' OR '.join(terms)})"
        ids = self._strings
        # Rows reached through the person's sessions and events are named by subqueries on
        # the tables that hold the identifiers (no literal lists, whatever their number), so
        # they are deleted first, and the sessions last.
        sessions = (
            f"SELECT toString(session_id) FROM {db}.sessions WHERE {direct['sessions']}" if "sessions" in direct else ""
        )
        if sessions:
            plan.session_ids = ids(sessions)  # for their export lines
        if plan.session_ids:
            # Game errors (crashes, exceptions) land in the Logister tables tagged with the session.
            tagged = f"project_id = {project} AND session_id IN ({sessions})"
            for table in _LOGISTER:
                direct[table] = f"({direct[table]}) OR ({tagged})" if table in direct else tagged
        deletes: list[tuple[str, str]] = []
        if "errors" in direct:
            events = (
                f"project_id = {project} AND event_id IN "
                f"(SELECT toString(event_id) FROM {db}.errors WHERE {direct['errors']})"
            )
            plan.group_ids = ids(f"SELECT DISTINCT group_id FROM {db}.error_group_events WHERE {events}")
            deletes.append(("error_group_events", events))
        if "spans" in direct:
            spans = f"SELECT toString(event_id) FROM {db}.spans WHERE {direct['spans']}"
            deletes.append(("span_tree", f"project_id = {project} AND event_id IN ({spans})"))
        if plan.session_ids:
            by_session = f"project_id = {project} AND toString(session_id) IN ({sessions})"
            attached = f"SELECT arrayJoin(upload_ids) FROM {db}.reports WHERE {by_session}"  # their reports' files
            uploads = f"({by_session}) OR (project_id = {project} AND toString(upload_id) IN ({attached}))"
            plan.blob_keys.update(ids(f"SELECT storage_key FROM {db}.uploads WHERE {uploads}"))
            # Uploads before reports: the attachments' subquery reads the reports.
            deletes += [("uploads", uploads), ("reports", by_session), ("game_events", by_session)]
        deletes += [(table, where) for table, where in direct.items() if table != "sessions"]
        if "sessions" in direct:
            deletes.append(("sessions", direct["sessions"]))
        # Dead letters keep the raw record: any that quotes an identifier goes too.
        quoted = [orjson.dumps(v).decode() for values in subject.identifiers.values() for v in values]
        deletes.append(("dead_letters", " OR ".join(f"position(payload, {quote(q)}) > 0" for q in quoted)))
        plan.deletes = deletes
        return plan

    def _strings(self, sql: str) -> list[str]:
        return [str(row[0]) for row in self._warehouse.query_rows(sql) if row[0]]

    def _delete(self, table: str, where: str) -> int:
        db = self._warehouse.database
        count = int(self._warehouse.query_rows(f"SELECT count() FROM {db}.{table} WHERE {where}")[0][0])
        if count:
            self._warehouse.command(f"ALTER TABLE {db}.{table} DELETE WHERE {where} SETTINGS mutations_sync = 2")
        return count

    def _rewrite_exports(self, subject: Subject, plan: _Plan, outcome: Outcome) -> None:
        assert self._exports is not None
        matches = line_matcher(subject, plan.session_ids)
        for info in self._exports.list_objects(""):
            removed = rewrite_export(self._exports, info.key, matches)
            if removed:
                outcome.export_lines_removed += removed
                outcome.export_files_rewritten += 1

    def _audit(
        self,
        outcome: Outcome,
        subject: Subject,
        hashes: list[str],
        state: str,
        requested_at: datetime,
        completed_at: datetime | None,
    ) -> None:
        self._warehouse.insert(
            "erasure_audit",
            [
                (
                    uuid.UUID(outcome.request_id),
                    subject.project_id,
                    hashes,
                    state,
                    requested_at,
                    completed_at,
                    sum(outcome.rows_deleted.values()),
                    outcome.blobs_deleted,
                    outcome.export_lines_removed,
                    1 if completed_at is None else 2,
                )
            ],  # fmt: skip
            [
                "request_id",
                "project_id",
                "subject_hashes",
                "state",
                "requested_at",
                "completed_at",
                "rows_deleted",
                "blobs_deleted",
                "export_lines_removed",
                "version",
            ],  # fmt: skip
        )


@dataclass
class _Plan:
    session_ids: list[str] = field(default_factory=list)
    group_ids: list[str] = field(default_factory=list)
    blob_keys: set[str] = field(default_factory=set)
    deletes: list[tuple[str, str]] = field(default_factory=list)


def line_matcher(subject: Subject, session_ids: Iterable[str]) -> Callable[[Mapping[str, Any]], bool]:
    """Whether an exported line belongs to the person (same fields as the tables)."""
    wanted = {kind: set(subject.values(kind)) for kind in IDENTIFIER_KINDS}
    sessions = set(session_ids)

    def matches(line: Mapping[str, Any]) -> bool:
        if line.get("project_id") != subject.project_id:
            return False
        for name, kind in _LINE_FIELDS.items():
            value = line.get(name)
            if isinstance(value, str) and value in wanted[kind]:
                return True
        if sessions and str(line.get("session_id")) in sessions:
            return True
        return bool(wanted["email"]) and _email_of(line.get("context")) & wanted["email"] != set()

    return matches


def _email_of(context: Any) -> set[str]:
    if isinstance(context, str):
        try:
            context = orjson.loads(context)
        except orjson.JSONDecodeError:
            return set()
    if not isinstance(context, dict):
        return set()
    user = context.get("user")
    found = [context.get("email"), context.get("user_email"), user.get("email") if isinstance(user, dict) else None]
    return {value for value in found if isinstance(value, str)}


def rewrite_export(store: BlobStore, key: str, drop: Callable[[Mapping[str, Any]], bool]) -> int:
    """Rewrite one NDJSON export without the lines ``drop`` selects; returns how many went.

    The store's ``put`` replaces the object atomically (a rename locally, one PUT on S3), so
    a reader sees the old file or the new one, never half of either. A file left without
    lines stays, empty: its name records which offsets were exported.
    """
    import gzip

    data = store.get(key)
    compressed = data[:2] == b"\x1f\x8b"
    text = gzip.decompress(data) if compressed else data
    kept: list[bytes] = []
    removed = 0
    for line in text.splitlines(keepends=True):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            kept.append(line)  # not ours to judge: left as it is
            continue
        if isinstance(row, dict) and drop(row):
            removed += 1
        else:
            kept.append(line)
    if removed:
        body = b"".join(kept)
        store.put(key, gzip.compress(body, compresslevel=6, mtime=0) if compressed else body, "application/x-ndjson")
    return removed
