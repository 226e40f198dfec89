"""Dead letters: a record no step can process goes to ``dlq.<group>`` with its reason.

The original key and value are kept byte for byte; where it came from and why it
failed travel in headers, so the record can be inspected and replayed once fixed.

Every processor handles a failing record the same way, through ``DeadLetters``: any
exception a step raises for one record — ``InvalidMessage`` (bad data) or anything else
(a bug: reason ``processing_error``, detail = exception type, message and where it was
raised) — dead-letters that record, counts it, logs it, and the next record is processed.
One record can never stop a processor, so it can never crash-loop one.

What does stop a processor is ``DeadLetterLimit``: when more than ``max_ratio`` of the last
``window`` records were dead-lettered (once at least ``min_records`` were seen), the
processor raises ``DeadLetterLimitExceeded`` *before* appending that batch's dead letters or
committing it. That is a bad deploy or a broken dependency, not bad input: the records stay
in the log for the fixed version instead of being dead-lettered wholesale.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.bus.topics import dead_letter_topic
from forgeline.telemetry.metrics import PROCESSOR_DEAD_LETTERS

log = logging.getLogger(__name__)
T = TypeVar("T")

PROCESSING_ERROR = "processing_error"  # the reason of an unexpected exception (a bug)


class InvalidMessage(Exception):
    """Raised by a step for a record that can never be processed (bad data, not a bug)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason  # a short fixed label, used in metrics
        self.detail = detail


def as_invalid(error: Exception) -> InvalidMessage:
    """``error`` as a dead-letter reason: an InvalidMessage stays as it is; anything else is a
    ``processing_error`` whose detail names the exception and the line that raised it (kept
    as ``__cause__``, so the traceback can still be logged)."""
    if isinstance(error, InvalidMessage):
        return error
    detail = f"{type(error).__name__}: {error}"
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        last = frames[-1]
        detail += f" (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name})"
    invalid = InvalidMessage(PROCESSING_ERROR, detail)
    invalid.__cause__ = error
    return invalid


def dead_letter(group: str, record: Record, error: InvalidMessage, key: str | None = None) -> OutgoingRecord:
    """``record``'s dead letter. ``key`` tells apart the dead letters of one source record
    (its items, say): the ``dead_letters`` table is keyed by the source position, plus this."""
    headers: tuple[tuple[str, bytes], ...] = (
        ("reason", error.reason.encode()),
        ("detail", error.detail.encode("utf-8", "replace")[:4000]),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
        ("failed_at_ms", str(int(time.time() * 1000)).encode()),
    )
    if key is not None:
        headers += (("dead_letter_key", key.encode()),)
    return OutgoingRecord(dead_letter_topic(group), record.value, key=record.key, headers=headers)


@dataclass(frozen=True, slots=True)
class DeadLetterPolicy:
    """When dead-lettering stops being "a few bad records" (FORGELINE_DLQ_* settings)."""

    max_ratio: float = 0.5  # stop when more than this share of the window was dead-lettered
    min_records: int = 100  # ... and the window holds at least this many records
    window: int = 1000  # the last this-many records (counted in whole batches)

    def __post_init__(self) -> None:
        if not 0 < self.max_ratio <= 1 or self.min_records < 1 or self.window < 1:
            raise ValueError(f"bad dead-letter policy {self!r}")


class DeadLetterLimitExceeded(RuntimeError):
    """Most recent records of a processor failed: stop it rather than dead-letter a whole stream."""


class DeadLetterLimit:
    """A sliding window over a processor's outcomes, fed batch by batch (``observe``).

    The window keeps whole batches while the newer ones still hold ``window`` records, so
    it covers the last ``window`` records or a little more (never less, once there are
    that many). Cost: one deque entry per batch.
    """

    def __init__(self, service: str, policy: DeadLetterPolicy) -> None:
        self.service = service
        self.policy = policy
        self._batches: deque[tuple[int, int]] = deque()
        self.records = 0
        self.dead = 0

    def exceeded(self) -> bool:
        return self.records >= self.policy.min_records and self.dead > self.policy.max_ratio * self.records

    def observe(self, processed: int, dead: int) -> bool:
        """Count a batch: ``processed`` records, ``dead`` of them dead-lettered. True if the
        window is now over the limit."""
        if processed > 0:
            self._batches.append((processed, dead))
            self.records += processed
            self.dead += dead
            while self.records - self._batches[0][0] >= self.policy.window:
                old_processed, old_dead = self._batches.popleft()
                self.records -= old_processed
                self.dead -= old_dead
        return self.exceeded()


