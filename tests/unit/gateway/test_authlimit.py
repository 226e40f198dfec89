"""AuthFailureLimit: one failure budget per source, and bounded memory of who authenticated."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from forgeline.clientip import ClientAddress
from forgeline.clock import FakeClock
from forgeline.tenancy.model import Principal
from services.gateway.authlimit import AuthFailureLimit
from services.gateway.errors import ApiError
from services.gateway.ratelimit import Decision

pytestmark = pytest.mark.unit


def _request(host: str) -> Request:
    return Request({"type": "http", "client": (host, 1234), "headers": []})


def _principal(token_id: str) -> Principal:
    return Principal(
        token_id=token_id,
        kind="forge",
        organisation_id="o",
        project_id="p",
        environment="production",
        application_id=None,
    )


def _refused(decision: Decision) -> ApiError:
    return ApiError(429, {"retry_after": decision.retry_after}, reason="rate_limited")


def _limit(clock: FakeClock, limit: int = 2) -> AuthFailureLimit:
    return AuthFailureLimit(limit, 60, clock, ClientAddress(()))


def test_failures_from_one_source_do_not_touch_another() -> None:
    guard = _limit(FakeClock(0.0))
    for _ in range(2):
        assert guard.authenticate(_request("192.0.2.1"), lambda: None, _refused) is None
    with pytest.raises(ApiError):
        guard.authenticate(_request("192.0.2.1"), lambda: None, _refused)
    assert guard.authenticate(_request("192.0.2.2"), lambda: None, _refused) is None


def test_remembered_tokens_are_bounded_and_pruned_per_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AuthFailureLimit, "_PRUNE_AT", 3)
    clock = FakeClock(0.0)
    guard = _limit(clock, limit=5)

    def fail_then_succeed(host: str) -> None:
        guard.authenticate(_request(host), lambda: None, _refused)
        guard.authenticate(_request(host), lambda: _principal(f"t-{host}"), _refused)

    for n in range(5):
        fail_then_succeed(f"192.0.2.{n}")
    assert len(guard._accepted) == 3  # the hard bound: two sources were not remembered
    clock.advance(60)
    fail_then_succeed("198.51.100.1")  # a new window: the old entries are dropped first
    assert list(guard._accepted) == ["198.51.100.1"]


def test_a_source_without_failures_is_not_remembered() -> None:
    guard = _limit(FakeClock(0.0))
    assert guard.authenticate(_request("192.0.2.1"), lambda: _principal("t"), _refused) is not None
    assert guard._accepted == {}
