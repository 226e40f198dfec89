"""Error grouping: typed errors and status changes → group state, inbox rows, notifications.

Pure: no I/O and no clock. ``ErrorGrouper.apply(records)`` folds a batch into the groups
it holds and returns what changed; ``main.py`` writes it and commits.

Guarantees:

- Exact counts under redelivery. Each group remembers the highest bus offset it has
  applied per topic (a group lives in one partition: ``typed.errors`` and
  ``control.error_groups`` are both keyed by project/fingerprint), so a batch replayed
  after a crash — state written, offsets not yet committed — is skipped record by record.
  Client retries of one event (same event id, a new bus record) are caught by the last
  ``RECENT_IDS`` event ids kept per group; ``error_group_events`` (one row per event id,
  ReplacingMergeTree) is the exact count whatever the window.
- Order does not matter for the aggregates: first/last seen are min/max of
  ``occurred_at``, the last level is the level of the latest event (ties: larger event
  id), releases and environments are sets. Any split of a stream across batches (or
  replicas owning disjoint groups) gives the same groups.
- Status: a new group is ``unresolved`` and emits a ``new`` record. A ``resolved`` group
  that sees an event that occurred after it was resolved becomes ``unresolved`` with
  ``regressed = 1`` and emits a ``regressed`` record. ``ignored`` groups count silently.
  Notification ids are derived (group, kind, triggering event id), so a replay re-emits
  the same ids and the notifier drops duplicates.

Failure modes: a record that is not a JSON object with the expected fields (or has a time
outside DateTime64's range) is rejected with ``InvalidMessage``; a record whose processing
raises anything else is rejected as a ``processing_error``. Either way ``main.py``
dead-letters it and ``apply`` goes on with the next record. A rejected record changes
nothing: each record is applied to a copy of its group, and the copy, its event row and its
notification are installed only once nothing more can raise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.bus.topics import CONTROL_ERROR_GROUPS, EVENTS_ERROR_GROUPS, TYPED_ERRORS
from forgeline.grouping import first_line, group_fingerprint, group_id, group_key
from forgeline.ids import derived_uuid
from forgeline.processing.deadletter import InvalidMessage, as_invalid
from forgeline.schemas.records import ERROR_GROUP_EVENTS, ERROR_GROUPS, datetime64_ms
from forgeline.schemas.typed import decode_typed

Status = Literal["unresolved", "resolved", "ignored"]
STATUSES: tuple[Status, ...] = ("unresolved", "resolved", "ignored")
ACTIONS = {"resolve": "resolved", "ignore": "ignored", "unresolve": "unresolved"}
RECENT_IDS = 256

# The tables' columns, in the order ``ErrorGroup.row()`` and the event rows give them.
GROUP_COLUMNS = ERROR_GROUPS.column_names
EVENT_COLUMNS = ERROR_GROUP_EVENTS.column_names


@dataclass
class ErrorGroup:
    project_id: str
    fingerprint: str
    organisation_id: str = ""
    title: str = ""
    exception_class: str = ""
    first_seen_ms: int = 0
    last_seen_ms: int = 0
    event_count: int = 0
    last_level: str = ""
    last_level_key: tuple[int, str] = (0, "")
    first_key: tuple[int, str] = (0, "")
    releases: set[str] = field(default_factory=set)
    environments: set[str] = field(default_factory=set)
    status: Status = "unresolved"
    regressed: bool = False
    status_changed_ms: int = 0
    recent_event_ids: list[str] = field(default_factory=list)
    applied_event_offset: int = -1
    applied_control_offset: int = -1
    version: int = 0

    @property
    def group_id(self) -> str:
        return group_id(self.project_id, self.fingerprint)

    def copy(self) -> ErrorGroup:
        """A copy to change: the held group stays as it was until the copy replaces it."""
        return replace(
            self,
            releases=set(self.releases),
            environments=set(self.environments),
            recent_event_ids=list(self.recent_event_ids),
        )

    def row(self) -> tuple[Any, ...]:
        """The ``error_groups`` row (``ERROR_GROUPS``' columns, timestamps as epoch ms)."""
        return (
            self.project_id,
            self.group_id,
            self.fingerprint,
            self.organisation_id,
            self.title,
            self.exception_class,
            self.first_seen_ms,
            self.last_seen_ms,
            self.event_count,
            self.last_level,
            sorted(self.releases),
            sorted(self.environments),
            self.status,
            int(self.regressed),
            self.status_changed_ms,
            list(self.recent_event_ids),
            self.applied_event_offset,
            self.applied_control_offset,
            self.version,
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ErrorGroup:
        """Rebuild from an ``error_groups`` row of row values (``cells.rows_from_warehouse``)."""
        group = cls(
            project_id=str(row["project_id"]),
            fingerprint=str(row["fingerprint"]),
            organisation_id=str(row["organisation_id"]),
            title=str(row["title"]),
            exception_class=str(row["exception_class"]),
            first_seen_ms=int(row["first_seen"]),
            last_seen_ms=int(row["last_seen"]),
            event_count=int(row["event_count"]),
            last_level=str(row["last_level"]),
            releases=set(row["releases"]),
            environments=set(row["environments"]),
            status=_status(str(row["status"])),
            regressed=bool(row["regressed"]),
            status_changed_ms=int(row["status_changed_at"]),
            recent_event_ids=[str(x) for x in row["recent_event_ids"]],
            applied_event_offset=int(row["applied_event_offset"]),
            applied_control_offset=int(row["applied_control_offset"]),
            version=int(row["version"]),
        )
        # The exact tie-break key of the last level is not stored; last_seen is enough to
        # keep "latest event wins" for every event that is not a same-millisecond tie.
        group.last_level_key = (group.last_seen_ms, "")
        group.first_key = (group.first_seen_ms, "")
        return group


def _status(value: str) -> Status:
    for status in STATUSES:
        if status == value:
            return status
    return "unresolved"


@dataclass
class BatchResult:
    """What one batch changed: group rows to upsert, event rows, notifications."""

    groups: dict[str, ErrorGroup] = field(default_factory=dict)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    notifications: list[OutgoingRecord] = field(default_factory=list)
    notification_kinds: list[str] = field(default_factory=list)  # "new" | "regressed", per notification
    rejected: list[tuple[Record, InvalidMessage]] = field(default_factory=list)


def control_record(project_id: str, fingerprint: str, action: str, at_ms: int) -> OutgoingRecord:
    """A status change as the CLI sends it (``forgeline errors resolve|ignore|unresolve``)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    doc = {"project_id": project_id, "fingerprint": fingerprint, "action": action, "at_ms": at_ms}
    return OutgoingRecord(CONTROL_ERROR_GROUPS, orjson.dumps(doc), key=group_key(project_id, fingerprint))


class ErrorGrouper:
    """All groups of the partitions this consumer owns, keyed by (project, fingerprint)."""

    def __init__(self, groups: Iterable[ErrorGroup] = ()) -> None:
        self.groups: dict[tuple[str, str], ErrorGroup] = {(g.project_id, g.fingerprint): g for g in groups}

    def apply(self, records: Iterable[Record]) -> BatchResult:
        """Fold records (typed.errors and control.error_groups) in. A record that cannot be
        processed, whatever it raises, is returned in ``rejected`` (state untouched for it);
        nothing raises."""
        result = BatchResult()
        for record in records:
            try:
                if record.topic == CONTROL_ERROR_GROUPS:
                    self._apply_control(record, result)
                elif record.topic == TYPED_ERRORS:
                    self._apply_error(record, result)
            except Exception as err:  # noqa: BLE001 - one record's failure, never the batch's
                result.rejected.append((record, as_invalid(err)))
        return result

    def _install(self, group: ErrorGroup, result: BatchResult) -> None:
        """The last step of a record: its changed copy becomes the group (nothing here raises)."""
        self.groups[(group.project_id, group.fingerprint)] = group
        result.groups[group.group_id] = group

    def _apply_error(self, record: Record, result: BatchResult) -> None:
        doc = decode_typed(record)
        try:
            project_id = str(doc["project_id"])
            message = str(doc.get("message") or "")
            exception_class = str(doc.get("exception_class") or "")
            fingerprint = group_fingerprint(str(doc.get("fingerprint") or ""), message, exception_class)
            event_id = str(doc["event_id"])
            occurred = datetime64_ms(doc["occurred_at"])
            level = str(doc.get("level") or "error")
            environment = str(doc.get("environment") or "")
            release = str(doc.get("release") or "")
            organisation_id = str(doc.get("organisation_id") or "")
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidMessage("bad_typed_record", repr(err)) from err
        held = self.groups.get((project_id, fingerprint))
        is_new = held is None
        if held is None:
            group = ErrorGroup(project_id, fingerprint, organisation_id=organisation_id)
            group.first_key = (occurred + 1, "")  # replaced by this event just below
            group.first_seen_ms = occurred
            group.last_seen_ms = occurred
        elif record.offset <= held.applied_event_offset:
            return  # already in the stored state: a redelivery after a crash
        else:
            group = held.copy()
        group.applied_event_offset = record.offset
        if event_id in group.recent_event_ids:
            group.version += 1
            self._install(group, result)
            return  # a client retry of an event already counted
        group.recent_event_ids.append(event_id)
        del group.recent_event_ids[:-RECENT_IDS]
        group.event_count += 1
        group.first_seen_ms = min(group.first_seen_ms, occurred)
        if (occurred, event_id) < group.first_key:
            # Title and class come from the earliest event, whatever order events arrive in.
            group.first_key = (occurred, event_id)
            group.title = first_line(message)[:500]
            group.exception_class = exception_class
        group.last_seen_ms = max(group.last_seen_ms, occurred)
        if (occurred, event_id) > group.last_level_key:
            group.last_level_key = (occurred, event_id)
            group.last_level = level
        if release:
            group.releases.add(release)
        if environment:
            group.environments.add(environment)
        kind = ""
        if is_new:
            kind = "new"
        elif group.status == "resolved" and occurred > group.status_changed_ms:
            kind = "regressed"
            group.status = "unresolved"
            group.regressed = True
            group.status_changed_ms = occurred
        notification = _notification(group, kind, event_id, occurred) if kind else None
        group.version += 1
        event = (project_id, group.group_id, event_id, occurred, environment, release, level)
        # Installed only now: anything above that raised left the held group untouched.
        self._install(group, result)
        result.events.append(event)
        if notification is not None:
            result.notifications.append(notification)
            result.notification_kinds.append(kind)

    def _apply_control(self, record: Record, result: BatchResult) -> None:
        doc = _decode(record)
        try:
            key = (str(doc["project_id"]), str(doc["fingerprint"]))
            new_status = ACTIONS[str(doc["action"])]
            at_ms = datetime64_ms(doc["at_ms"])
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidMessage("bad_control_record", repr(err)) from err
        held = self.groups.get(key)
        if held is None or record.offset <= held.applied_control_offset:
            return  # unknown group (nothing to change) or already applied
        group = held.copy()
        group.applied_control_offset = record.offset
        group.status = _status(new_status)
        group.regressed = False
        group.status_changed_ms = at_ms
        group.version += 1
        self._install(group, result)


def _decode(record: Record) -> dict[str, Any]:
    try:
        doc = orjson.loads(record.value)
    except orjson.JSONDecodeError as err:
        raise InvalidMessage("bad_typed_record", repr(err)) from err
    if not isinstance(doc, dict):
        raise InvalidMessage("bad_typed_record", "not a JSON object")
    return doc


def _notification(group: ErrorGroup, kind: str, event_id: str, occurred_ms: int) -> OutgoingRecord:
    doc = {
        "notification_id": str(derived_uuid("error_group_notification", group.group_id, kind, event_id)),
        "kind": kind,
        "project_id": group.project_id,
        "organisation_id": group.organisation_id,
        "group_id": group.group_id,
        "fingerprint": group.fingerprint,
        "title": group.title,
        "exception_class": group.exception_class,
        "level": group.last_level,
        "event_id": event_id,
        "occurred_at": occurred_ms,
        "event_count": group.event_count,
    }
    return OutgoingRecord(EVENTS_ERROR_GROUPS, orjson.dumps(doc), key=group_key(group.project_id, group.fingerprint))
