"""Retention of closed segments: deletion by age and size, and compaction by key."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from forgeline.atomic import fsync_dir, write_atomic
from forgeline.bus.embedded.files import SEALED_MODE, opened
from forgeline.bus.embedded.framing import Frame, Scanner, encode_batch
from forgeline.bus.embedded.layout import segments
from forgeline.bus.port import OutgoingRecord, TopicPartition
from forgeline.bus.retention import TopicRetention
from forgeline.telemetry.metrics import BUS_RETENTION_UNREAD_DELETED

log = logging.getLogger(__name__)


def delete_old(
    tp: TopicPartition, directory: Path, settings: TopicRetention, commits: Mapping[str, int], fsync: bool
) -> int:
    """Delete the closed segments that ``retention.ms`` / ``retention.bytes`` let go, oldest first.

    ``commits`` is each consumer group's committed offset of the partition: age never takes
    a segment a group has not committed past; size does, and counts what the group loses.
    """
    found = segments(directory)
    if len(found) < 2:
        return 0  # the active segment is never deleted
    sizes = {s.path: s.path.stat().st_size for s in found}
    total = sum(sizes.values())
    now_ms = time.time_ns() // 1_000_000
    deleted = 0
    for segment, successor in zip(found, found[1:], strict=False):
        by_size = settings.retention_bytes is not None and total > settings.retention_bytes
        by_age = (
            settings.retention_ms is not None
            and segment.path.stat().st_mtime_ns // 1_000_000 < now_ms - settings.retention_ms
        )
        if not (by_size or by_age):
            break
        # Records [segment.base, successor.base) are in this segment.
        unread = {g: successor.base - max(o, segment.base) for g, o in commits.items() if o < successor.base}
        if unread and not by_size:
            break  # a group still needs it: age alone never takes it away
        for group, count in unread.items():
            BUS_RETENTION_UNREAD_DELETED.labels(topic=tp.topic, group=group).inc(count)
            log.warning(
                "retention.bytes forces out records a consumer group has not read",
                extra={
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "group": group,
                    "committed": commits[group],
                    "deleted_from": segment.base,
                    "deleted_to": successor.base,
                    "unread": count,
                },
            )
        segment.path.unlink()
        total -= sizes[segment.path]
        deleted += 1
        log.info(
            "deleted partition log segment",
            extra={"path": str(segment.path), "by": "retention.bytes" if by_size else "retention.ms"},
        )
    if deleted and fsync:
        fsync_dir(directory)
    return deleted


def compact(directory: Path, fsync: bool, key_expiry_ms: int | None = None, now_ms: int | None = None) -> int:
    """Keep only the last record per key in the closed segments (Kafka's cleanup.policy=compact).

    Records without a key are kept. Offsets do not change (a compacted log has gaps, which
    readers skip); a segment left empty is deleted. Each rewrite is a new file renamed over
    the old one, so a crash leaves either version, and a reader that has the old one open
    reads it to its end.

    ``key_expiry_ms`` (cleanup.policy=compact,delete): a key whose last record is older than
    this (its append time, before ``now_ms``) goes from the closed segments too, and so does a
    keyless record that old. The active segment is never touched, so its keys stay.
    """
    for stale in directory.glob("*.log.compact.*"):
        stale.unlink(missing_ok=True)  # a rewrite a crash cut short (we hold retention.lock)
    found = segments(directory)
    if len(found) < 2:
        return 0
    # Each key's last offset and that record's append time.
    latest: dict[bytes, tuple[int, int]] = {}
    for segment in found:  # the active segment too: its records supersede older ones
        with opened(segment.path) as fd:
            scanner = Scanner(fd, segment.start, base=segment.start)
            while (frame := scanner.next()) is not None:
                for offset, key in enumerate(frame.keys(), frame.offset):
                    if key is not None:
                        latest[key] = (offset, frame.timestamp_ms)
    cutoff_ms = None
    if key_expiry_ms is not None:
        cutoff_ms = (time.time_ns() // 1_000_000 if now_ms is None else now_ms) - key_expiry_ms

    def kept_record(offset: int, key: bytes | None, timestamp_ms: int) -> bool:
        if key is None:
            return cutoff_ms is None or timestamp_ms >= cutoff_ms
        last = latest.get(key)
        return last is not None and last[0] == offset and (cutoff_ms is None or last[1] >= cutoff_ms)

    changed = 0
    for segment in found[:-1]:
        kept: list[bytes] = []
        dropped = 0
        with opened(segment.path) as fd:
            scanner = Scanner(fd, segment.start, base=segment.start)
            while (frame := scanner.next()) is not None:
                keys = enumerate(frame.keys(), frame.offset)
                keep = [kept_record(offset, key, frame.timestamp_ms) for offset, key in keys]
                if all(keep):
                    kept.append(frame.raw())  # as it is, whatever its version
                else:
                    dropped += keep.count(False)
                    kept += _survivors(frame, keep)
        if not dropped:
            continue
        changed += 1
        if not kept:
            segment.path.unlink()
            continue
        # The directory is fsync'd once below, for every segment rewritten or deleted.
        temp = segment.path.with_name(f"{segment.path.name}.compact.{os.getpid()}")
        write_atomic(segment.path, b"".join(kept), temp=temp, mode=SEALED_MODE, sync_dir=False)
    if changed:
        if fsync:
            fsync_dir(directory)
        log.info("compacted partition log", extra={"path": str(directory), "segments": changed})
    return changed


def _survivors(frame: Frame, keep: list[bool]) -> list[bytes]:
    """The kept records of ``frame`` as batch frames of consecutive offsets: offsets never change,
    so a gap in the middle of a frame splits it in two."""
    frames: list[bytes] = []
    run: list[OutgoingRecord] = []
    base = frame.offset
    for record, wanted in zip(frame.records("", 0), keep, strict=True):
        if wanted:
            if not run:
                base = record.offset
            run.append(OutgoingRecord("", record.value, record.key, record.headers))
        elif run:
            frames.append(encode_batch(base, frame.timestamp_ms, run))
            run = []
    if run:
        frames.append(encode_batch(base, frame.timestamp_ms, run))
    return frames
