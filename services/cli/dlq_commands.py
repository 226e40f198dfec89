"""`forgeline dlq list|show|replay`: dead letters you can act on.

Dead letters are read from the ``dlq.<group>`` topics, where every processor puts the record
it could not process, key and value byte for byte, with where it came from and why in its
headers. A dead letter is named ``<group>/<partition>/<offset>`` (its place in its topic).

``replay`` appends the original record again to the topic it came from, on its partition,
so it takes the path it took the first time (a ``raw.*`` record: through the normalizer).
Replays are idempotent: the gateway stamped the record's event id before the first append,
so a record replayed twice — or replayed after it was fixed and had already landed — gives
the same row, which the warehouse keeps once. Only the normalizer's dead letters are
replayed: replaying a typed record into ``typed.*`` would count it again in the stateful
processors (error groups, monitors), which read it at a new offset.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

from forgeline.bus.factory import create_bus
from forgeline.bus.follow import read_to_end
from forgeline.bus.port import ADMIN_SEND_TIMEOUT_S, Bus, OutgoingRecord, Record
from forgeline.bus.topics import DEAD_LETTER_GROUPS, RAW_TOPICS, dead_letter_topic
from forgeline.config import Settings

REPLAYABLE = ("normalizer",)  # groups whose dead letters go back through their own path
REPLAYED_FROM = "replayed_from"  # header of a replayed record: the dead letter's name


@dataclass(frozen=True)
class DeadLetter:
    group: str
    record: Record

    @property
    def name(self) -> str:
        return f"{self.group}/{self.record.partition}/{self.record.offset}"

    def header(self, name: str) -> str:
        return (self.record.header(name) or b"").decode("utf-8", "replace")

    @property
    def failed_at_ms(self) -> int:
        raw = self.header("failed_at_ms")
        return int(raw) if raw.isdigit() else self.record.timestamp_ms

    @property
    def source_topic(self) -> str:
        return self.header("source_topic")

    def matches(self, kind: str | None, reason: str | None, since_ms: int | None, until_ms: int | None) -> bool:
        topic = self.source_topic
        if kind and not (topic == kind or topic.rsplit(".", 1)[-1] == kind):
            return False
        if reason and self.header("reason") != reason:
            return False
        at = self.failed_at_ms
        return (since_ms is None or at >= since_ms) and (until_ms is None or at < until_ms)


def _when(text: str) -> int:
    """ISO 8601 (UTC unless it says otherwise) → epoch milliseconds."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _iso(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def add_dlq_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    dlq = sub.add_parser("dlq", help="list, show and replay dead letters")
    verbs = dlq.add_subparsers(dest="dlq_command", required=True)
    groups = ", ".join(DEAD_LETTER_GROUPS)
    selection = argparse.ArgumentParser(add_help=False)
    selection.add_argument(
        "--group", choices=DEAD_LETTER_GROUPS, metavar="GROUP", help=f"only this processor ({groups})"
    )
    selection.add_argument("--kind", help="only records from this topic or kind (raw.forge, logister, errors, …)")
    selection.add_argument("--reason", help="only this reason (bad_raw_record, processing_error, …)")
    selection.add_argument("--from", dest="since", type=_when, help="failed at or after, ISO 8601 (UTC by default)")
    selection.add_argument("--to", dest="until", type=_when, help="failed before, ISO 8601")
    listing = verbs.add_parser("list", parents=[common, selection], help="one line per dead letter, oldest first")
    listing.add_argument("--limit", type=int, default=1000, help="at most this many lines (default 1000)")
    show = verbs.add_parser("show", parents=[common], help="one dead letter in full: headers and payload")
    show.add_argument("name", help="GROUP/PARTITION/OFFSET, as `dlq list` prints it")
    replay = verbs.add_parser(
        "replay", parents=[common, selection], help="append the selected normalizer dead letters to their source again"
    )
    replay.add_argument("names", nargs="*", help="GROUP/PARTITION/OFFSET, … (default: every one selected)")
    replay.add_argument("--dry-run", action="store_true", help="say what would be replayed, append nothing")


