"""`forgeline bench --only sizing`: bytes on disk per 1M events, per family and per store.

One `forgeline up` takes ``events`` events of each family (Logister errors in NDJSON
batches, Forge Logger game events, MessagePack items of the four kinds in turn); once
every one is queryable and exported, it measures what each store holds for the family —
the log (raw and typed topics of the embedded bus), the warehouse (active parts,
compressed, as ``system.parts`` counts them) and the NDJSON exports — and scales it to 1M
events. The baseline is what the clients sent (request bodies, uncompressed), so the
ratio reads "stored bytes per byte sent".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from services.bench.harness import HOST, Row, RunningUp, forgeline_up
from services.bench.payloads import batch_body, forge_batch_body, msgpack_batch

MILLION = 1_000_000


@dataclass(frozen=True)
class Family:
    name: str
    topics: tuple[str, ...]
    tables: tuple[str, ...]


FAMILIES = (
    Family("Logister errors", ("raw.logister", "typed.errors"), ("errors",)),
    Family("Forge Logger game events", ("raw.forge", "typed.game_events"), ("game_events",)),
    Family(
        "MessagePack items",
        ("raw.msgpack", "typed.players", "typed.funnel_steps", "typed.gameplay_events", "typed.trajectories"),
        ("players", "funnel_steps", "gameplay_events", "trajectories"),
    ),
)


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _query(up: RunningUp, sql: str) -> str:
    out = httpx.post(f"http://{HOST}:{up.admin_port}/query", json={"sql": sql, "format": "TSV"}, timeout=60)
    out.raise_for_status()
    return out.text.strip()


def _wait(check: Callable[[], bool], what: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"sizing: {what} not reached in {timeout_s:.0f} s")
        time.sleep(0.5)


def _game_batch(app_id: str, n: int, batch: int) -> bytes:
    """The bench's MessagePack batch with a player and session of its own: ids are derived
    from the body, so identical batches would be one batch stored (and exported) once."""
    import msgpack

    items = msgpack.unpackb(msgpack_batch(app_id, n))
    for i, item in enumerate(items):
        item["player_id"], item["session_id"] = f"p-{batch}-{i % 7}", f"s-{batch}-{i % 3}"
    return bytes(msgpack.packb(items, use_bin_type=True))


def _send(up: RunningUp, events: int) -> dict[str, int]:
    """Send ``events`` of each family; returns the uncompressed bytes sent per family."""
    import gzip

    tokens = up.tokens
    sent = dict.fromkeys((f.name for f in FAMILIES), 0)
    logister = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip",
                "Authorization": f"Bearer {tokens['logister_token']}"}  # fmt: skip
    forge = {"Content-Type": "application/json", "Authorization": f"Bearer {tokens['forge_token']}"}
    game = {"Content-Type": "application/msgpack", "x-public-token": tokens["msgpack_public_token"]}
    with httpx.Client(base_url=f"http://{HOST}:{up.port}", timeout=60) as client:
        for start in range(0, events, 200):  # Forge Logger takes at most 200 per request
            n = min(200, events - start)
            for path, body, headers, family, raw_size in (
                ("/api/v1/ingest_events/batch", b := batch_body(n), logister, 0, len(gzip.decompress(b))),
                ("/v1/ingest/events", f := forge_batch_body(n, tokens["project_id"]), forge, 1, len(f)),
                ("/api/events", m := _game_batch(tokens["msgpack_app_id"], n, start), game, 2, len(m)),
            ):
                for _attempt in range(300):
                    response = client.post(path, content=body, headers=headers)
                    if response.status_code in (200, 201, 202):
                        break
                    if response.status_code not in (429, 503):
                        raise RuntimeError(f"sizing: {path} answered {response.status_code}: {response.text[:200]}")
                    time.sleep(0.2)
                else:
                    raise RuntimeError(f"sizing: {path} still refused after 300 attempts")
                sent[FAMILIES[family].name] += raw_size
    return sent


def _landed(up: RunningUp, family: Family, events: int) -> Callable[[], bool]:
    counts = " + ".join(f"(SELECT count() FROM forgeline.{t})" for t in family.tables)
    return lambda: int(_query(up, f"SELECT {counts}") or 0) >= events


def bench_sizing(data_dir: Path, events: int) -> list[Row]:
    env = {
        "FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "1000000000",
        "FORGELINE_FORGE_RATE_LIMIT_REQUESTS": "1000000000",
        "FORGELINE_MSGPACK_RATE_LIMIT_REQUESTS": "1000000000",
        "FORGELINE_WRITER_FLUSH_SECONDS": "0.5",
        "FORGELINE_EXPORT_FLUSH_SECONDS": "3600",  # flushed on request below: whole files
    }
    rows: list[Row] = []
    with forgeline_up(data_dir, env) as up:
        sent = _send(up, events)
        for family in FAMILIES:
            _wait(_landed(up, family, events), f"{family.name} in the warehouse")
        exports = data_dir / "exports"

        def exported(tables: tuple[str, ...]) -> int:
            return sum(p.read_bytes().count(b"\n") for t in tables for p in (exports / t).rglob("*.ndjson*"))

        all_tables = tuple(t for f in FAMILIES for t in f.tables)

        def flushed() -> bool:
            asked = httpx.post(f"http://{HOST}:{up.port}/api/export", timeout=30).status_code == 200
            return asked and exported(all_tables) >= 3 * events

        _wait(flushed, "exports")
        time.sleep(2.0)  # the writer's and the exporter's last commits
        for family in FAMILIES:
            tables = ", ".join(f"'{t}'" for t in family.tables)
            warehouse = int(_query(up, "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'forgeline' "
                                       f"AND active AND table IN ({tables})") or 0)  # fmt: skip
            log = sum(_bytes(data_dir / "bus" / "topics" / topic) for topic in family.topics)
            export = sum(_bytes(exports / t) for t in family.tables)
            scale = MILLION / events
            baseline = sent[family.name] * scale / 1e6
            note = f"measured on {events:,} events and scaled; baseline = request bodies, uncompressed"
            for store, size in (("log (raw + typed topics)", log), ("warehouse, compressed", warehouse),
                                ("NDJSON exports", export)):  # fmt: skip
                rows.append(Row(f"sizing: {family.name}, {store}, per 1M events", size * scale / 1e6, baseline,
                                "MB", "report", note))  # fmt: skip
    return rows


def _main() -> None:  # pragma: no cover - a manual entry point
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="forgeline-sizing-") as tmp:
        for row in bench_sizing(Path(tmp), int(sys.argv[1]) if len(sys.argv) > 1 else 20_000):
            print(orjson.dumps(row.__dict__).decode())


if __name__ == "__main__":
    _main()
