"""Many files of one step written (or linked), then made durable together.

A step such as pseudonymising a 500-slice CT writes hundreds of intermediate files and
records them in the database only after all are written. Each needs to be on disk before
that record, but not one by one: an fsync per file (and per folder) as it is written made
the step wait for the disk 500 times. Here each file is written at once and flushed to
disk by a background thread (``os.fsync`` releases the GIL), while the step goes on with
the next file; :meth:`DurableBatch.sync` waits for them all and fsyncs their folder once.

Files that are hard links to files made earlier (a job's pre-made images,
:meth:`DurableBatch.linked`) are flushed at :meth:`~DurableBatch.sync`, after the last
link: where the system has it by one flush of the whole file system
(:mod:`aifi_app.pipeline.file_system_flush`; 500 links: 1.4-4 ms, against 0.06-0.12 s
for their fsyncs from eight threads), and, should that take longer than
:data:`HEDGE_SECONDS` (other programs writing to the same disk), by each file's own
fsync besides: whichever finishes first. Elsewhere by their own fsyncs, except those
whose file :meth:`~DurableBatch.flush_source` flushed already. ``flush_source`` starts
putting the linked files' data on disk early, while the caller still does other work.

The files are not atomic on their own (no temporary name): the step that writes them
removes its folder before it starts again, so a half-written file from a crash is never
read. Thread: the caller's; the fsyncs run in :data:`FSYNC_THREADS` background threads
shared by every batch of the process (:func:`warm_up` starts them; a batch used to start
its own, and each thread's start waited for the new thread to run: 0.05 s of a CT job's
step on the quiet machine, more under load): fsyncs that run at once share the file
system's journal commits (ext4, measured here: 300 files of 0.5 MB not yet on disk took
0.99 s one after another, 0.36 s from 8 threads).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from types import TracebackType
from typing import Any

from aifi_app.dicom_node.spool import fsync_dir
from aifi_app.pipeline import file_system_flush

FSYNC_THREADS = 8
HEDGE_SECONDS = 0.05
"""How long :meth:`DurableBatch.sync` lets the file system's flush run alone before it
flushes the linked files one by one besides."""

Identity = tuple[int, int]
"""(device, inode) of a file."""
_Link = tuple[Path, "Future[Identity] | None", "Identity | None"]
"""A linked file, its source's early flush and the linked file's identity."""


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def fsync_pool() -> ThreadPoolExecutor:
    """The process's fsync threads (started on first use, all at once)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=FSYNC_THREADS, thread_name_prefix="fsync")
            meet = threading.Barrier(FSYNC_THREADS, timeout=5.0)
            for _ in range(FSYNC_THREADS):  # each waits for the others: all are started
                _pool.submit(_meet, meet)
        return _pool


def _meet(barrier: threading.Barrier) -> None:
    with contextlib.suppress(threading.BrokenBarrierError):  # fewer started: on demand
        barrier.wait()


def warm_up() -> None:
    """Start the fsync threads now (at the service's start), not in a job's step."""
    fsync_pool()


