"""Empty files made ahead in the incoming folder: an arriving instance takes one.

Creating a file costs the kernel an inode allocation, and on ext4 without a journal (this
machine's root file system) that allocation first steps over every inode of the block
group freed in the last minute or more (``recently_deleted``): measured with ``perf`` on
the ``aifi-app serve`` of ``python -m bench --only ingest``, four associations, a third
of the service's CPU went to ``open(O_CREAT)`` of the instances' incoming files, about
1 ms each, after the bench had removed the previous run's files. Here a thread of its
own makes up to :data:`SPARE_FILES` empty files while the node receives nothing (so a
CT's slices find theirs made), and only :data:`SPARE_FLOOR` while it receives; an
association opens one (no inode to allocate) and, when none is left, creates its file
itself, as before. The thread runs at a lower priority (Linux: its own nice value).

The files are ``<pid>-spare-<n>.dcm`` in the incoming folder. :meth:`SpareFiles.stop`
leaves them there and the next start takes them back (:meth:`SpareFiles.adopt`, empty
ones only: a file an association had begun to write is removed, as every other leftover
of the incoming folder is, :meth:`~aifi_app.dicom_node.storage_scp.StorageNode.start`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Final

from aifi_app.dicom_node.spool import StrPath

log = logging.getLogger(__name__)

SPARE_FILES: Final = 600
"""Empty files kept ready while the node is quiet: a 500-slice CT finds them all made.
(An empty file is an inode and a directory entry; no data block.)"""
SPARE_FLOOR: Final = 16
"""Files kept ready even while the node receives (made then, on the thread's own core)."""
QUIET_SECONDS: Final = 0.5
"""The node counts as quiet once no association has begun or ended for this long."""
_POLL_SECONDS: Final = 0.25
_LOWER_PRIORITY: Final = 10

CREATE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
OPEN_FLAGS: Final = os.O_WRONLY | getattr(os, "O_BINARY", 0)


def is_spare(path: StrPath) -> bool:
    """Whether ``path`` is one of the empty files made ahead (not an instance's data)."""
    return "-spare-" in os.path.basename(path)


class SpareFiles:
    """A pool of empty files in ``folder``, made by a thread of its own.

    ``quiet_seconds``: how long the node has received nothing (0 while it receives).
    """

    def __init__(
        self,
        folder: Path,
        *,
        keep: int = SPARE_FILES,
        floor: int = SPARE_FLOOR,
        quiet_seconds: Callable[[], float] = lambda: float("inf"),
    ) -> None:
        self.folder = folder
        self.keep = keep
        self.floor = min(floor, keep)
        self._quiet_seconds = quiet_seconds
        self._ready: deque[str] = deque()
        """The files' paths as strings (one a received instance: see :meth:`take`)."""
        self._names = itertools.count()
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def adopt(self) -> list[Path]:
        """Take back the empty spare files an earlier run left (call before :meth:`start`);
        returns the folder's other files (for the caller to remove)."""
        others = []
        for path in sorted(self.folder.iterdir()):
            try:
                st = path.stat()
                empty = is_spare(path) and st.st_size == 0 and st.st_nlink == 1
            except OSError:
                continue
            if empty and len(self._ready) < self.keep:
                self._ready.append(os.fspath(path))
            else:
                others.append(path)
        return others

    def start(self) -> None:
        """Start the thread that makes the files."""
        if self.keep <= 0 or self._thread is not None:
            return
        self._stopping.clear()
        self._wanted.set()
        self._thread = threading.Thread(target=self._loop, name="aifi-spare-files", daemon=True)
        self._thread.start()

    def take(self) -> tuple[str, int] | None:
        """An empty file's path and its descriptor, open for writing; None when none is
        ready. The path is a plain string, as the receiving path passes it on
        (:data:`aifi_app.dicom_node.spool.StrPath`)."""
        while True:
            with self._lock:
                path = self._ready.popleft() if self._ready else None
                low = len(self._ready) < self.floor
            if low:
                self._wanted.set()
            if path is None:
                return None
            try:
                return path, os.open(path, OPEN_FLAGS)
            except OSError:
                continue  # removed meanwhile (by hand): the next one

    @property
    def ready(self) -> int:
        with self._lock:
            return len(self._ready)

    def _loop(self) -> None:
        if hasattr(os, "setpriority"):  # Linux: a thread has its own nice value
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _LOWER_PRIORITY)
        while not self._stopping.is_set():
            self._wanted.wait(_POLL_SECONDS)
            self._wanted.clear()
            if self._stopping.is_set():
                return
            self._fill()

    def _wanted_now(self) -> bool:
        ready = self.ready
        if ready < self.floor:
            return True
        return ready < self.keep and self._quiet_seconds() >= QUIET_SECONDS

    def _fill(self) -> None:
        prefix = os.path.join(self.folder, f"{os.getpid()}-spare-")
        while not self._stopping.is_set() and self._wanted_now():
            path = f"{prefix}{next(self._names)}.dcm"
            try:
                os.close(os.open(path, CREATE_FLAGS, 0o600))
            except FileExistsError:
                continue  # an earlier run's file of that name (made by a process of our pid)
            except OSError as exc:
                # a full disk or a missing folder: associations create their own files
                # (and answer 0xA700 when they cannot); tried again a little later
                if not self._failing:
                    log.warning("cannot make a spare incoming file (%s)", type(exc).__name__)
                    self._failing = True
                time.sleep(_POLL_SECONDS)
                return
            self._failing = False
            with self._lock:
                self._ready.append(path)

    def stop(self, wait_seconds: float = 5.0) -> None:
        """Stop making files (those made stay for the next start, :meth:`adopt`); waits up
        to ``wait_seconds`` for the thread (a process about to end need not wait)."""
        self._stopping.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(wait_seconds)
            self._thread = None
        with self._lock:
            self._ready.clear()
