"""Writing the pre-pseudonymiser's files to disk once the node pauses, not while it receives.

The pre-pseudonymiser (:mod:`aifi_app.pipeline.pre_pseudonymise`) writes about as many bytes
as the node receives (a 500-slice CT: 262 MB each), and the node flushes every instance
before its success. When the child handed each file to the kernel's writeback at once,
its bytes went to the disk between the node's flushes, and each flush waited for them:
on the development machine's virtual disk (about 170-270 MB/s) that was most of what
the route cost the node's ingest (2.2-2.5 s for the CT against 1.3-1.6 s without it).

Here the files made while a study arrives stay in the page cache, unwritten, up to
:data:`DEFERRED_BYTES` (the oldest beyond that are handed to writeback), and all are
handed to writeback (:func:`start_writeback`, asynchronous) when the arrival pauses or
its study completes. Nothing depends on it for safety: the job that takes a file flushes
it itself before it records it, and the cache is emptied at every start; this only
decides when the disk does the work, and keeps it from the node's flushes. The bound
keeps a long arrival from piling up dirty pages until the kernel throttles every writer
(the node included) or writes them back in one burst.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path

DEFERRED_BYTES = 128 << 20
"""At most this many bytes of made files wait for a pause (128 MiB: about 250 CT slices,
under half a second of writing on the development machine's disk, which a job's image
selection after completion covers)."""


def start_writeback(path: Path) -> None:
    """Ask the kernel to start writing ``path`` to disk now, without waiting for it, and
    keep its pages in memory: ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` on Linux;
    elsewhere ``POSIX_FADV_DONTNEED`` (which also drops the pages already written). On
    Linux that advice dropped the files a job was about to read: a file whose pages were
    written meanwhile (by the job's own flush, or the kernel's) lost them from the page
    cache, and the job's read-ahead and its model read them back from the disk (its
    read-ahead took 0.24-0.47 s after the step instead of ~0.1 s). Nothing where the OS
    has neither (Windows), or when the file is gone (its study's files were removed
    meanwhile)."""
    write_out = _sync_file_range()
    advise = getattr(os, "posix_fadvise", None)
    if write_out is None and advise is None:  # Windows
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        if write_out is not None:
            write_out(fd, 0, 0, SYNC_FILE_RANGE_WRITE)  # an error: nothing started, no harm
        elif advise is not None:
            with contextlib.suppress(OSError):
                advise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


SYNC_FILE_RANGE_WRITE = 2
"""Start writing the range's dirty pages that are not being written yet; no waiting."""
_WRITE_OUT: list[Callable[[int, int, int, int], int] | None] = []


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """The C library's ``sync_file_range`` (Linux; Python has no call for it), or None."""
    if not _WRITE_OUT:
        found = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                function = ctypes.CDLL(None, use_errno=True).sync_file_range
                function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
                function.restype = ctypes.c_int
                found = function
            except (OSError, AttributeError):
                found = None
        _WRITE_OUT.append(found)
    return _WRITE_OUT[0]


class DeferredWriteback:
    """Files whose writeback waits for :meth:`release` (oldest first beyond ``limit``)."""

    def __init__(
        self,
        limit: int = DEFERRED_BYTES,
        start: Callable[[Path], None] = start_writeback,
    ) -> None:
        self._limit = limit
        self._start = start
        self._files: deque[tuple[Path, int]] = deque()
        self._bytes = 0

    @property
    def pending(self) -> tuple[int, int]:
        """(files, bytes) waiting."""
        return len(self._files), self._bytes

    def add(self, path: Path, size: int) -> None:
        """``path`` (``size`` bytes) was written; its writeback waits, unless more than
        the limit waits: then the oldest files go now until it fits."""
        self._files.append((path, size))
        self._bytes += size
        while self._bytes > self._limit and self._files:
            self._start_oldest()

    def release(self) -> int:
        """Start the writeback of every waiting file (oldest first); how many."""
        count = len(self._files)
        while self._files:
            self._start_oldest()
        return count

    def _start_oldest(self) -> None:
        path, size = self._files.popleft()
        self._bytes -= size
        self._start(path)
