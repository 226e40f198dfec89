"""The embedded log's data directory: topics and their partitions, free space, retention runs.

Producers and consumers share one ``LogStore`` (``EmbeddedBus`` is one, plus the factories).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from forgeline.atomic import fsync_dir
from forgeline.bus.embedded.cleanup import compact, delete_old
from forgeline.bus.embedded.files import flocked, write_json_atomic
from forgeline.bus.embedded.layout import FIRST_SEGMENT, check_name, offset_file_name
from forgeline.bus.port import Capabilities, TopicPartition
from forgeline.bus.retention import RetentionPolicy
from forgeline.private_fs import FILE_MODE, make_private_dirs, private_dir

log = logging.getLogger(__name__)


class LogStore:
    """Topics, partitions and group directories under ``root``, shared by the processes of one machine.

    ``partitions`` gives the partition count of topics by name (others get
    ``default_partitions``); a topic's count is fixed when it is first created and read
    from its meta.json afterwards, whatever the arguments say. ``fsync=False`` gives up
    durability for speed (tests, throwaway runs).
    """

    def __init__(
        self,
        root: Path,
        default_partitions: int = 4,
        partitions: Mapping[str, int] | None = None,
        fsync: bool = True,
        poll_interval_s: float = 0.01,
        send_timeout_s: float = 5.0,
        retention: RetentionPolicy | None = None,
        min_free_bytes: int = 0,
        min_free_percent: float = 0.0,
    ) -> None:
        if default_partitions < 1 or any(n < 1 for n in (partitions or {}).values()):
            raise ValueError("partition counts must be at least 1")
        self.capabilities = Capabilities(name="embedded", shared_groups=False, send_timeout_s=send_timeout_s)
        self.root = Path(root)
        self.default_partitions = default_partitions
        self.fsync = fsync
        self.poll_interval_s = poll_interval_s
        self.send_timeout_s = send_timeout_s
        self.retention = retention or RetentionPolicy()
        self.min_free_bytes = min_free_bytes
        self.min_free_percent = min_free_percent
        self._configured = dict(partitions or {})
        self._counts: dict[str, int] = {}
        self._root_ready = False
        self._space_checked = -1.0
        self._space_problem: str | None = None

    # -- disk space --

    def space_problem(self, max_age_s: float = 0.5) -> str | None:
        """Why the data directory is too full to take writes, or None (statvfs, cached briefly).

        Writes are refused while free space is below ``min_free_bytes`` or ``min_free_percent``
        of the filesystem, so the disk never fills up under the log (or the warehouse beside it).
        """
        if self.min_free_bytes <= 0 and self.min_free_percent <= 0:
            return None
        now = time.monotonic()
        if now - self._space_checked < max_age_s:
            return self._space_problem
        path = self.root
        while not path.exists() and path.parent != path:
            path = path.parent
        try:
            st = os.statvfs(path)
        except OSError as err:
            problem: str | None = f"cannot check free space of {path}: {err}"
        else:
            free = st.f_bavail * st.f_frsize
            total = st.f_blocks * st.f_frsize
            needed = max(self.min_free_bytes, int(total * self.min_free_percent / 100))
            problem = None
            if free < needed:
                problem = f"disk almost full: {free} bytes free under {path}, below the {needed} kept free"
        if problem != self._space_problem:
            if problem is None:
                log.info("free disk space is back above the threshold; taking writes again")
            else:
                log.error("refusing writes: %s", problem)
        self._space_checked, self._space_problem = now, problem
        return problem

    # -- retention (blocking; producers run it in their flush threads) --

    def enforce_retention(self, topic: str, partition: int) -> int:
        """Delete or compact the closed segments of one partition as its settings say.

        Returns how many segments were deleted or rewritten. Another process doing the same
        partition at the moment makes this a no-op (it holds ``retention.lock``).
        """
        settings = self.retention.for_topic(topic)
        directory = self.partition_dir(topic, partition)
        fd = os.open(directory / "retention.lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0
            if settings.compact:
                return compact(directory, self.fsync, settings.key_expiry_ms)
            tp = TopicPartition(topic, partition)
            return delete_old(tp, directory, settings, self._group_commits(tp), self.fsync)
        finally:
            os.close(fd)  # releases the flock

    def _group_commits(self, tp: TopicPartition) -> dict[str, int]:
        """Each consumer group's committed offset of ``tp`` (groups that never committed it: none)."""
        commits: dict[str, int] = {}
        groups = self.root / "groups"
        try:
            names = os.listdir(groups)
        except FileNotFoundError:
            return commits
        for group in names:
            try:
                doc = json.loads((groups / group / offset_file_name(*tp)).read_bytes())
                commits[group] = int(doc["offset"])
            except (FileNotFoundError, ValueError, KeyError, TypeError):
                continue
        return commits

    def prepare_root(self) -> None:
        """Create the root 0700, or tighten one an older version made 0755 (once per instance):
        the log holds every event as sent, so nobody but the owner may read below it."""
        if not self._root_ready:
            private_dir(self.root)
            self._root_ready = True

    def partitions(self, topic: str) -> int:
        """The partition count of ``topic``, creating the topic if it does not exist yet."""
        return self.ensure_topic(topic)

    # -- paths and topic creation (blocking; async callers run them in a thread) --

    def topic_dir(self, topic: str) -> Path:
        return self.root / "topics" / topic

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.topic_dir(topic) / str(partition)

    def group_dir(self, group: str) -> Path:
        return self.root / "groups" / group

    def known_partitions(self, topic: str) -> int | None:
        """The cached partition count, without touching the disk (None when not known yet)."""
        return self._counts.get(topic)

    def ensure_topic(self, topic: str) -> int:
        """Create ``topic`` if needed and return its partition count (blocking).

        Safe against other processes creating the same topic at once: creation happens
        under an flock and meta.json, written last and atomically, is what everyone reads.
        """
        cached = self._counts.get(topic)
        if cached is not None:
            return cached
        check_name("topic", topic)
        directory = self.topic_dir(topic)
        meta = directory / "meta.json"
        count = self._read_meta(meta)
        if count is None:
            self.prepare_root()
            make_private_dirs(directory)
            lock_fd = os.open(directory / "create.lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
            try:
                with flocked(lock_fd):
                    count = self._read_meta(meta)  # another process may have won the race
                    if count is None:
                        count = self._create(topic)
            finally:
                os.close(lock_fd)
        wanted = self._configured.get(topic)
        if wanted is not None and wanted != count:
            log.warning(
                "topic exists with a different partition count; keeping it",
                extra={"topic": topic, "partitions": count, "configured": wanted},
            )
        self._counts[topic] = count
        return count

    @staticmethod
    def _read_meta(meta: Path) -> int | None:
        try:
            doc = json.loads(meta.read_bytes())
        except FileNotFoundError:
            return None
        count = doc.get("partitions") if isinstance(doc, dict) else None
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"bad topic metadata in {meta}: {doc!r}")
        return count

    def _create(self, topic: str) -> int:
        count = self._configured.get(topic, self.default_partitions)
        directory = self.topic_dir(topic)
        for partition in range(count):
            pdir = self.partition_dir(topic, partition)
            make_private_dirs(pdir)
            # Readers open the log before any producer writes: create it empty now.
            os.close(os.open(pdir / FIRST_SEGMENT, os.O_WRONLY | os.O_CREAT, FILE_MODE))
            if self.fsync:
                fsync_dir(pdir)
        write_json_atomic(directory / "meta.json", {"partitions": count}, fsync_dir=self.fsync)
        if self.fsync:
            fsync_dir(directory.parent)
            fsync_dir(directory.parent.parent)
        log.info("created topic", extra={"topic": topic, "partitions": count})
        return count
