"""`forgeline topics ensure`: create every topic of the pipeline on the configured bus."""

from __future__ import annotations

import argparse
import asyncio
import sys

from forgeline.bus.factory import create_bus
from forgeline.bus.port import BusUnavailable
from forgeline.bus.provision import ensure_topics
from forgeline.config import Settings


def add_topics_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    topics = sub.add_parser("topics", help="manage bus topics")
    tsub = topics.add_subparsers(dest="action", required=True)
    tsub.add_parser(
        "ensure",
        parents=[common],
        help="create missing topics (FORGELINE_PARTITIONS partitions; control topic compacted); idempotent",
    )


def topics_command(settings: Settings, args: argparse.Namespace) -> int:
    bus = create_bus(settings.resolved_bus_url, settings.partitions)
    try:
        counts = asyncio.run(ensure_topics(bus))
    except BusUnavailable as err:
        print(f"forgeline: {err}", file=sys.stderr)
        return 1
    for topic, partitions in counts.items():
        print(f"{topic}\t{partitions}")
    return 0
