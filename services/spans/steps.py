"""Span assembly: spans of a trace, in any order → a tree, per-span rows and a summary.

Pure: no I/O. The caller passes time (``now`` in seconds, from a ``Clock``).

Guarantees:

- Any permutation and any duplication of a trace's spans gives the same tree and the
  same summary. A span is identified by ``span_id`` within its trace; when two records
  carry one span id, the one with the larger ``(received_at, event_id)`` wins, whatever
  the arrival order.
- Orphans are kept: a span whose ``parent_span_id`` is not in the trace is marked
  ``is_orphan`` and placed at depth 0, and its subtree hangs below it. A parent cycle
  (bad data) is broken the same way: the smallest span id not reachable from a root
  becomes an orphan root, repeatedly, until every span is placed.
- Self time = the span's duration minus the part of it covered by the union of its
  children's intervals (clipped to the span), so overlapping children are not counted
  twice and the result is never negative.
- ``summary_version`` = the number of distinct spans: a re-summary after a late span has
  a higher version, and the ReplacingMergeTree tables keep one current row per trace.

Failure modes: a span record without ``trace_id`` / ``span_id``, with bad numbers or with
times outside DateTime64's range raises ``InvalidMessage`` from ``span_from_doc``; it is
dead-lettered by ``main.py``, as is a record whose processing raises anything else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from forgeline.processing.deadletter import InvalidMessage
from forgeline.schemas.records import SPAN_TREE, TRACE_SUMMARIES, datetime64_ms

ERROR_LEVELS = frozenset({"error", "fatal", "critical"})

# The tables' columns, in the order main.py's tree_row and summary_row give them.
TREE_COLUMNS = SPAN_TREE.column_names
SUMMARY_COLUMNS = TRACE_SUMMARIES.column_names


@dataclass(frozen=True, slots=True)
class Span:
    project_id: str
    environment: str
    trace_id: str
    span_id: str
    parent_span_id: str
    event_id: str
    name: str
    kind: str
    status: str
    level: str
    service: str
    started_ms: int
    ended_ms: int
    received_ms: int
    duration_ms: float

    @property
    def precedence(self) -> tuple[int, str]:
        return (self.received_ms, self.event_id)

    @property
    def is_error(self) -> bool:
        return self.status.lower() == "error" or self.level.lower() in ERROR_LEVELS


def span_from_doc(doc: dict[str, Any]) -> Span:
    """A typed span record (``schemas/records.py: SPAN``) or a ``span_tree`` row → Span."""
    try:
        trace_id, span_id = str(doc["trace_id"]), str(doc["span_id"])
        started = datetime64_ms(doc["started_at"])
        duration = float(doc.get("duration_ms") or 0.0)
        ended_raw = doc.get("ended_at")
        ended = int(ended_raw) if ended_raw is not None else started + int(round(duration))
        span = Span(
            project_id=str(doc["project_id"]),
            environment=str(doc.get("environment") or ""),
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=str(doc.get("parent_span_id") or ""),
            event_id=str(doc.get("event_id") or ""),
            name=str(doc.get("name") or ""),
            kind=str(doc.get("kind") or ""),
            status=str(doc.get("status") or ""),
            level=str(doc.get("level") or ""),
            service=str(doc.get("service") or ""),
            started_ms=started,
            # Every time is one a span_tree row can hold: a flush never fails on them.
            ended_ms=datetime64_ms(max(ended, started)),
            received_ms=datetime64_ms(doc.get("received_at") or 0),
            duration_ms=max(duration, 0.0),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise InvalidMessage("bad_typed_record", repr(err)) from err
    if not trace_id or not span_id:
        raise InvalidMessage("bad_typed_record", "span without trace_id or span_id")
    return span


@dataclass(frozen=True, slots=True)
class SpanNode:
    span: Span
    depth: int
    is_orphan: bool
    child_count: int
    self_time_ms: float


@dataclass(frozen=True, slots=True)
class TraceSummary:
    project_id: str
    environment: str
    trace_id: str
    root_span_id: str
    root_name: str
    started_ms: int
    ended_ms: int
    duration_ms: float
    span_count: int
    max_depth: int
    error_count: int
    orphan_count: int
    services: tuple[str, ...]

    @property
    def version(self) -> int:
        return self.span_count


def merge_span(spans: dict[str, Span], span: Span) -> bool:
    """Add ``span`` to a trace's spans; True if the trace changed (duplicates do not)."""
    current = spans.get(span.span_id)
    if current is not None and current.precedence >= span.precedence:
        return False
    spans[span.span_id] = span
    return True


def build_tree(spans: dict[str, Span]) -> tuple[list[SpanNode], TraceSummary]:
    """The tree and summary of one trace (its spans by span id; at least one)."""
    children: dict[str, list[str]] = {}
    roots: list[str] = []
    orphans: set[str] = set()
    for span_id in sorted(spans):
        parent = spans[span_id].parent_span_id
        if parent and parent in spans and parent != span_id:
            children.setdefault(parent, []).append(span_id)
        else:
            roots.append(span_id)
            if parent:
                orphans.add(span_id)
    depth: dict[str, int] = {}
    _walk(roots, children, depth)
    # Whatever is still unreached sits on or below a parent cycle (bad data): the smallest
    # unreached id becomes an orphan root, until every span has a depth.
    for span_id in sorted(spans):
        if span_id not in depth:
            orphans.add(span_id)
            parent = spans[span_id].parent_span_id
            children[parent].remove(span_id)
            roots.append(span_id)
            _walk([span_id], children, depth)
    nodes = []
    for span_id in sorted(spans):
        span = spans[span_id]
        kids = [spans[k] for k in children.get(span_id, [])]
        nodes.append(SpanNode(span, depth[span_id], span_id in orphans, len(kids), _self_time(span, kids)))
    return nodes, _summarize(spans, nodes, roots, orphans)


