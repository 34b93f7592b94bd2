"""A lock between the processes that record received instances, held around each commit.

The node's service and its receiver processes each record the instances they receive in
the one queue database (:class:`~aifi_app.store.receiving.GroupRecorder`). SQLite lets
one writer in at a time; a connection that finds the database locked waits in its busy
handler, which sleeps 1, 2, 5, 10 ms and longer between its tries instead of waking when
the lock is free. A commit takes a few tenths of a millisecond, so with four associations
at once a recorder that waited slept several times longer than the commit it waited
for, each time on a C-STORE's answer. Recorders therefore queue on this lock first
(``flock``: the kernel wakes the next one at once, and releases it when its holder
dies), and reach SQLite's lock when it is free, unless another writer of the service
(a job's state, an audit) holds it.

Where there is no ``flock`` (Windows, where no receiver processes run) it does nothing.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class WriterLock:
    """An exclusive lock on the file ``path`` (made if missing), for one user at a time in
    this process: the recorder takes, releases and closes it under its own commit lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> WriterLock:
        if fcntl is not None:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if fcntl is not None and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
