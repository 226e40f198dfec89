"""Span assembly: order- and duplicate-independent trees, orphans, self time, late spans."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.spans.steps import Assembler, Span, build_tree, merge_span, span_from_doc

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000


def span(span_id: str, parent: str = "", start: int = 0, dur: int = 100, **extra: Any) -> Span:
    doc: dict[str, Any] = {
        "project_id": "p1",
        "environment": "production",
        "trace_id": "t1",
        "span_id": span_id,
        "parent_span_id": parent,
        "event_id": f"e-{span_id}",
        "name": f"op {span_id}",
        "started_at": T0 + start,
        "duration_ms": dur,
        "received_at": T0 + 5000,
    }
    doc.update(extra)
    return span_from_doc(doc)


# root ─┬─ a ── a1
#       └─ b            x: parent "missing" (orphan) ── x1
TRACE = [
    span("root", "", 0, 1000, service="api"),
    span("a", "root", 100, 300, service="db"),
    span("a1", "a", 150, 100, status="error"),
    span("b", "root", 200, 400),
    span("x", "missing", 50, 50),
    span("x1", "x", 60, 10),
]


def tree_of(spans: list[Span]) -> tuple[Any, Any]:
    merged: dict[str, Span] = {}
    for s in spans:
        merge_span(merged, s)
    nodes, summary = build_tree(merged)
    return {n.span.span_id: (n.depth, n.is_orphan, n.child_count, n.self_time_ms) for n in nodes}, summary


def test_tree_depths_orphans_and_summary() -> None:
    nodes, summary = tree_of(TRACE)
    assert nodes["root"][:3] == (0, False, 2)
    assert nodes["a1"][:2] == (2, False)
    assert nodes["x"][:2] == (0, True) and nodes["x1"][:2] == (1, False)
    assert summary.root_span_id == "root" and summary.span_count == 6 and summary.max_depth == 2
    assert summary.error_count == 1 and summary.orphan_count == 1
    assert summary.services == ("api", "db") and summary.duration_ms == 1000


def test_self_time_subtracts_the_union_of_children() -> None:
    nodes, _ = tree_of(TRACE)
    # root 0..1000, children a 100..400 and b 200..600 overlap: covered 100..600 = 500.
    assert nodes["root"][3] == 500
    assert nodes["a"][3] == 200  # a 100..400 minus a1 150..250
    assert nodes["b"][3] == 400


def test_parent_cycle_is_broken_not_dropped() -> None:
    nodes, summary = tree_of([span("c1", "c2"), span("c2", "c1")])
    assert set(nodes) == {"c1", "c2"} and nodes["c1"][:2] == (0, True) and nodes["c2"][0] == 1
    assert summary.root_span_id == ""


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_any_permutation_and_duplication_gives_the_same_tree(data: st.DataObject) -> None:
    dupes = data.draw(st.lists(st.sampled_from(TRACE), max_size=8))
    stream = data.draw(st.permutations(TRACE + dupes))
    assert tree_of(stream) == tree_of(TRACE)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_split_across_batches_with_quiet_periods_ends_in_the_same_summary(data: st.DataObject) -> None:
    stream = data.draw(st.permutations(TRACE + TRACE[:2]))
    assembler = Assembler(quiet_s=5, keep_s=60)
    now = 0.0
    written = {}
    for offset, s in enumerate(stream):
        assembler.add(s, 0, offset, now)
        now += data.draw(st.sampled_from([0.0, 1.0, 6.0]))  # sometimes a quiet period passes
        for _nodes, summary in assembler.due(now):
            written[summary.trace_id] = summary  # ReplacingMergeTree keeps the highest version
    for _nodes, summary in assembler.due(now, everything=True):
        written[summary.trace_id] = summary
    assert written["t1"] == tree_of(TRACE)[1]


def test_quiet_period_late_span_resummary_and_commit_floor() -> None:
    assembler = Assembler(quiet_s=5, keep_s=60)
    assembler.add(span("a", "root", 100, 300), 0, 10, now_s=0)
    assert assembler.due(4) == [] and assembler.commit_floor(0) == 10
    [(_, first)] = assembler.due(5)
    assert first.version == 1 and first.orphan_count == 1 and assembler.commit_floor(0) is None
    assembler.add(span("root"), 0, 11, now_s=20)  # the parent arrives late
    [(_, second)] = assembler.due(25)
    assert second.version == 2 and second.orphan_count == 0 and second.root_span_id == "root"
    assembler.add(span("root"), 0, 12, now_s=26)  # a duplicate: nothing to rewrite
    assert assembler.due(40) == [] and assembler.commit_floor(0) is None


def test_evicted_trace_is_restored_before_a_late_span() -> None:
    assembler = Assembler(quiet_s=5, keep_s=10)
    for offset, s in enumerate(TRACE[:3]):
        assembler.add(s, 0, offset, now_s=0)
    [(_, first)] = assembler.due(5)
    assembler.evict(100)
    late = span("b", "root", 200, 400)
    assert assembler.needs_load([late]) == {("p1", "t1")}
    assembler.restore(("p1", "t1"), TRACE[:3])
    assembler.add(late, 0, 9, now_s=100)
    [(_, second)] = assembler.due(105)
    assert (first.span_count, second.span_count) == (3, 4)


def test_replay_of_the_same_batch_changes_nothing() -> None:
    assembler = Assembler(quiet_s=5, keep_s=60)
    for offset, s in enumerate(TRACE):
        assembler.add(s, 0, offset, now_s=0)
    [(nodes, summary)] = assembler.due(5)
    for offset, s in enumerate(TRACE):
        assembler.add(s, 0, offset, now_s=6)
    assert assembler.due(20) == []