async def read_dead_letters(bus: Bus, groups: tuple[str, ...]) -> list[DeadLetter]:
    found: list[DeadLetter] = []
    for group in groups:
        reader = bus.reader([dead_letter_topic(group)])
        await reader.start()

        def keep(record: Record, group: str = group) -> bool:
            found.append(DeadLetter(group, record))
            return True

        try:
            await read_to_end(reader, keep)
        finally:
            await reader.stop()
    found.sort(key=lambda d: (d.failed_at_ms, d.name))
    return found


def _select(letters: list[DeadLetter], args: argparse.Namespace) -> list[DeadLetter]:
    return [d for d in letters if d.matches(args.kind, args.reason, args.since, args.until)]


def _line(d: DeadLetter) -> str:
    detail = d.header("detail").replace("\n", " ")
    source = f"{d.source_topic}/{d.header('source_partition')}/{d.header('source_offset')}"
    return f"{d.name}\t{_iso(d.failed_at_ms)}\t{d.header('reason')}\t{source}\t{detail[:160]}"


def _show(d: DeadLetter) -> str:
    lines = [f"dead letter {d.name}", f"failed at   {_iso(d.failed_at_ms)}"]
    lines += [f"{name:<12}{value.decode('utf-8', 'replace')}" for name, value in d.record.headers]
    key = d.record.key.hex() if d.record.key is not None else "-"
    lines += [f"key (hex)   {key}", f"payload     {len(d.record.value)} bytes", ""]
    try:
        lines.append(d.record.value.decode("utf-8"))
    except UnicodeDecodeError:
        lines.append(f"(binary) {d.record.value[:4096].hex()}")
    return "\n".join(lines)


def replay_record(d: DeadLetter, partitions: int) -> OutgoingRecord:
    """The original record again, for its source topic and partition, marked as a replay."""
    source_partition = d.header("source_partition")
    partition = int(source_partition) if source_partition.isdigit() else None
    if partition is not None and partition >= partitions:
        partition = None  # the topic shrank (it cannot on Kafka): let the key choose
    return OutgoingRecord(
        d.source_topic,
        d.record.value,
        key=d.record.key,
        headers=((REPLAYED_FROM, d.name.encode()),),
        partition=partition,
    )


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    bus = create_bus(settings.resolved_bus_url, settings.partitions)
    verb = args.dlq_command
    if verb == "show":
        group = args.name.split("/", 1)[0]
        if group not in DEAD_LETTER_GROUPS:
            print(f"forgeline dlq: no such dead letter {args.name!r} (GROUP/PARTITION/OFFSET)", file=sys.stderr)
            return 2
        match = [d for d in await read_dead_letters(bus, (group,)) if d.name == args.name]
        if not match:
            print(f"forgeline dlq: no such dead letter {args.name!r}", file=sys.stderr)
            return 1
        print(_show(match[0]))
        return 0
    groups = (args.group,) if args.group else DEAD_LETTER_GROUPS
    letters = _select(await read_dead_letters(bus, groups), args)
    if verb == "list":
        for d in letters[: args.limit]:
            print(_line(d))
        if len(letters) > args.limit:
            print(f"… {len(letters) - args.limit} more (--limit)", file=sys.stderr)
        return 0
    if args.names:
        wanted = set(args.names)
        letters = [d for d in letters if d.name in wanted]
        missing = wanted - {d.name for d in letters}
        if missing:
            print(f"forgeline dlq: no such dead letter(s): {', '.join(sorted(missing))}", file=sys.stderr)
            return 1
    refused = [d for d in letters if d.group not in REPLAYABLE or d.source_topic not in RAW_TOPICS]
    if refused:
        print(
            f"forgeline dlq: only the normalizer's dead letters of raw topics can be replayed; "
            f"{len(refused)} selected are not (first: {refused[0].name}); narrow with --group normalizer",
            file=sys.stderr,
        )
        return 2
    if args.dry_run:
        for d in letters:
            print(f"would replay {d.name} to {d.source_topic}")
        return 0
    partitions = {topic: bus.partitions(topic) for topic in {d.source_topic for d in letters}}
    out = [replay_record(d, partitions[d.source_topic]) for d in letters]
    producer = bus.producer(send_timeout_s=ADMIN_SEND_TIMEOUT_S)
    await producer.start()
    try:
        for start in range(0, len(out), 500):
            await producer.send_many(out[start : start + 500])
    finally:
        await producer.stop()
    print(f"replayed {len(out)} dead letter(s)")
    return 0


def dlq_command(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_run(settings, args))
