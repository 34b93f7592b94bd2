"""Pseudonymising a job's images into its work folder, on every CPU core for a large study.

Reading, pseudonymising and writing a 500-slice CT takes seconds and holds the GIL, so
threads do not help; worker processes do. The images are split into one contiguous part
per process; each writes its files (``00000.dcm``... by the image's place in the job, as
one process would) and makes them durable, and returns the pseudonym mappings it made.
The caller records the mappings and the state change only after every part is done, so
a crash or a failed part leaves the step to be done again, as before: nothing is recorded
for files that may be missing. Keyed pseudonyms make the files the same whichever process
wrote them.

Studies below ``PARALLEL_FROM_IMAGES``, and every study on a machine with fewer than
``MIN_CPUS_FOR_PROCESSES`` cores, are done in the calling thread: starting processes
would cost more than it saves. Measured on the 2-core development machine (one core busy
with other work) with the fast engine, bench CT slices 512x512: 100 slices 0.51 s in this
thread against 1.01 s in two processes; 500 slices 2.52 s against 2.67 s. The processes
pay off only for large studies on a machine with more idle cores. In the whole chain
(``python -m bench --only e2e``, the CT's 228-265 images not pre-made while it arrived)
the same held: 265 images in two processes 2.63 s, 228 in this thread 1.41 s. The processes are
started as :mod:`aifi_app.child_processes` says (on Linux forked by the fork server, which
has pydicom and the pseudonymiser imported; elsewhere spawned, a fresh interpreter each,
~0.5 s to import them, in parallel): forking the service's threads is unsafe.

Each file goes through the fast engine of :func:`aifi_app.pseudonymise.batch.pseudonymise_file`:
the header is read and pseudonymised, and the Pixel Data element is copied from the
source file byte for byte by the kernel, never decoded (the same bytes as decoding the
whole file and writing it again, which the tests compare).
Thread: the caller's (the worker thread); processes for the time of one call.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from aifi_app.child_processes import child_context
from aifi_app.fault_logging import log_fault
from aifi_app.pipeline.durable_batch import DurableBatch
from aifi_app.pseudonymise import BurnedInPolicy, ProfileOption, Pseudonymiser
from aifi_app.pseudonymise.batch import pseudonymise_file
from aifi_app.pseudonymise.element_memo import ElementMemo

log = logging.getLogger(__name__)

Mapping = tuple[str, str, str]
"""(kind, original, pseudonym), as a :class:`Pseudonymiser` reports them."""

PARALLEL_FROM_IMAGES = 256
"""Studies with at least this many images are pseudonymised in worker processes."""
MAX_PROCESSES = 4
MIN_CPUS_FOR_PROCESSES = 4
"""Fewer cores than this: always this thread (the service's own threads and the
pre-pseudonymiser need the others; spawning costs ~0.5 s of CPU per process)."""


def work_file(work: Path, n: int) -> Path:
    """The pseudonymised copy of a job's ``n``-th image (0-based)."""
    return work / f"{n:05d}.dcm"


def pseudonymise_items(
    secret: bytes,
    options: frozenset[ProfileOption],
    burned_in: BurnedInPolicy,
    work: Path,
    items: Sequence[tuple[int, Path]],
    batch: DurableBatch | None = None,
) -> list[Mapping]:
    """Pseudonymise each (n, source) into ``work_file(work, n)`` durably, in this thread;
    the mappings made. ``batch``: the caller's, whose :meth:`~DurableBatch.sync` makes
    the files durable (by default their own, synced before this returns)."""
    return pseudonymise_claimed(secret, options, burned_in, work, items, batch=batch)[0]


