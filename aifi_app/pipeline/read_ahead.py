"""A job's images read in a background thread while the job is still pseudonymised.

Before its model runs, a job reads the header of every image in its work folder (pixel
data deferred): 500 ``dcmread`` calls for a CT, 0.25 s of CPU on a quiet machine and
0.5-0.75 s on the loaded two-core one, all of it between the pseudonymise stage and the
model (a fifth of that since with :func:`aifi_app.pipeline.image_reader.read_image`).
The pseudonymise step hands each file to this reader as soon as the file is in the work
folder (the images made while the study arrived are linked first, and read while the
step pseudonymises the rest, the pre-pseudonymiser's process taking its share on the
other core), and the algorithm step takes the data sets already read.

The data sets are used only for the very folder they were read from: the same files, and
the folder not made again nor changed since the step finished it (its inode, modification
and change times). Anything else (the service restarted meanwhile, the job pseudonymised
again, a read that failed, a step that did not finish) gives ``None`` and the caller reads
the files itself, as it did before: the same data sets and the same errors either way.
Thread: :meth:`ImagesReadAhead.add`, :meth:`~ImagesReadAhead.finish`,
:meth:`~ImagesReadAhead.cancel` and :meth:`~ImagesReadAhead.datasets` from one thread
(the worker's); one reading thread per instance.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from pydicom import Dataset


def folder_stamp(folder: Path) -> tuple[int, int, int, int]:
    """What changes when ``folder`` is made again or a file is added to or removed from it
    (to the file system's timestamp granularity, a few ms on ext4: the processor also
    drops what it read ahead whenever it makes a job's folder again)."""
    st = folder.stat()
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


class ImagesReadAhead:
    """``read`` applied in a background thread to each file of ``folder`` given by
    :meth:`add` (in that order), then to those :meth:`finish` names besides."""

    def __init__(self, folder: Path, read: Callable[[Path], Dataset]) -> None:
        self.folder = folder
        self._read = read
        self._queue: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._added: set[Path] = set()
        self._read_sets: dict[Path, Dataset] = {}
        self._paths: tuple[Path, ...] | None = None
        self._stamp: tuple[int, int, int, int] | None = None
        self._failed = False
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aifi-read-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (path := self._queue.get()) is not None:
            if self._cancelled.is_set():
                return
            try:
                self._read_sets[path] = self._read(path)
            except Exception:  # read again by the caller, who meets the error itself
                self._failed = True
                return

    def add(self, path: Path) -> None:
        """``path`` is written and will not change: read it."""
        if path not in self._added:
            self._added.add(path)
            self._queue.put(path)

    def finish(self, paths: Sequence[Path]) -> None:
        """The folder is complete and holds ``paths``: read those not added yet."""
        self._paths = tuple(paths)
        self._stamp = folder_stamp(self.folder)
        for path in paths:
            self.add(path)
        self._queue.put(None)

    def cancel(self) -> None:
        """Stop after the file being read; :meth:`datasets` gives None from now on."""
        self._cancelled.set()
        self._queue.put(None)

    def datasets(self, paths: Sequence[Path]) -> list[Dataset] | None:
        """The data sets of ``paths`` (waiting for the thread to read them all), when they
        are the files :meth:`finish` named and the folder is unchanged since; else None."""
        if self._paths is None or self._cancelled.is_set():
            return None
        self._thread.join()
        if self._failed or tuple(paths) != self._paths:
            return None
        try:
            if folder_stamp(self.folder) != self._stamp:
                return None
        except OSError:
            return None
        return [self._read_sets[p] for p in paths]
