"""Empty files made ahead for the pre-pseudonymiser: a file it makes in a hurry (while a
study arrives, or for a job that waits) takes an inode it made at leisure.

Creating a file costs the kernel an inode allocation, and on ext4 without a journal (the
bench machine's root file system) that allocation first steps over every inode of the
block group freed in the last minutes (``recently_deleted``): ~1.2 ms of CPU a file after
the previous study's files were removed, a third of what the pre-pseudonymiser's child
spent on a CT slice (the DICOM node makes its incoming files ahead for the same reason,
:mod:`aifi_app.dicom_node.spare_files`). The child makes up to :data:`SPARE_FILES`
empty files in ``premade/spare/`` when it has nothing else to do and no study arrives
(:meth:`SpareInodes.fill`); :meth:`SpareInodes.place` renames one to the name a file is
about to be written under, which then opens it for writing (truncating: it is empty) as
it would have created it. Where none is left the file is created as before. The folder
is part of the pre-made cache, emptied at every start of the service.

Thread: one (the child's loop); another process never takes these files.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Final

SPARE_DIR: Final = "spare"
"""The pool's folder in the pre-made cache (``premade/spare``)."""
SPARE_FILES: Final = 600
"""Empty files kept: a 500-slice CT finds one for each of its slices. (An empty file is an
inode and a directory entry; no data block.)"""
FILL_CHUNK: Final = 32
"""Files made by one call of :meth:`SpareInodes.fill` at most (~40 ms on the bench
machine): the loop looks at its messages in between."""

CREATE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


class SpareInodes:
    """A pool of empty files in ``folder`` (made by this process, used by it)."""

    def __init__(self, folder: Path, keep: int = SPARE_FILES) -> None:
        self.folder = folder
        self.keep = keep
        self._ready: deque[Path] = deque()
        self._names = itertools.count()

    @property
    def ready(self) -> int:
        return len(self._ready)

    def wanted(self) -> bool:
        """True while fewer than :attr:`keep` files are ready."""
        return len(self._ready) < self.keep

    def fill(self, most: int = FILL_CHUNK, keep_going: Callable[[], bool] = lambda: True) -> int:
        """Make up to ``most`` files (while fewer than :attr:`keep` are ready and
        ``keep_going`` says yes); how many were made. A file system error (full, the
        folder not makeable) ends the call: files are then created where they are
        written, as without this pool."""
        made = 0
        while made < most and self.wanted() and keep_going():
            path = self.folder / f"{os.getpid()}-{next(self._names)}"
            try:
                os.close(os.open(path, CREATE_FLAGS, 0o600))
            except FileNotFoundError:
                try:
                    self.folder.mkdir(parents=True, exist_ok=True)
                except OSError:
                    return made
                continue
            except FileExistsError:
                continue  # left by an earlier process of this pid
            except OSError:
                return made
            self._ready.append(path)
            made += 1
        return made

    def place(self, target: Path) -> bool:
        """Rename a spare file to ``target`` (in a folder that exists, on the same file
        system; a file of that name is replaced); False when none is left, and the caller
        creates ``target`` itself."""
        while self._ready:
            path = self._ready.popleft()
            try:
                path.replace(target)
            except FileNotFoundError:
                if not target.parent.is_dir():
                    self._ready.appendleft(path)
                    return False
                continue  # removed meanwhile (the cache emptied): the next one
            except OSError:
                self._ready.appendleft(path)
                return False
            return True
        return False

    def forget(self) -> None:
        """The folder was emptied (the cache removed): none is ready any more."""
        self._ready.clear()