def pseudonymise_claimed(
    secret: bytes,
    options: frozenset[ProfileOption],
    burned_in: BurnedInPolicy,
    work: Path,
    items: Sequence[tuple[int, Path]],
    claim: Callable[[int], bool] = lambda n: True,
    batch: DurableBatch | None = None,
) -> tuple[list[Mapping], int]:
    """As :func:`pseudonymise_items`, asking ``claim(n)`` before each item and skipping
    those it refuses (another process makes them); the mappings made and how many items
    were made."""
    if batch is not None:
        return _pseudonymise_claimed(secret, options, burned_in, work, items, claim, batch)
    with DurableBatch() as own:
        made = _pseudonymise_claimed(secret, options, burned_in, work, items, claim, own)
        own.sync()
    return made


def _pseudonymise_claimed(
    secret: bytes,
    options: frozenset[ProfileOption],
    burned_in: BurnedInPolicy,
    work: Path,
    items: Sequence[tuple[int, Path]],
    claim: Callable[[int], bool],
    batch: DurableBatch,
) -> tuple[list[Mapping], int]:
    mappings: list[Mapping] = []
    done = 0
    pseudonymiser = Pseudonymiser(
        secret,
        options,
        on_pseudonym=lambda kind, original, pseudonym: mappings.append((kind, original, pseudonym)),
        burned_in=burned_in,
    )
    memo = ElementMemo()
    for n, path in items:
        if not claim(n):
            continue
        target = work_file(work, n)
        batch.folder(target)
        pseudonymise_file(pseudonymiser, path, target, memo=memo)
        batch.written(target)
        done += 1
    return mappings, done


def processes_for(images: int) -> int:
    """How many processes pseudonymise a study of ``images`` images (1: this thread;
    always on a machine with fewer than :data:`MIN_CPUS_FOR_PROCESSES` cores).
    On Windows always 1: spawned processes would need the service's own executable set up
    for them (a Windows service runs under pythonservice.exe)."""
    cpus = os.cpu_count() or 1
    if images < PARALLEL_FROM_IMAGES or os.name == "nt" or cpus < MIN_CPUS_FOR_PROCESSES:
        return 1
    return min(MAX_PROCESSES, cpus)


def pseudonymise_all(
    secret: bytes,
    options: frozenset[ProfileOption],
    burned_in: BurnedInPolicy,
    work: Path,
    sources: Sequence[Path],
    processes: int | None = None,
) -> list[Mapping]:
    """Pseudonymise the job's images ``sources`` into ``work`` (``work_file(work, n)``
    for the ``n``-th), durably; the mappings made, in no particular order. ``processes``
    defaults to :func:`processes_for`."""
    return pseudonymise_numbered(
        secret, options, burned_in, work, list(enumerate(sources)), processes
    )


def pseudonymise_numbered(
    secret: bytes,
    options: frozenset[ProfileOption],
    burned_in: BurnedInPolicy,
    work: Path,
    items: Sequence[tuple[int, Path]],
    processes: int | None = None,
    batch: DurableBatch | None = None,
) -> list[Mapping]:
    """Pseudonymise each (n, source) of ``items`` into ``work_file(work, n)``, durably
    (the job's images that were not pre-made; all of them by default); the mappings made,
    in no particular order. ``processes`` defaults to :func:`processes_for`; ``batch``
    (for those made in this thread): see :func:`pseudonymise_items`."""
    if not items:
        return []
    count = processes_for(len(items)) if processes is None else processes
    if count <= 1:
        return pseudonymise_items(secret, options, burned_in, work, items, batch)
    size = -(-len(items) // count)
    starts = range(0, len(items), size)
    try:
        with ProcessPoolExecutor(max_workers=len(starts), mp_context=child_context()) as pool:
            futures = [
                pool.submit(
                    pseudonymise_items,
                    secret,
                    options,
                    burned_in,
                    work,
                    list(items[start : start + size]),
                )
                for start in starts
            ]
            mappings: list[Mapping] = []
            for future in futures:
                mappings += future.result()  # the first part's failure is raised here
        return mappings
    except (BrokenProcessPool, OSError) as exc:  # a process could not start, or died
        # (memory); an error of the files themselves comes again in this thread
        log_fault(log, "pseudonymising in worker processes failed; doing it in this thread", exc)
        return pseudonymise_items(secret, options, burned_in, work, items)
