"""Durable file writes: whole or not at all, and on disk before the caller is told.

The embedded bus (its metadata, group offsets and compacted segments) and the local blob
store (exported files) both replace files this way: write a temp file in the same file
system, fsync it, rename it over the target, then fsync the directory so the rename itself
survives a power cut. A crash at any point leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from forgeline.private_fs import FILE_MODE


def fsync_dir(path: Path) -> None:
    """Make the entries of ``path`` (creations, renames, deletions) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may take fewer than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_atomic(
    path: Path,
    data: bytes,
    *,
    temp: Path | None = None,
    exclusive: bool = False,
    mode: int = FILE_MODE,
    sync_dir: bool = True,
) -> None:
    """Replace ``path`` with ``data`` so a crash leaves either the old or the new file.

    ``temp`` must be on the same file system as ``path`` (default: beside it, named after this
    process, so two processes never share one); ``exclusive`` refuses an existing temp file (for
    random temp names). The new file gets ``mode``. ``sync_dir=False`` leaves the directory fsync
    to a caller that renames several files into one directory and fsyncs it once.
    A temp file is removed again when any step fails.
    """
    temp = temp or path.with_name(f"{path.name}.tmp.{os.getpid()}")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(temp, flags, FILE_MODE)  # outside the try: a temp we did not create is not ours to remove
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
            if mode != FILE_MODE:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    if sync_dir:
        fsync_dir(path.parent)
