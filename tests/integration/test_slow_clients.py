"""Slow clients against the real HTTP server: trickled bodies and headers are cut off in time,
at most so many bodies may be slow at once, and everyone else is served meanwhile.

Timeouts are shortened (a 2 s body deadline, 1 s idle and header deadlines, slow after
0.3 s) so that each test takes a few seconds.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.fixtures.gateway_server import LiveGateway, serve_gateway

pytestmark = pytest.mark.integration

SHORT = {
    "body_read_timeout_seconds": 2.0,
    "body_idle_timeout_seconds": 1.0,
    "header_read_timeout_seconds": 1.0,
    "slow_body_after_seconds": 0.3,
}
SESSION = {"build": {"version": "1.0.0", "platform": "windows"}, "metadata": {"padding": "x" * 200}}
TICK_S = 0.1  # one byte per tick: the body above would take over 20 s


class Trickle:
    """A raw-socket client sending a request's body one byte per tick."""

    def __init__(self, gw: LiveGateway, forwarded: str | None = None) -> None:
        self.body = orjson.dumps(SESSION)
        head = (
            "POST /v1/ingest/sessions HTTP/1.1\r\nHost: gateway\r\n"
            f"Authorization: Bearer {gw.tokens['forge_token']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
        )
        if forwarded:
            head += f"X-Forwarded-For: {forwarded}\r\n"
        self.sock = gw.connect()
        self.sock.sendall(head.encode() + b"\r\n")
        self.started = time.monotonic()
        self.sent = 0
        self.response = b""
        self.answered_after: float | None = None
        self.closed = False

    def tick(self) -> None:
        if self.answered_after is None and not self.closed and self.sent < len(self.body):
            try:
                self.sock.send(self.body[self.sent : self.sent + 1])
                self.sent += 1
            except OSError:
                pass  # the server closed: read() sees it
        self.read()

    def read(self) -> None:
        while not self.closed and select.select([self.sock], [], [], 0)[0]:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                return
            if self.answered_after is None:
                self.answered_after = time.monotonic() - self.started
            self.response += data

    @property
    def status(self) -> int | None:
        return int(self.response.split(b" ", 2)[1]) if self.response else None

    def json(self) -> object:
        return orjson.loads(self.response.split(b"\r\n\r\n", 1)[1])


