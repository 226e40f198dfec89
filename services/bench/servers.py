"""Baseline servers started by `forgeline bench`, each as its own process.

- ``bare``: Starlette + uvicorn (uvloop, httptools) that parses the JSON body with orjson
  and answers 201 (a MessagePack body: msgpack.unpackb, 200 queued) — the ceiling for our
  stack, the gateway's baseline.
- ``trivial``: a raw asyncio server that answers a fixed 201 without parsing — used only
  to show the load generator can go faster than anything it measures.
"""

from __future__ import annotations

import asyncio
import gzip
import sys

import msgpack
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_CREATED = b'{"id":"00000000-0000-0000-0000-000000000000","legacy_id":1,"status":"accepted"}'


_QUEUED = b'{"status":"queued"}'


async def _accept(request: Request) -> Response:
    body = await request.body()
    if request.headers.get("content-type") == "application/msgpack":
        # The MessagePack baseline: decode the batch (the gateway's first step), answer 200.
        msgpack.unpackb(body, raw=False)
        return Response(_QUEUED, status_code=200, media_type="application/json")
    if request.headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    lines = body.split(b"\n") if request.headers.get("content-type") == "application/x-ndjson" else [body]
    for line in lines:
        if line.strip():
            orjson.loads(line)
    return Response(_CREATED, status_code=201, media_type="application/json")


def bare_app() -> Starlette:
    return Starlette(routes=[Route("/{path:path}", _accept, methods=["POST"])])


async def _trivial(port: int) -> None:
    response = b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (len(_CREATED), _CREATED)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                writer.write(response)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "bare":
        uvicorn.run(
            bare_app(),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            loop="uvloop",
            http="httptools",
            proxy_headers=False,  # as the gateway: no X-Forwarded-For rewriting
        )
    else:
        import uvloop

        uvloop.run(_trivial(port))


if __name__ == "__main__":
    main()
