"""Empty files made ahead in the incoming folder: an arriving instance takes one, open.

Creating a file costs the kernel an inode allocation, and on ext4 without a journal (this
machine's root file system) that allocation first steps over every inode of the block
group freed in the last minute or more (``recently_deleted``): measured with ``perf`` on
the ``aifi-app serve`` of ``python -m bench --only ingest``, four associations, a third
of the service's CPU went to ``open(O_CREAT)`` of the instances' incoming files, about
1 ms each, after the bench had removed the previous run's files. Here a thread of its
own keeps :data:`SPARE_FILES` empty files created and open, while receiving is quiet or
on the other core (the interpreter's lock is released in the system call), and an
association takes one without a system call; when none is left it creates its file
itself, as before.

The files are ``<pid>-spare-<n>.dcm`` in the incoming folder; :meth:`SpareFiles.stop`
closes and removes those not taken, and a start after a crash removes what the incoming
folder holds (:meth:`~aifi_app.dicom_node.storage_scp.StorageNode.start`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

SPARE_FILES: Final = 32
"""How many empty files are kept ready (a burst of four associations takes ~8 ms each)."""

CREATE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


class SpareFiles:
    """A pool of empty, open files in ``folder``, refilled by a thread of its own."""

    def __init__(self, folder: Path, keep: int = SPARE_FILES) -> None:
        self.folder = folder
        self.keep = keep
        self._ready: deque[tuple[Path, int]] = deque()
        self._names = itertools.count()
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        """Start the thread that makes the files (the first ones come at once)."""
        if self.keep <= 0 or self._thread is not None:
            return
        self._stopping.clear()
        self._wanted.set()
        self._thread = threading.Thread(target=self._loop, name="aifi-spare-files", daemon=True)
        self._thread.start()

    def take(self) -> tuple[Path, int] | None:
        """An empty file and its descriptor, open for writing; None when none is ready."""
        with self._lock:
            spare = self._ready.popleft() if self._ready else None
            low = len(self._ready) <= self.keep // 2
        if low:
            self._wanted.set()
        return spare

    @property
    def ready(self) -> int:
        with self._lock:
            return len(self._ready)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping.is_set():
                return
            self._fill()

    def _fill(self) -> None:
        while not self._stopping.is_set() and self.ready < self.keep:
            path = self.folder / f"{os.getpid()}-spare-{next(self._names)}.dcm"
            try:
                fd = os.open(path, CREATE_FLAGS, 0o600)
            except OSError as exc:
                # a full disk or a missing folder: associations create their own files
                # (and answer 0xA700 when they cannot); try again when one is taken
                if not self._failing:
                    log.warning("cannot make a spare incoming file (%s)", type(exc).__name__)
                    self._failing = True
                return
            self._failing = False
            with self._lock:
                if not self._stopping.is_set():
                    self._ready.append((path, fd))
                    continue
            _remove(path, fd)  # stop() ran meanwhile

    def stop(self) -> None:
        """Stop making files; close and remove those not taken."""
        self._stopping.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        with self._lock:
            left = list(self._ready)
            self._ready.clear()
        for path, fd in left:
            _remove(path, fd)


def is_spare(path: Path) -> bool:
    """Whether ``path`` is one of the empty files made ahead (not an instance's data)."""
    return "-spare-" in path.name


def _remove(path: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
    with contextlib.suppress(OSError):
        path.unlink()
