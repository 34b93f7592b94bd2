"""A data set as the bytes of a DICOM file (PS3.10: preamble, file meta, data set)."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from pydicom import Dataset, dcmwrite
from pydicom.dataelem import DataElement

from aifi_app.dicom_node.spool import fsync_dir
from aifi_app.encoded_sequences import with_long_sequences_encoded


def part10_bytes(ds: Dataset) -> bytes:
    """``ds`` as a DICOM file, file meta included (``enforce_file_format``)."""
    buffer = io.BytesIO()
    dcmwrite(buffer, with_long_sequences_encoded(ds), enforce_file_format=True)
    return buffer.getvalue()


def write_part10_durably(dest: Path, ds: Dataset, *, sync: bool = True) -> None:
    """Write ``ds`` as a DICOM file to ``dest`` atomically and durably, as
    ``spool.durable_write`` writes bytes (a temporary file, fsync, rename, the folder
    flushed), but straight into the file: a large object (a 500-frame SEG) is not held in
    memory a second time as the file's bytes, and its Pixel Data goes to the file as it
    is (see :func:`large_values_buffered`). A long top-level sequence (a SEG's per-frame
    functional groups) is encoded ahead, to the same bytes
    (:mod:`aifi_app.encoded_sequences`).

    ``sync=False``: the file is complete at ``dest`` when this returns, but not yet on
    disk; the caller makes it so with :func:`make_durable` before anything records it (a
    crash before then may leave it incomplete at ``dest``, unrecorded)."""
    ds = with_long_sequences_encoded(ds)
    with replaced_file(dest, sync=sync) as fh, large_values_buffered(ds):
        dcmwrite(fh, ds, enforce_file_format=True)


@contextmanager
def replaced_file(dest: Path, *, sync: bool) -> Iterator[BinaryIO]:
    """A file to write that takes ``dest``'s place once written: a temporary file beside
    it (``.part``), flushed (with ``sync``: fsynced), renamed to ``dest`` (with ``sync``:
    the folder flushed). A write that raises leaves ``dest`` as it was."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with tmp.open("wb") as fh:
        yield fh
        fh.flush()
        if sync:
            os.fsync(fh.fileno())
    tmp.replace(dest)
    if sync:
        fsync_dir(dest.parent)


def make_durable(paths: list[Path]) -> None:
    """Flush files written by ``write_part10_durably(..., sync=False)`` and their folders."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for folder in dict.fromkeys(path.parent for path in paths):
        fsync_dir(folder)


class DurableInBackground:
    """:func:`make_durable` of some files on a thread of its own (the flush waits for the
    disk without the interpreter's lock: the caller makes the next result meanwhile);
    :meth:`wait` before anything records them."""

    def __init__(self, paths: list[Path]) -> None:
        self.finished_at = 0.0
        """``time.perf_counter()`` when they were on disk."""
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(paths,), name="aifi-result-flush", daemon=True
        )
        self._thread.start()

    def _run(self, paths: list[Path]) -> None:
        try:
            make_durable(paths)
        except BaseException as exc:  # raised again by wait()
            self._error = exc
        finally:
            self.finished_at = time.perf_counter()

    def wait(self) -> None:
        """Until the files are on disk; raises what flushing them raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error


_BUFFERED_FROM_BYTES = 1 << 20
_BUFFERABLE_VRS = frozenset({"OB", "OW", "OB or OW", "OF", "OD", "OL", "OV", "UN"})


@contextmanager
def large_values_buffered(ds: Dataset) -> Iterator[None]:
    """While writing: the top-level byte values of 1 MiB or more (Pixel Data) as buffers.

    pydicom encodes an element's value into a buffer of its own before it writes the
    element, so a 13 MB Pixel Data would be in memory three times while it is written; a
    buffered value (pydicom's ``io.BufferedIOBase`` values) is written to the file in
    chunks. ``io.BytesIO`` over the bytes shares them (no copy). Values of odd length
    are left as they are (pydicom writes a buffer's unpadded length). The values are put
    back afterwards; the written bytes are the same."""
    swapped: list[tuple[DataElement, bytes]] = []
    try:
        for element in ds.elements():
            if not isinstance(element, DataElement) or element.VR not in _BUFFERABLE_VRS:
                continue
            value = element.value
            # even only: pydicom gives a buffer's odd length in the header, then pads it
            if (
                isinstance(value, bytes)
                and len(value) >= _BUFFERED_FROM_BYTES
                and not len(value) % 2
            ):
                element.value = io.BytesIO(value)
                swapped.append((element, value))
        yield
    finally:
        for element, value in swapped:
            element.value = value
