"""A small HTTP/1.1 keep-alive load generator on raw asyncio sockets.

httpx and aiohttp spend more CPU per request than the servers we measure; this sends one
pre-built request per round trip and reads exactly one response (Content-Length framed),
so that on two cores the generator is not the bottleneck. `bench` shows that it is not by
running it against a trivial asyncio server in the same run.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    seconds: float
    statuses: dict[int, int]
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _connection(
    host: str, port: int, request: bytes, deadline: float, statuses: dict[int, int], latencies: list[float]
) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            done += 1
    finally:
        writer.close()
    return done


async def run_load(host: str, port: int, request: bytes, connections: int, seconds: float) -> LoadResult:
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    counts = await asyncio.gather(
        *(_connection(host, port, request, deadline, statuses, latencies) for _ in range(connections))
    )
    return LoadResult(sum(counts), time.perf_counter() - started, statuses, latencies)


def load_in_process(host: str, port: int, request: bytes, connections: int, seconds: float) -> LoadResult:
    """Entry point for a separate process (multiprocessing): the server gets the other core."""
    try:
        import uvloop

        return uvloop.run(run_load(host, port, request, connections, seconds))
    except ImportError:
        return asyncio.run(run_load(host, port, request, connections, seconds))
