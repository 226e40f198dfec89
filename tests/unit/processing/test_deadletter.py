"""The shared dead-letter mechanism: any exception → one dead letter; the ratio limit stops loudly."""

from __future__ import annotations

import asyncio
import logging

import pytest

from forgeline.bus.port import OutgoingRecord, Record
from forgeline.config import Settings, SettingsError
from forgeline.processing.deadletter import (
    PROCESSING_ERROR,
    DeadLetterLimit,
    DeadLetterLimitExceeded,
    DeadLetterPolicy,
    DeadLetters,
    InvalidMessage,
    as_invalid,
)
from forgeline.telemetry.metrics import PROCESSOR_DEAD_LETTERS

pytestmark = pytest.mark.unit


def record(offset: int) -> Record:
    return Record("raw.logister", 2, offset, b"key", b'{"poison": true}', 0)


def explode() -> None:
    raise RuntimeError("boom in a step")


def test_an_unexpected_exception_is_a_processing_error_naming_type_message_and_line() -> None:
    try:
        explode()
    except RuntimeError as err:
        invalid = as_invalid(err)
    assert invalid.reason == PROCESSING_ERROR
    assert invalid.detail.startswith("RuntimeError: boom in a step (at test_deadletter.py:")
    assert invalid.detail.endswith(" in explode)")
    assert isinstance(invalid.__cause__, RuntimeError)
    bad_data = InvalidMessage("bad_raw_record", "not json")
    assert as_invalid(bad_data) is bad_data


def test_guarded_turns_any_exception_into_a_dead_letter_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    dead_letters = DeadLetters("unit-guard")
    dead: list[OutgoingRecord] = []
    done: list[int] = []
    before = PROCESSOR_DEAD_LETTERS.labels(service="unit-guard", reason=PROCESSING_ERROR)._value.get()
    with caplog.at_level(logging.WARNING):
        for offset, step in enumerate([explode, lambda: done.append(1), lambda: {}["missing"]]):
            with dead_letters.guarded(record(offset), dead) as guard:
                step()
            assert guard.failed == (offset != 1)
    assert done == [1] and len(dead) == 2
    letter = dead[0]
    assert letter.topic == "dlq.unit-guard" and letter.value == b'{"poison": true}' and letter.key == b"key"
    headers = dict(letter.headers)
    assert headers["reason"] == b"processing_error"
    assert headers["detail"].startswith(b"RuntimeError: boom in a step")
    assert (headers["source_topic"], headers["source_partition"], headers["source_offset"]) == (
        b"raw.logister",
        b"2",
        b"0",
    )
    assert dict(dead[1].headers)["detail"].startswith(b"KeyError: 'missing'")
    after = PROCESSOR_DEAD_LETTERS.labels(service="unit-guard", reason=PROCESSING_ERROR)._value.get()
    assert after - before == 2
    errors = [r for r in caplog.records if r.getMessage() == "dead-lettered after an unexpected error"]
    assert len(errors) == 2 and errors[0].exc_info is not None  # the traceback of a bug is kept


def test_guarded_lets_cancellation_through() -> None:
    dead: list[OutgoingRecord] = []
    with pytest.raises(asyncio.CancelledError), DeadLetters("unit-cancel").guarded(record(0), dead):
        raise asyncio.CancelledError
    assert dead == []


def test_the_limit_needs_the_minimum_count_then_a_majority() -> None:
    limit = DeadLetterLimit("unit", DeadLetterPolicy(max_ratio=0.5, min_records=100, window=1000))
    assert not limit.observe(99, 99)  # all failed, but too few records to judge
    assert limit.observe(1, 1)  # 100 of 100
    half = DeadLetterLimit("unit", DeadLetterPolicy(max_ratio=0.5, min_records=100, window=1000))
    assert not half.observe(200, 100)  # exactly half is not "most"
    assert half.observe(2, 2)


def test_the_window_forgets_old_failures() -> None:
    limit = DeadLetterLimit("unit", DeadLetterPolicy(max_ratio=0.5, min_records=10, window=100))
    assert not limit.observe(100, 40)
    for _ in range(10):
        assert not limit.observe(10, 0)
    assert limit.records == 100 and limit.dead == 0  # the failing batch slid out
    # A failing run now trips it as soon as it is most of the last 100 records.
    tripped = [limit.observe(10, 10) for _ in range(6)]
    assert tripped == [False, False, False, False, False, True]


def test_a_ratio_of_one_never_stops() -> None:
    limit = DeadLetterLimit("unit", DeadLetterPolicy(max_ratio=1.0, min_records=1, window=10))
    assert not any(limit.observe(10, 10) for _ in range(5))


def test_check_stops_loudly_and_keeps_stopping(caplog: pytest.LogCaptureFixture) -> None:
    dead_letters = DeadLetters("unit-stop", DeadLetterPolicy(max_ratio=0.5, min_records=4, window=10))
    dead: list[OutgoingRecord] = []
    for offset in range(4):
        with dead_letters.guarded(record(offset), dead):
            explode()
    with caplog.at_level(logging.CRITICAL), pytest.raises(DeadLetterLimitExceeded) as raised:
        dead_letters.check(4, len(dead))
    message = str(raised.value)
    assert "unit-stop: 4 of the last 4 records failed (more than 50%)" in message
    assert "RuntimeError: boom in a step" in message and "FORGELINE_DLQ_MAX_RATIO" in message
    assert any("dead-letter limit exceeded" in r.getMessage() for r in caplog.records if r.levelname == "CRITICAL")
    with pytest.raises(DeadLetterLimitExceeded):
        dead_letters.check(1, 0)  # a good batch afterwards does not un-stop it


def test_bad_policies_are_refused() -> None:
    for bad in ({"max_ratio": 0.0}, {"max_ratio": 1.5}, {"min_records": 0}, {"window": 0}):
        with pytest.raises(ValueError):
            DeadLetterPolicy(**bad)  # type: ignore[arg-type]


def test_settings_read_the_limit_and_name_a_bad_value() -> None:
    settings = Settings.from_env(
        {"FORGELINE_DLQ_MAX_RATIO": "0.8", "FORGELINE_DLQ_MIN_RECORDS": "20", "FORGELINE_DLQ_WINDOW_RECORDS": "500"}
    )
    assert (settings.dlq_max_ratio, settings.dlq_min_records, settings.dlq_window_records) == (0.8, 20, 500)
    assert Settings().dlq_max_ratio == 0.5 and Settings().dlq_min_records == 100
    with pytest.raises(SettingsError, match="FORGELINE_DLQ_MAX_RATIO"):
        Settings.from_env({"FORGELINE_DLQ_MAX_RATIO": "2"})


def test_each_yields_what_succeeded_and_dead_letters_the_rest() -> None:
    dead_letters = DeadLetters("unit-each")
    dead: list[OutgoingRecord] = []

    def step(r: Record) -> int:
        if r.offset == 1:
            raise ZeroDivisionError("division by zero")
        if r.offset == 2:
            raise InvalidMessage("bad_raw_record", "not json")
        return r.offset * 10

    done = [(r.offset, value) for r, value in dead_letters.each([record(i) for i in range(4)], step, dead)]
    assert done == [(0, 0), (3, 30)]
    assert [(dict(d.headers)["source_offset"], dict(d.headers)["reason"]) for d in dead] == [
        (b"1", b"processing_error"),
        (b"2", b"bad_raw_record"),
    ]
