"""Signed session cookies, CSRF tokens and login throttling for the console.

A session cookie is ``base64(json{user id, expiry, csrf}) "." HMAC-SHA256`` under the
console key: nothing on the server to look up, nothing a browser can forge or extend. The
CSRF token lives inside the signed session and is repeated in every form (a cross-site page
cannot read it); the cookie is also SameSite=Lax and HttpOnly. The login form, before any
session exists, uses a double-submit nonce cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass

import orjson

SESSION_COOKIE = "fl_session"
LOGIN_NONCE_COOKIE = "fl_login"
# The project last opened, so that / opens it again (a preference, checked on every use).
LAST_PROJECT_COOKIE = "fl_project"
SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    expires_at: float
    csrf: str


class Signer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the console key is at least 16 bytes")
        self._key = key

    def _mac(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()).decode().rstrip("=")

    def issue(self, user_id: str, now: float | None = None) -> tuple[str, Session]:
        session = Session(user_id, (now or time.time()) + SESSION_SECONDS, secrets.token_urlsafe(24))
        payload = base64.urlsafe_b64encode(
            orjson.dumps({"u": session.user_id, "e": session.expires_at, "c": session.csrf})
        ).decode()
        return f"{payload}.{self._mac(payload.encode())}", session

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie carries, or None (absent, tampered with, expired)."""
        if not cookie or len(cookie) > 4096 or "." not in cookie:
            return None
        payload, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(self._mac(payload.encode()), mac):
            return None
        try:
            doc = orjson.loads(base64.urlsafe_b64decode(payload.encode()))
            session = Session(str(doc["u"]), float(doc["e"]), str(doc["c"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires_at > (now or time.time()) else None


class LoginThrottle:
    """At most ``limit`` failed logins per ``window_s`` per username and per client address.

    Both keys count: one address guessing many names, and many addresses guessing one name
    (that one slows the real user down too, which is the price of stopping the guessing).
    """

    def __init__(self, limit: int = 5, window_s: float = 300.0, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self._max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, username: str, address: str, now: float | None = None) -> float:
        """Seconds until another attempt is allowed (0: allowed now)."""
        now = time.monotonic() if now is None else now
        wait = 0.0
        for key in (f"u:{username.lower()}", f"a:{address}"):
            times = self._recent(key, now)
            if len(times) >= self.limit:
                wait = max(wait, times[0] + self.window_s - now)
        return wait

    def failed(self, username: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if len(self._failures) >= self._max_keys:  # bounded memory under a spray of names
            for key in list(self._failures)[: self._max_keys // 10]:
                del self._failures[key]
        for key in (f"u:{username.lower()}", f"a:{address}"):
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, username: str) -> None:
        self._failures.pop(f"u:{username.lower()}", None)
