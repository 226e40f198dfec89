"""File primitives of the embedded log: locks, read-only opens, sealed segments, atomic JSON."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from forgeline.atomic import write_atomic

# A closed segment is read-only: appenders check the mode of their file under the append lock.
SEALED_MODE: Final = 0o400


def is_sealed(mode: int) -> bool:
    return not mode & stat.S_IWUSR


@contextmanager
def flocked(fd: int, operation: int = fcntl.LOCK_EX) -> Iterator[None]:
    fcntl.flock(fd, operation)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextmanager
def opened(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def write_json_atomic(path: Path, doc: object, *, fsync_dir: bool = True) -> None:
    """Replace ``path`` with ``doc`` so a crash leaves either the old or the new file."""
    write_atomic(path, json.dumps(doc).encode(), sync_dir=fsync_dir)
