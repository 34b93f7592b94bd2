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
from collections import deque
from collections.abc import Callable
from pathlib import Path

DEFERRED_BYTES = 128 << 20
"""At most this many bytes of made files wait for a pause (128 MiB: about 250 CT slices,
under half a second of writing on the development machine's disk, which a job's image
selection after completion covers)."""


def start_writeback(path: Path) -> None:
    """Ask the kernel to start writing ``path`` to disk now, without waiting for it
    (``POSIX_FADV_DONTNEED``). Nothing where the OS has no ``posix_fadvise`` (Windows),
    or when the file is gone (its study's files were removed meanwhile)."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:  # Windows
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            advise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


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
