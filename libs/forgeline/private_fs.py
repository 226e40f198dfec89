"""Player data on disk is the owner's only: directories 0700, files 0600, whatever the umask.

The data dir holds the bus (every event as sent), uploaded blobs, exports, the warehouse and
the keys. Every place that creates something there uses these helpers, and the top-level
directories of a data dir written by an older version (0755) are tightened when they are
opened again: a 0700 directory keeps others out of everything below it, so existing 0644
files need no walk.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Final

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600


def make_private_dirs(path: Path) -> Path:
    """``mkdir -p`` where every directory created gets DIR_MODE (``Path.mkdir(parents=True)``
    gives missing parents the umask's mode). Existing directories are left as they are."""
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue  # another process made it (with its own mode; tighten() fixes the top)
        os.chmod(directory, DIR_MODE)  # the umask may have taken bits off; never adds any
    return path


def tighten(path: Path) -> None:
    """Make an existing directory DIR_MODE (a data dir from a version that made it 0755).

    A directory we do not own (a mount point, a shared parent) is left alone.
    """
    with contextlib.suppress(FileNotFoundError, PermissionError):
        if stat.S_IMODE(os.stat(path).st_mode) != DIR_MODE:
            os.chmod(path, DIR_MODE)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) private, or tighten it when it exists: a store's root."""
    make_private_dirs(path)
    tighten(path)
    return path


def open_private(path: Path | str, flags: int) -> int:
    """``os.open`` whose file, when created, is FILE_MODE (``open()`` would make it 0644)."""
    return os.open(path, flags, FILE_MODE)