def _walk(starts: Iterable[str], children: dict[str, list[str]], depth: dict[str, int]) -> None:
    stack = [(s, 0) for s in starts]
    while stack:
        span_id, d = stack.pop()
        if span_id in depth:
            continue
        depth[span_id] = d
        stack.extend((child, d + 1) for child in children.get(span_id, []))


def _self_time(span: Span, kids: list[Span]) -> float:
    covered = 0
    intervals = sorted(
        (max(k.started_ms, span.started_ms), min(k.ended_ms, span.ended_ms))
        for k in kids
        if k.ended_ms > span.started_ms and k.started_ms < span.ended_ms
    )
    cur_start, cur_end = None, None
    for start, end in intervals:
        if cur_end is None or start > cur_end:
            if cur_start is not None and cur_end is not None:
                covered += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_start is not None and cur_end is not None:
        covered += cur_end - cur_start
    return max(span.duration_ms - covered, 0.0)


def _summarize(spans: dict[str, Span], nodes: list[SpanNode], roots: list[str], orphans: set[str]) -> TraceSummary:
    true_roots = sorted((spans[r] for r in roots if r not in orphans), key=lambda s: (s.started_ms, s.span_id))
    root = true_roots[0] if true_roots else None
    started = min(s.started_ms for s in spans.values())
    ended = max(s.ended_ms for s in spans.values())
    first = next(iter(sorted(spans.values(), key=lambda s: (s.started_ms, s.span_id))))
    return TraceSummary(
        project_id=first.project_id,
        environment=(root or first).environment,
        trace_id=first.trace_id,
        root_span_id=root.span_id if root else "",
        root_name=root.name if root else "",
        started_ms=started,
        ended_ms=ended,
        duration_ms=float(ended - started),
        span_count=len(spans),
        max_depth=max(n.depth for n in nodes),
        error_count=sum(1 for s in spans.values() if s.is_error),
        orphan_count=len(orphans),
        services=tuple(sorted({s.service for s in spans.values() if s.service})),
    )


@dataclass
class OpenTrace:
    """A trace the assembler holds: its spans, when it last changed, what was written."""

    spans: dict[str, Span] = field(default_factory=dict)
    last_change_s: float = 0.0
    summarized_version: int = 0
    # The smallest bus offset per partition of a span not yet written: commits stop there.
    pending_offsets: dict[int, int] = field(default_factory=dict)

    @property
    def dirty(self) -> bool:
        return bool(self.pending_offsets)


class Assembler:
    """Traces of the owned partitions, summarized after ``quiet_s`` without a new span.

    A summarized trace stays in memory for ``keep_s`` so that a late span re-summarizes it
    without a warehouse read; after that it is evicted and ``main.py`` reloads its spans
    from ``span_tree`` when one more arrives (``needs_load``).

    Cost: ``due`` and ``commit_floor`` look at unwritten traces only, ``evict`` at the
    traces it evicts (``traces`` is kept in order of last change).
    """

    def __init__(self, quiet_s: float, keep_s: float) -> None:
        self.quiet_s = quiet_s
        self.keep_s = keep_s
        self.traces: dict[tuple[str, str], OpenTrace] = {}
        self._dirty: set[tuple[str, str]] = set()

    def needs_load(self, spans: Iterable[Span]) -> set[tuple[str, str]]:
        """Traces of ``spans`` not in memory: they may have been summarized before."""
        return {(s.project_id, s.trace_id) for s in spans if (s.project_id, s.trace_id) not in self.traces}

    def restore(self, key: tuple[str, str], stored: Iterable[Span]) -> None:
        """Seed an evicted (or pre-restart) trace from its ``span_tree`` rows."""
        trace = self.traces.setdefault(key, OpenTrace())
        for span in stored:
            merge_span(trace.spans, span)
        trace.summarized_version = max(trace.summarized_version, len(trace.spans))

    def add(self, span: Span, partition: int, offset: int, now_s: float) -> None:
        key = (span.project_id, span.trace_id)
        trace = self.traces.setdefault(key, OpenTrace())
        if merge_span(trace.spans, span):
            # Re-inserted last, so the dict stays (roughly) ordered by last change; where it
            # is not (restored traces), eviction is only delayed, never wrong.
            self.traces[key] = self.traces.pop(key)
            trace.last_change_s = now_s
            trace.pending_offsets.setdefault(partition, offset)
            self._dirty.add(key)

    def due(self, now_s: float, everything: bool = False) -> list[tuple[list[SpanNode], TraceSummary]]:
        """Summaries of the traces quiet for ``quiet_s`` (all dirty ones if ``everything``);
        marks them written — call again only after the rows are stored, or on a fresh state."""
        out = []
        for key in sorted(self._dirty):
            trace = self.traces[key]
            if everything or now_s - trace.last_change_s >= self.quiet_s:
                nodes, summary = build_tree(trace.spans)
                out.append((nodes, summary))
                trace.summarized_version = summary.version
                trace.pending_offsets.clear()
                self._dirty.discard(key)
        return out

    def evict(self, now_s: float) -> None:
        old = []
        for key, trace in self.traces.items():
            if now_s - trace.last_change_s < self.keep_s:
                break  # every later trace changed more recently
            if not trace.dirty:
                old.append(key)
        for key in old:
            del self.traces[key]

    def commit_floor(self, partition: int) -> int | None:
        """The smallest offset on ``partition`` still needed (its trace is unwritten)."""
        floors = [
            offset for key in self._dirty if (offset := self.traces[key].pending_offsets.get(partition)) is not None
        ]
        return min(floors) if floors else None
