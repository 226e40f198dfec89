"""Check-in monitors on a stream clock: ok / failing / missed / recovered.

Pure: no I/O and no wall clock. Time comes only from the stream.

The stream clock. "Missed" means: no check-in by ``last check-in + interval + margin``.
Judged by a consumer's wall clock, a consumer that lags (or restarts with a backlog)
would call a monitor missed while its check-in sits unread in the log. So the evaluator
only believes time it has *read*: ticks. The monitor service appends a tick (its wall
time minus a slack that covers the gateway's stamp-to-append delay) to every partition of
``raw.logister``; the normalizer forwards each one to every partition of
``typed.checkins`` with the raw partition it came from. A tick ``W`` from raw partition
``p`` read on typed partition ``q`` proves that every check-in appended to ``p`` before it
and routed to ``q`` has been read. The clock is therefore the minimum, over all (q, p)
pairs, of the last tick read — the slowest partition holds it back — and it never goes
back. Until every pair has delivered a tick, it stays at its restored floor.

Consequences: consumer lag, a stopped consumer, a restart with a backlog, or a lagging
normalizer can never produce a false "missed" (ticks sit behind the check-ins they
follow); an idle system still advances (ticks keep coming). If ticks stop (the monitor
service's ticker is down), the clock stops and nothing is missed — the safe failure.

States and transitions (``apply``):

- first check-in: ``ok`` (status ok) or ``failing`` (status error);
- check-in ``error`` → ``failing``; check-in ``ok`` after ``failing``/``missed`` →
  ``recovered``; ``ok`` after ``recovered`` → ``ok``;
- stream clock passes ``deadline = last check-in (received_at) + interval + margin``
  while the state is not ``missed`` → ``missed``, once per deadline (a check-in exactly
  at the deadline is on time).

Exactly once under redelivery: each monitor stores the offset of the last check-in it
applied (a monitor lives in one partition); a replayed record at or below it is skipped.
Change ids are derived (monitor, state, time, trigger), so a replayed change keeps its id.

A record that cannot be processed — bad data (``InvalidMessage``) or anything else that
raises (a ``processing_error``) — is returned in ``rejected`` and changes nothing: a
check-in is applied to a copy of its monitor, a tick's expiries are computed on copies
against the clock it would move to, and both are installed only once nothing more can raise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.bus.topics import EVENTS_MONITORS, TICK_HEADER, TYPED_CHECKINS
from forgeline.ids import derived_uuid
from forgeline.processing.deadletter import InvalidMessage, as_invalid
from forgeline.schemas.records import DATETIME64_MAX_MS, MONITOR_STATE_CHANGES, MONITOR_STATES, datetime64_ms
from forgeline.schemas.typed import decode_typed

State = Literal["ok", "failing", "missed", "recovered"]
STATES: tuple[State, ...] = ("ok", "failing", "missed", "recovered")
SOURCE_PARTITION_HEADER = "source_partition"

# The tables' columns, in the order ``Monitor.row()`` and ``StateChange.row()`` give them.
MONITOR_COLUMNS = MONITOR_STATES.column_names
CHANGE_COLUMNS = MONITOR_STATE_CHANGES.column_names


@dataclass
class Monitor:
    project_id: str
    environment: str
    slug: str
    organisation_id: str = ""
    state: State = "ok"
    interval_s: int = 300
    margin_s: int = 60
    last_check_in_ms: int = 0
    last_status: str = ""
    state_changed_ms: int = 0
    applied_offset: int = -1
    version: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.project_id, self.environment, self.slug)

    @property
    def deadline_ms(self) -> int:
        return self.last_check_in_ms + (self.interval_s + self.margin_s) * 1000

    def row(self) -> tuple[Any, ...]:
        """The ``monitor_states`` row (timestamps as epoch ms)."""
        return (
            self.project_id,
            self.environment,
            self.slug,
            self.organisation_id,
            self.state,
            self.interval_s,
            self.margin_s,
            self.last_check_in_ms,
            self.last_status,
            self.deadline_ms,
            self.state_changed_ms,
            self.applied_offset,
            self.version,
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Monitor:
        state = str(row["state"])
        return cls(
            project_id=str(row["project_id"]),
            environment=str(row["environment"]),
            slug=str(row["slug"]),
            organisation_id=str(row["organisation_id"]),
            state=next((s for s in STATES if s == state), "ok"),
            interval_s=int(row["interval_seconds"]),
            margin_s=int(row["margin_seconds"]),
            last_check_in_ms=int(row["last_check_in_at"]),
            last_status=str(row["last_status"]),
            state_changed_ms=int(row["state_changed_at"]),
            applied_offset=int(row["applied_offset"]),
            version=int(row["version"]),
        )


@dataclass(frozen=True, slots=True)
class StateChange:
    change_id: str
    project_id: str
    environment: str
    slug: str
    previous_state: str
    state: State
    changed_ms: int
    clock_ms: int
    reason: str  # "check_in" or "deadline"
    event_id: str

    def row(self) -> tuple[Any, ...]:
        return (
            self.change_id,
            self.project_id,
            self.environment,
            self.slug,
            self.previous_state,
            self.state,
            self.changed_ms,
            self.clock_ms,
            self.reason,
            self.event_id,
        )

    def record(self) -> OutgoingRecord:
        doc = {
            "change_id": self.change_id,
            "project_id": self.project_id,
            "environment": self.environment,
            "slug": self.slug,
            "previous_state": self.previous_state,
            "state": self.state,
            "changed_at": self.changed_ms,
            "reason": self.reason,
            "event_id": self.event_id,
        }
        key = f"{self.project_id}/{self.environment}/{self.slug}".encode()
        return OutgoingRecord(EVENTS_MONITORS, orjson.dumps(doc), key=key)


class StreamClock:
    """min over (typed partition, raw partition) of the last tick read; never goes back.

    ``typed_partitions`` is a count (every partition, as in embedded mode) or the
    partitions this consumer is assigned (a replica of a shared group judges only its own).
    """

    def __init__(self, typed_partitions: int | Iterable[int], raw_partitions: int, floor_ms: int = 0) -> None:
        typed = range(typed_partitions) if isinstance(typed_partitions, int) else typed_partitions
        self._pairs = len(set(typed)) * raw_partitions
        self._ticks: dict[tuple[int, int], int] = {}
        self.now_ms = floor_ms

    def peek(self, typed_partition: int, raw_partition: int, at_ms: int) -> int | None:
        """Where this tick would move the clock (None: nowhere), changing nothing."""
        pair = (typed_partition, raw_partition)
        ticks = {**self._ticks, pair: max(self._ticks.get(pair, 0), at_ms)}
        if not self._pairs or len(ticks) < self._pairs:
            return None
        candidate = min(ticks.values())
        return candidate if candidate > self.now_ms else None

    def tick(self, typed_partition: int, raw_partition: int, at_ms: int) -> bool:
        """Record a tick; True if the clock moved forward."""
        pair = (typed_partition, raw_partition)
        self._ticks[pair] = max(self._ticks.get(pair, 0), at_ms)
        if not self._pairs or len(self._ticks) < self._pairs:
            return False
        candidate = min(self._ticks.values())
        if candidate > self.now_ms:
            self.now_ms = candidate
            return True
        return False


def tick_value(at_ms: int) -> bytes:
    return orjson.dumps({"tick_ms": at_ms})


def is_tick(record: Record) -> bool:
    return record.header(TICK_HEADER) is not None


@dataclass
class BatchResult:
    monitors: dict[tuple[str, str, str], Monitor] = field(default_factory=dict)
    changes: list[StateChange] = field(default_factory=list)
    rejected: list[tuple[Record, InvalidMessage]] = field(default_factory=list)
    clock_moved: bool = False


class Evaluator:
    """Every monitor of the owned partitions, evaluated against one stream clock."""

    def __init__(self, clock: StreamClock, margin_s: int, monitors: Iterable[Monitor] = ()) -> None:
        self.clock = clock
        self.margin_s = margin_s
        self.monitors: dict[tuple[str, str, str], Monitor] = {m.key: m for m in monitors}

    def apply(self, records: Iterable[Record]) -> BatchResult:
        result = BatchResult()
        for record in records:
            if record.topic != TYPED_CHECKINS:
                continue
            try:
                if is_tick(record):
                    self._tick(record, result)
                else:
                    self._check_in(record, result)
            except Exception as err:  # noqa: BLE001 - one record's failure, never the batch's
                result.rejected.append((record, as_invalid(err)))
        return result

    def _install(self, monitor: Monitor, changes: list[StateChange], result: BatchResult) -> None:
        """The last step of a record: a changed copy becomes the monitor (nothing here raises)."""
        self.monitors[monitor.key] = monitor
        result.monitors[monitor.key] = monitor
        result.changes.extend(changes)

    def _tick(self, record: Record, result: BatchResult) -> None:
        try:
            at_ms = datetime64_ms(orjson.loads(record.value)["tick_ms"])
            source = int(record.header(SOURCE_PARTITION_HEADER) or b"0")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise InvalidMessage("bad_tick", repr(err)) from err
        now = self.clock.peek(record.partition, source, at_ms)
        # The expiries are computed on copies first: if anything raises, neither the clock
        # nor a monitor has moved.
        expired = self._expire(now) if now is not None else []
        if self.clock.tick(record.partition, source, at_ms):
            result.clock_moved = True
        for monitor, change in expired:
            self._install(monitor, [change], result)

    def _expire(self, now: int) -> list[tuple[Monitor, StateChange]]:
        # A scan of every monitor per clock step: fine for thousands of monitors; a heap
        # keyed by deadline is the next step if that stops being true.
        expired = []
        for held in self.monitors.values():
            if held.state != "missed" and held.deadline_ms < now:
                monitor = replace(held)
                expired.append((monitor, self._change(monitor, "missed", monitor.deadline_ms, "deadline", "", now)))
        return expired

    def _check_in(self, record: Record, result: BatchResult) -> None:
        try:
            doc = decode_typed(record)
            key = (str(doc["project_id"]), str(doc["environment"]), str(doc["slug"]))
            received = int(doc["received_at"])
            status = str(doc.get("status") or "ok")
            interval = int(doc.get("expected_interval_seconds") or 300)
            event_id = str(doc["event_id"])
            organisation_id = str(doc.get("organisation_id") or "")
            datetime64_ms(received)
            if interval <= 0 or received + (interval + self.margin_s) * 1000 > DATETIME64_MAX_MS:
                raise ValueError(f"expected_interval_seconds {interval} puts the deadline out of range")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise InvalidMessage("bad_typed_record", repr(err)) from err
        held = self.monitors.get(key)
        if held is None:
            monitor = Monitor(*key, organisation_id=organisation_id, state="ok", margin_s=self.margin_s)
            monitor.state_changed_ms = received
            previous = ""
        elif record.offset <= held.applied_offset:
            return  # already applied before a crash: a redelivery
        else:
            monitor = replace(held)  # changed as a copy, installed at the end
            previous = monitor.state
        monitor.applied_offset = record.offset
        monitor.interval_s = interval
        monitor.margin_s = self.margin_s
        monitor.last_status = status
        # A check-in read late must not move the deadline back (clients' retries can
        # reorder two check-ins of one monitor by a little).
        monitor.last_check_in_ms = max(monitor.last_check_in_ms, received)
        if status == "error":
            new: State = "failing"
        elif previous in ("failing", "missed"):
            new = "recovered"
        else:
            new = "ok"
        monitor.version += 1
        changes = []
        if new != previous:
            changes.append(
                self._change(monitor, new, received, "check_in", event_id, self.clock.now_ms, previous=previous)
            )
        self._install(monitor, changes, result)

    @staticmethod
    def _change(
        monitor: Monitor,
        state: State,
        at_ms: int,
        reason: str,
        event_id: str,
        clock_ms: int,
        previous: str | None = None,
    ) -> StateChange:
        """Move ``monitor`` (a copy, not yet installed) to ``state``; the change record."""
        before = monitor.state if previous is None else previous
        change_id = str(derived_uuid("monitor_change", *monitor.key, state, str(at_ms), reason, event_id))
        monitor.state = state
        monitor.state_changed_ms = at_ms
        monitor.version += 1
        return StateChange(change_id, *monitor.key, before, state, at_ms, clock_ms, reason, event_id)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = dict.fromkeys(STATES, 0)
        for monitor in self.monitors.values():
            out[monitor.state] += 1
        return out