def _fsync(path: Path) -> Identity:
    """Flush ``path``'s data and inode; the identity of the file flushed."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))  # Windows: needs write access
    try:
        os.fsync(fd)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return (st.st_dev, st.st_ino)


class DurableBatch:
    """``with DurableBatch() as batch: batch.write(path, data) ...; batch.sync()``.

    ``whole_file_system``: flush linked files with the file system's flush (default:
    where :func:`~aifi_app.pipeline.file_system_flush.available`)."""

    def __init__(self, whole_file_system: bool | None = None) -> None:
        self._pool = fsync_pool()
        self._submitted: list[Future[Identity]] = []
        """Every fsync of this batch (those not started are dropped at :meth:`close`)."""
        self._pending: list[Future[Identity]] = []
        self._folders: set[Path] = set()
        self._whole = (
            file_system_flush.available() if whole_file_system is None else whole_file_system
        )
        self._early: Future[None] | None = None
        self._sources: dict[Path, Future[Identity]] = {}
        self._links: list[_Link] = []

    def write(self, path: Path, data: bytes) -> None:
        """Write ``path`` now (its folder made if needed); it is on disk after :meth:`sync`."""
        self.folder(path)
        with path.open("wb") as fh:
            fh.write(data)
        self.written(path)

    def folder(self, path: Path) -> None:
        """Make ``path``'s folder if needed (for a file the caller writes itself)."""
        if path.parent not in self._folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(path.parent)

    def written(self, path: Path) -> None:
        """``path``, written and closed by the caller in a folder made by :meth:`folder`,
        is on disk after :meth:`sync`."""
        self._pending.append(self._submit(path))

    def flush_source(self, source: Path) -> None:
        """Start putting ``source``, an existing file that will be hard-linked into a
        folder of this batch (:meth:`linked`), on disk now, in the background: its data
        are written while the caller does other work, not after the links. (A link made
        while fsyncs of linked files run makes each of them commit the file system's
        journal again: 500 links and their fsyncs interleaved took 0.27 s on ext4 where
        the data were on disk already.)"""
        if self._whole:
            if self._early is None:
                self._early = file_system_flush.start_flush(source.parent)
        elif source not in self._sources:
            self._sources[source] = self._submit(source)

    def linked(self, target: Path, source: Path) -> None:
        """``target``, in a folder made by :meth:`folder`, was just made a hard link of
        ``source`` (or a copy of it): it is on disk after :meth:`sync` (see the module)."""
        flushed = None if self._whole else self._sources.get(source)
        identity = None
        if flushed is not None:
            st = target.stat()
            identity = (st.st_dev, st.st_ino)
        self._links.append((target, flushed, identity))

    def sync(self) -> None:
        """Wait until every file written or linked so far is on disk, and their folders'
        entries; raises the first error an fsync met. With links and the file system's
        flush, that flush covers the written files too (whichever is first: it, or
        their own fsyncs, which run from the moment they were written)."""
        links, self._links = self._links, []
        written, self._pending = self._pending, []
        whole: Future[None] | None = None
        own: list[Path] = []
        if links and self._whole:
            whole = file_system_flush.start_flush(links[0][0].parent)
            try:
                whole.result(timeout=HEDGE_SECONDS)
            except (FutureTimeout, OSError):
                own = [target for target, _, _ in links]  # besides, or instead
            else:
                self._drop(written)
                return
        for target, flushed, identity in links if whole is None else ():
            try:
                same = flushed is not None and flushed.result() == identity
            except OSError:
                same = False  # flushed below, where an error is the target's own
            if not same:
                own.append(target)
        pending = set(written) | {self._submit(target) for target in own}
        while pending:
            watch: set[Future[Any]] = set(pending)
            if whole is not None and not whole.done():
                watch.add(whole)
            done, _ = wait(watch, return_when=FIRST_COMPLETED)
            if whole is not None and whole.done() and whole.exception() is None:
                self._drop(pending)
                return
            for future in pending & done:
                future.result()  # the first error is raised
            pending -= done
        for folder in sorted(self._folders):
            fsync_dir(folder)

    def _submit(self, path: Path) -> Future[Identity]:
        future = self._pool.submit(_fsync, path)
        self._submitted.append(future)
        return future

    @staticmethod
    def _drop(futures: Iterable[Future[Identity]]) -> None:
        """Those fsyncs are not needed any more: the ones not started are not made."""
        for future in futures:
            future.cancel()

    def close(self) -> None:
        """Without waiting for the background threads: after :meth:`sync` nothing they
        may still do for this batch is needed, and without it the caller gave up the
        files; this batch's flushes not started are not made."""
        self._drop(self._submitted)
        self._submitted = []

    def __enter__(self) -> DurableBatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
