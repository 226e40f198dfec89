"""services.gateway.ratelimit.FixedWindowLimiter with a FakeClock."""

from __future__ import annotations

import pytest

from forgeline.clock import FakeClock
from services.gateway.ratelimit import Decision, FixedWindowLimiter

pytestmark = pytest.mark.unit

WINDOW_START = 1_700_000_040.0  # a multiple of 60


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(WINDOW_START)


def test_allows_up_to_the_limit_then_refuses(clock: FakeClock) -> None:
    limiter = FixedWindowLimiter(3, 60, clock)
    decisions = [limiter.hit("k") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert all(d.limit == 3 and d.window_seconds == 60 for d in decisions)


def test_reset_and_retry_after_follow_the_fixed_window(clock: FakeClock) -> None:
    limiter = FixedWindowLimiter(1, 60, clock)
    clock.advance(15.2)
    limiter.hit("k")
    refused = limiter.hit("k")
    assert refused.reset_at == WINDOW_START + 60
    assert refused.retry_after == 45  # ceil(44.8)


def test_retry_after_is_the_whole_window_at_its_start(clock: FakeClock) -> None:
    limiter = FixedWindowLimiter(1, 60, clock)
    limiter.hit("k")
    assert limiter.hit("k").retry_after == 60


def test_retry_after_is_at_least_one_second(clock: FakeClock) -> None:
    limiter = FixedWindowLimiter(1, 60, clock)
    clock.advance(59.999)
    limiter.hit("k")
    refused = limiter.hit("k")
    assert not refused.allowed
    assert refused.retry_after == 1


def test_a_new_window_starts_afresh(clock: FakeClock) -> None:
    limiter = FixedWindowLimiter(2, 60, clock)
    limiter.hit("k")
    limiter.hit("k")
    assert not limiter.hit("k").allowed
    clock.advance(60)
    fresh = limiter.hit("k")
    assert fresh.allowed
    assert fresh.remaining == 1
    assert fresh.reset_at == WINDOW_START + 120


def test_windows_are_aligned_to_the_clock_not_to_the_first_hit(clock: FakeClock) -> None:
    limiter = FixedWindowLimiter(1, 60, clock)
    clock.advance(59)
    assert limiter.hit("k").allowed
    clock.advance(1)  # a new fixed window, one second after the first hit
    assert limiter.hit("k").allowed


def test_keys_are_independent(clock: FakeClock) -> None:
    limiter = FixedWindowLimiter(1, 60, clock)
    assert limiter.hit("token-a:ingest_events").allowed
    assert not limiter.hit("token-a:ingest_events").allowed
    assert limiter.hit("token-a:check_ins").allowed
    assert limiter.hit("token-b:ingest_events").allowed


def test_a_refused_hit_consumes_nothing(clock: FakeClock) -> None:
    limiter = FixedWindowLimiter(2, 60, clock)
    limiter.hit("k")
    limiter.hit("k")
    for _ in range(10):
        assert not limiter.hit("k").allowed
    assert limiter.peek("k").remaining == 0
    clock.advance(60)
    assert limiter.hit("k").remaining == 1


def test_a_batch_too_large_for_what_is_left_is_refused_whole(clock: FakeClock) -> None:
    limiter = FixedWindowLimiter(5, 60, clock)
    assert limiter.hit("k", cost=3).remaining == 2
    refused = limiter.hit("k", cost=3)
    assert not refused.allowed
    assert refused.remaining == 2  # nothing was taken
    assert limiter.hit("k", cost=2).allowed
    assert limiter.peek("k").remaining == 0


def test_a_cost_over_the_limit_is_always_refused(clock: FakeClock) -> None:
    limiter = FixedWindowLimiter(5, 60, clock)
    assert not limiter.hit("k", cost=6).allowed
    assert limiter.hit("k", cost=5).allowed


def test_peek_does_not_count(clock: FakeClock) -> None:
    limiter = FixedWindowLimiter(2, 60, clock)
    assert limiter.peek("k").remaining == 2
    limiter.hit("k")
    assert limiter.peek("k").remaining == 1
    assert limiter.peek("k").remaining == 1
    clock.advance(60)
    assert limiter.peek("k").remaining == 2


def test_headers(clock: FakeClock) -> None:
    decision = FixedWindowLimiter(1200, 60, clock).hit("k")
    assert decision.headers() == {
        "X-RateLimit-Limit": "1200",
        "X-RateLimit-Remaining": "1199",
        "X-RateLimit-Reset": str(int(WINDOW_START) + 60),
    }


def test_decision_is_immutable() -> None:
    decision = Decision(True, 1, 0, 60, 60, 60)
    with pytest.raises(AttributeError):
        decision.allowed = False  # type: ignore[misc]


def test_other_window_lengths(clock: FakeClock) -> None:
    limiter = FixedWindowLimiter(1, 10, clock)
    clock.advance(3)
    limiter.hit("k")
    refused = limiter.hit("k")
    assert (refused.window_seconds, refused.retry_after, refused.reset_at) == (10, 7, WINDOW_START + 10)


def test_expired_windows_are_pruned_so_memory_stays_bounded(clock: FakeClock) -> None:
    limiter = FixedWindowLimiter(1, 60, clock)
    limiter._PRUNE_AT = 100  # type: ignore[misc]
    for n in range(100):
        limiter.hit(f"old-{n}")
    clock.advance(60)
    for n in range(150):
        limiter.hit(f"new-{n}")
    # The first insert at the threshold dropped every expired key; current ones are kept.
    assert sorted(limiter._windows) == sorted(f"new-{n}" for n in range(150))


def test_pruning_keeps_the_current_windows_counts(clock: FakeClock) -> None:
    limiter = FixedWindowLimiter(1, 60, clock)
    limiter._PRUNE_AT = 3  # type: ignore[misc]
    assert limiter.hit("a").allowed
    for n in range(10):
        limiter.hit(f"k{n}")
    assert not limiter.hit("a").allowed  # still counted after several prunes
