"""One flush of a whole file system (Linux ``syncfs``) instead of one per file.

A job that links 500 pre-made files into its work folder must have them on disk before
it records them. ``fsync`` per file asks the disk to flush its cache each time, even for
a file whose data were written long ago: 500 of them took 0.06-0.12 s from eight threads
(2 ms each one after another) on the development machine's ext4, where one ``syncfs``
after the 500 links took 1.4-4 ms (``/tmp`` scripts). ``syncfs`` writes every file of
the file system that is not on disk yet, waits for it, commits the journal and flushes
the disk once; its error is the file system's (any write-back error since the folder
was opened for it, or not yet reported to anyone).

It also waits for other programs' data on the same file system, so a caller takes it
as one way among two (:class:`~aifi_app.pipeline.durable_batch.DurableBatch`: whichever
finishes first, ``syncfs`` or the files' own flushes). Elsewhere than Linux (or a C
library without ``syncfs``) :func:`available` is False and callers flush file by file.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any


def _load() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function: Any = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    call: Callable[[int], int] = function  # ctypes releases the GIL during the call
    return call


_SYNCFS = _load()


def available() -> bool:
    """True where :func:`flush_file_system` can be used."""
    return _SYNCFS is not None


def flush_file_system(folder: Path) -> None:
    """Put everything written to ``folder``'s file system on disk (``syncfs``); raises
    OSError with the system's error, or when :func:`available` is False."""
    if _SYNCFS is None:
        raise OSError("syncfs is not available here")
    fd = os.open(folder, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
    finally:
        os.close(fd)


def start_flush(folder: Path) -> Future[None]:
    """:func:`flush_file_system` in a thread of its own (it cannot be stopped once it
    runs, and never waits for a pool's other work); its outcome in the future."""
    future: Future[None] = Future()
    future.set_running_or_notify_cancel()

    def run() -> None:
        try:
            flush_file_system(folder)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)

    threading.Thread(target=run, name="aifi-syncfs", daemon=True).start()
    return future
