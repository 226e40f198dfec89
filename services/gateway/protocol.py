"""uvicorn's httptools protocol with a deadline for the request line and headers.

uvicorn times out only idle keep-alive connections between requests: a connection that
never sends a byte, or sends its headers a byte at a time, is held open for ever (the
classic slowloris). Here the request line and headers must arrive within ``seconds`` of
the connection opening or of the request's first byte; otherwise the connection is closed
(with a 408 when the client had started a request). Bodies have their own deadlines
(services/gateway/slowbody.py).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


def header_timeout_protocol(seconds: float) -> type[HttpToolsProtocol]:
    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _request_started = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._request_started = True
            if self._header_timer is None:
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            self._request_started = False
            super().on_headers_complete()

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                # A pipelined request is still being answered: close once that answer is out.
                self.cycle.keep_alive = False
                return
            if self._request_started:
                self.transport.write(_REQUEST_TIMEOUT)
            self.transport.close()

    return HeaderTimeoutProtocol
