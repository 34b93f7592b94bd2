"""A job's images read in a background thread while the job waits for the disk.

Before its model runs, a job reads the header of every image in its work folder (pixel
data deferred): 500 ``dcmread`` calls for a CT, about 0.25 s of CPU. The pseudonymise
step starts that read as soon as the work folder is complete, so that it runs while the
step waits for the folder's files to reach the disk (fsyncs) and for its commits, and the
algorithm step takes the data sets already read. The reading holds the GIL only while it
parses; the step's waiting does not need it.

The data sets are used only for the very folder they were read from: the same file names,
and the folder not made again or changed since (its inode and modification time). Anything
else (the service restarted meanwhile, the job pseudonymised again, a read that failed)
gives ``None`` and the caller reads the files itself, as it did before: the same data sets
and the same errors either way. Thread: made and used by the worker thread; one reading
thread per instance.
"""

from __future__ import annotations

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
    """``read`` applied to ``paths`` (files of ``folder``) in a background thread, now."""

    def __init__(
        self, folder: Path, paths: Sequence[Path], read: Callable[[Path], Dataset]
    ) -> None:
        self.folder = folder
        self.paths = tuple(paths)
        self._stamp = folder_stamp(folder)
        self._read = read
        self._datasets: list[Dataset] = []
        self._failed = False
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aifi-read-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for path in self.paths:
                if self._cancelled.is_set():
                    self._failed = True
                    return
                self._datasets.append(self._read(path))
        except Exception:  # read again by the caller, who meets the error itself
            self._failed = True

    def cancel(self) -> None:
        """Stop after the file being read; :meth:`datasets` gives None from now on."""
        self._cancelled.set()

    def datasets(self, paths: Sequence[Path]) -> list[Dataset] | None:
        """The data sets read (waiting for the thread to finish), when ``paths`` are the
        files read and the folder is unchanged since; None otherwise."""
        self._thread.join()
        if self._failed or self._cancelled.is_set() or tuple(paths) != self.paths:
            return None
        try:
            if folder_stamp(self.folder) != self._stamp:
                return None
        except OSError:
            return None
        return self._datasets