def _until(condition: Callable[[], bool], trickles: list[Trickle], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, [(t.status, t.sent, t.closed) for t in trickles]
        for trickle in trickles:
            trickle.tick()
        time.sleep(TICK_S)


def _wait_closed(sock: socket.socket, within_s: float) -> bytes:
    """Everything the server still sends, until it closes the connection (fails after ``within_s``)."""
    sock.settimeout(within_s)
    out = b""
    try:
        while data := sock.recv(65536):
            out += data
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the connection was still open after {within_s} s")
    return out


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[LiveGateway]:
    with serve_gateway(tmp_path / "gw", **SHORT) as gw:
        yield gw


def _session(client: httpx.Client, gw: LiveGateway) -> tuple[int, float]:
    started = time.monotonic()
    response = client.post(
        "/v1/ingest/sessions", json=SESSION, headers={"Authorization": f"Bearer {gw.tokens['forge_token']}"}
    )
    return response.status_code, time.monotonic() - started


def test_a_trickled_body_is_cut_off_while_others_are_served(gateway: LiveGateway) -> None:
    slow = Trickle(gateway)
    served: list[tuple[int, float]] = []
    with httpx.Client(base_url=gateway.url, timeout=5) as client:
        while slow.answered_after is None and not slow.closed:
            assert time.monotonic() - slow.started < 6, "the trickled body was never cut off"
            slow.tick()
            served.append(_session(client, gateway))  # another client, while the slow one is open
            time.sleep(TICK_S)
    # Others were answered at once, many times, while the slow body was still arriving.
    assert len(served) >= 10
    assert all(status == 201 for status, _ in served), served
    assert max(elapsed for _, elapsed in served) < 1.0, served
    # The slow one: 408 after the 2 s deadline (not the 1 s idle one: a byte came every tick).
    assert slow.status == 408, slow.response
    assert slow.answered_after is not None and 1.9 <= slow.answered_after < 3.5
    assert 10 < slow.sent < len(slow.body)
    slow.response += _wait_closed(slow.sock, 3)
    assert slow.json() == {
        "error": "Request Timeout: the request body did not arrive in time (it arrived too slowly)",
        "code": "body_timeout",
    }
    slow.sock.close()


def test_a_body_that_stops_arriving_is_cut_off_after_the_idle_timeout(gateway: LiveGateway) -> None:
    slow = Trickle(gateway)
    slow.sock.sendall(slow.body[:10])  # then nothing
    response = _wait_closed(slow.sock, 3)
    elapsed = time.monotonic() - slow.started
    slow.sock.close()
    assert response.startswith(b"HTTP/1.1 408 "), response
    assert 0.9 <= elapsed < 1.8
    assert b"nothing arrived for 1 s" in response


def test_headers_trickled_or_never_sent_are_cut_off(gateway: LiveGateway) -> None:
    idle = gateway.connect()  # sends nothing at all
    trickled = gateway.connect()
    trickled.sendall(b"POST /v1/ingest/sessions HTTP/1.1\r\nHost: gateway\r\n")
    started = time.monotonic()
    closed_after: dict[str, float] = {}
    responses: dict[str, bytes] = {"idle": b"", "trickled": b""}
    sockets = {"idle": idle, "trickled": trickled}
    while len(closed_after) < 2:
        assert time.monotonic() - started < 4, f"still open: {set(sockets) - set(closed_after)}"
        if "trickled" not in closed_after:
            try:
                trickled.send(b"X")  # a header name that never ends
            except OSError:
                pass
        for name, sock in sockets.items():
            while name not in closed_after and select.select([sock], [], [], 0)[0]:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                responses[name] += data
                if not data:
                    closed_after[name] = time.monotonic() - started
        time.sleep(TICK_S)
    idle.close()
    trickled.close()
    assert all(0.9 <= after < 2.5 for after in closed_after.values()), closed_after
    assert responses["trickled"].startswith(b"HTTP/1.1 408 "), responses
    assert responses["idle"] == b""  # no answer to a request never made


def test_at_most_so_many_slow_bodies_at_once(tmp_path: Path) -> None:
    with serve_gateway(tmp_path / "gw", max_slow_bodies=2, **SHORT) as gw:
        first, second = Trickle(gw), Trickle(gw)
        time.sleep(0.05)
        third = Trickle(gw)
        trickles = [first, second, third]
        # The third turns slow when two already are: 503 with Retry-After right then.
        _until(lambda: third.status is not None, trickles, within_s=1.5)
        assert third.status == 503, third.response
        assert third.answered_after is not None and 0.25 <= third.answered_after < 1.0
        assert b"\r\nretry-after: 1\r\n" in third.response.lower()
        assert (first.status, second.status) == (None, None)
        with httpx.Client(base_url=gw.url, timeout=5) as client:
            assert _session(client, gw)[0] == 201  # a body in one piece never needs a slot
        # The two held their slots to their deadline; then a new slow body gets one.
        _until(lambda: first.status is not None and second.status is not None, trickles, within_s=3)
        assert (first.status, second.status) == (408, 408)
        fourth = Trickle(gw)
        _until(lambda: time.monotonic() - fourth.started > 0.8, [fourth], within_s=2)
        assert fourth.status is None and not fourth.closed
        for trickle in [*trickles, fourth]:
            trickle.sock.close()


def test_one_source_cannot_take_every_slow_slot(tmp_path: Path) -> None:
    with serve_gateway(tmp_path / "gw", max_slow_bodies_per_client=1, trusted_proxies=("127.0.0.1",), **SHORT) as gw:
        mine = Trickle(gw, forwarded="203.0.113.1")
        time.sleep(0.05)
        mine_too, theirs = Trickle(gw, forwarded="203.0.113.1"), Trickle(gw, forwarded="203.0.113.2")
        trickles = [mine, mine_too, theirs]
        _until(lambda: time.monotonic() - theirs.started > 0.8, trickles, within_s=2)
        assert (mine.status, mine_too.status, theirs.status) == (None, 503, None)
        for trickle in trickles:
            trickle.sock.close()
