"""Signed session cookies, login throttling and the admin port's parameter binding."""

from __future__ import annotations

import pytest

from services.admin import bind_params
from services.console.sessions import SESSION_SECONDS, LoginThrottle, Signer

pytestmark = pytest.mark.unit


def test_a_session_cookie_reads_back_and_refuses_tampering_and_expiry() -> None:
    signer = Signer(b"k" * 32)
    cookie, session = signer.issue("user-1", now=1000.0)
    assert signer.read(cookie, now=1001.0) == session
    payload, _, mac = cookie.rpartition(".")
    assert signer.read(payload + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B"), now=1001.0) is None
    assert Signer(b"x" * 32).read(cookie, now=1001.0) is None  # another console's key
    assert signer.read(cookie, now=1000.0 + SESSION_SECONDS + 1) is None
    assert signer.read("not a cookie") is None and signer.read("") is None


def test_login_throttle_counts_per_name_and_per_address() -> None:
    throttle = LoginThrottle(limit=3, window_s=60)
    for _ in range(3):
        throttle.failed("admin", "10.0.0.1", now=0)
    assert throttle.retry_after("admin", "10.0.0.9", now=1) > 0  # the name, from anywhere
    assert throttle.retry_after("other", "10.0.0.1", now=1) > 0  # the address, any name
    assert throttle.retry_after("other", "10.0.0.9", now=1) == 0
    assert throttle.retry_after("admin", "10.0.0.9", now=61) == 0  # the window passed


def test_bound_parameters_are_quoted_literals() -> None:
    sql = bind_params("SELECT 1 WHERE p = %(p)s AND g IN %(g)s", {"p": "x' OR 1=1 --", "g": ["a", "b"]})
    assert sql == "SELECT 1 WHERE p = 'x\\' OR 1=1 --' AND g IN ['a', 'b']"
    with pytest.raises(ValueError):
        bind_params("SELECT %(p)s", {"p": {"nested": 1}})
    with pytest.raises(ValueError):
        bind_params("SELECT %(p)s", ["not", "an", "object"])