class _Guard:
    """The context manager of ``DeadLetters.guarded``: swallows an Exception into a dead letter."""

    __slots__ = ("_owner", "_record", "_into", "failed")

    def __init__(self, owner: DeadLetters, record: Record, into: list[OutgoingRecord]) -> None:
        self._owner = owner
        self._record = record
        self._into = into
        self.failed = False

    def __enter__(self) -> _Guard:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> bool:
        if not isinstance(error, Exception):
            return False  # success, or CancelledError/KeyboardInterrupt: not the record's fault
        self.failed = True
        self._into.append(self._owner.reject(self._record, error))
        return True


class DeadLetters:
    """One processor's dead-letter handling: the record, the metric, the log, the limit.

    ``each(records, step, into)`` runs a step over a batch (the hot loops: no object per
    record); ``guarded(record, into)`` wraps one record's block; ``reject`` is for steps that
    collect failures themselves (the stateful processors' pure ``apply``); ``check`` is
    called once per batch, before its dead letters are appended and its offsets committed.
    """

    def __init__(self, group: str, policy: DeadLetterPolicy | None = None) -> None:
        self.group = group
        self.limit = DeadLetterLimit(group, policy or DeadLetterPolicy())
        self._last = ""
        self._stopped: str | None = None  # the limit's message, once exceeded

    def each(
        self, records: Iterable[Record], step: Callable[[Record], T], into: list[OutgoingRecord]
    ) -> Iterator[tuple[Record, T]]:
        """``(record, step(record))`` for each record whose step returned; a record whose step
        raised anything is dead-lettered into ``into`` instead, and the next one goes on."""
        for record in records:
            try:
                result = step(record)
            except Exception as err:  # noqa: BLE001 - one record's failure, never the batch's
                into.append(self.reject(record, err))
                continue
            yield record, result

    def guarded(self, record: Record, into: list[OutgoingRecord]) -> _Guard:
        """``with dead_letters.guarded(record, dead):`` — an exception in the block appends
        ``record``'s dead letter to ``dead`` and is swallowed; ``.failed`` tells."""
        return _Guard(self, record, into)

    def reject(self, record: Record, error: Exception, key: str | None = None) -> OutgoingRecord:
        """Count and log one failed record; its dead letter (for the caller to append).
        ``key``: which part of its source record it is, when one source has several."""
        invalid = as_invalid(error)
        PROCESSOR_DEAD_LETTERS.labels(service=self.group, reason=invalid.reason).inc()
        where = {"processor": self.group, "reason": invalid.reason, "topic": record.topic,
                 "partition": record.partition, "offset": record.offset}  # fmt: skip
        if invalid.reason == PROCESSING_ERROR:
            # A bug, not bad data: keep the traceback.
            log.error("dead-lettered after an unexpected error", exc_info=invalid.__cause__,
                      extra={**where, "detail": invalid.detail[:1000]})  # fmt: skip
        else:
            log.warning("dead-lettered", extra={**where, "detail": invalid.detail[:300]})
        self._last = str(invalid)[:500]
        return dead_letter(self.group, record, invalid, key)

    def check(self, processed: int, dead: int) -> None:
        """Count a batch; raise DeadLetterLimitExceeded (and keep raising) once over the limit."""
        if self._stopped is None and self.limit.observe(processed, dead):
            policy = self.limit.policy
            self._stopped = (
                f"{self.group}: {self.limit.dead} of the last {self.limit.records} records failed "
                f"(more than {policy.max_ratio:.0%}); stopping before this batch is committed. Last failure: "
                f"{self._last}. Fix or roll back, then restart: this batch's records are still in the log "
                f"(limits: FORGELINE_DLQ_MAX_RATIO, FORGELINE_DLQ_MIN_RECORDS, FORGELINE_DLQ_WINDOW_RECORDS)"
            )
            log.critical(f"dead-letter limit exceeded: {self._stopped}",
                         extra={"processor": self.group, "records": self.limit.records, "dead": self.limit.dead,
                                "max_ratio": policy.max_ratio})  # fmt: skip
        if self._stopped is not None:
            raise DeadLetterLimitExceeded(self._stopped)
