"""Durable files: a file is complete and fsynced, and its directory entry too, before the
appliance tells anyone it has it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk (works on a file opened for writing elsewhere)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (a rename or a new file) to disk; a no-op on Windows."""
    if os.name == "nt":  # pragma: no cover - directories cannot be opened on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_move(src: Path, dest: Path) -> int:
    """Move ``src`` to ``dest`` durably (replacing ``dest``); returns the file size.

    A rename when both are on one file system, a copy otherwise.
    """
    fsync_file(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        src.replace(dest)
    except OSError:
        # another file system, or Windows refusing to move a file still open elsewhere
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(src, tmp)
        fsync_file(tmp)
        tmp.replace(dest)
    fsync_dir(dest.parent)
    return dest.stat().st_size


def durable_write(dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically and durably (temp file, fsync, rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(dest)
    fsync_dir(dest.parent)
