"""Pseudonymising a study while it is still arriving, so that its job finds the work done.

A loop (:class:`PreLoop`) reads the instance rows of studies in ``receiving`` that it has
not seen yet and takes them in batches of :data:`BATCH`. For each series it evaluates
the routes' rules on the series' first instance (as the worker will on completion) and
pre-makes the instance for the pseudonymisation options of every algorithm the study
will probably go to (see :mod:`aifi_app.pipeline.premade` for the cache and its rules).

The loop runs in one child process (forked by the fork server on Linux, spawned
elsewhere: :mod:`aifi_app.child_processes`), started with the service, while a study
arrives at the lowest CPU priority (``nice 19``, ``SCHED_IDLE`` on Linux, in a thread of
its own: :mod:`aifi_app.pipeline.low_priority_child`; its work for a job that waits at
the child's own priority, :func:`run_child`), with its own read-only connection to the
queue database: it
writes nothing to the queue, and the service process does nothing for it while a study
arrives. Measured on the 2-core development machine under load (CT, 500 slices): the
same loop as a thread of the service, even with the pseudonymising itself in a child,
slowed the DICOM node's receiving from ~4 s to 7-11 s and left gaps of 0.1-0.5 s between
instances, enough for a 0.1 s idle timer to split the study; pydicom's work and the
loop's own holds the GIL the receive threads need. The service only tells the child what
to pre-make (:class:`PlanConfig`, when the routes, packages, the setting or the disk
guard change; a check every :data:`CONFIG_SECONDS`), wakes it for a new study, and at
job time reads what it made (:class:`~aifi_app.pipeline.premade.PremadeIndex`). On
Windows (a service under pythonservice.exe cannot spawn the same way) and in tests the
loop runs as a thread of the service instead. ``[completion]
pseudonymise_while_receiving = false`` turns it off.

The child goes on with a study after it completed, until its jobs are pseudonymised
(:class:`PreLoop` ``goes_on``): it takes each instance before it makes it
(:func:`premade.take`, while the study arrives too), from the first not made, while the
job selects and links its images on the other core; the job takes the images left from
the last and makes those it gets, and links those the child took once the child's index
says they are made (see ``JobProcessor._pseudonymise_rest``). Nothing is made twice, the
job waits for no batch in flight, and the child's interpreter is warm. A job with many
images left also sends the child a :class:`HelpRequest` (the images of options the child
was not making for the study). Once no study arrives, what the child makes for a job goes
to the disk at once.

Where the loop runs as a thread of the service (Windows), it would take the job's
interpreter: it stops a study's instances when the study leaves ``receiving`` (a batch in
flight stops after the file it is making), and a job that starts pseudonymising calls
:meth:`PrePseudonymiser.settle` first: it waits (a short while) for that batch, then makes
every image not made.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TypeVar

from pydicom import Dataset
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from aifi_app.algorithms.input_rules import HEADER_TAGS
from aifi_app.algorithms.package import REMOTE_SPECS, AlgorithmPackage
from aifi_app.child_processes import child_context, child_process, service_alive
from aifi_app.config.settings import Route, Settings
from aifi_app.failpoints import failpoint
from aifi_app.fault_logging import log_fault
from aifi_app.pipeline import (
    low_priority_child,
    premade,
    routing,
    seg_ahead,
    spare_inodes,
    sr_in_child,
)
from aifi_app.pipeline.background_loop import BackgroundLoop
from aifi_app.pipeline.deferred_writeback import DeferredWriteback, start_writeback
from aifi_app.pipeline.image_reader import read_header
from aifi_app.pipeline.premade import PremadeIndex, SourceInstance
from aifi_app.pipeline.spare_inodes import SpareInodes
from aifi_app.pseudonymise import BurnedInPolicy, ProfileOption
from aifi_app.pseudonymise.batch import pseudonymise_file
from aifi_app.pseudonymise.element_memo import ElementMemo
from aifi_app.pseudonymise.pseudonymiser import Pseudonymiser
from aifi_app.store.database import Database
from aifi_app.store.disk_space import DiskFloor, read_disk

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH = 24
"""Instances per batch: small, so that a job waits little for the batch in flight (about
0.1 s of work on an idle core), large enough to keep the loop's own work rare."""
JOB_BATCH = 8
"""Instances per batch of a study that no longer arrives (the loop goes on with it for its
job): the job links what a batch made once its index is written, so a batch of 24 kept
it waiting for the last of them (~0.07 s on a core of the bench machine)."""
POLL_SECONDS = 0.2
"""How often the loop looks for new instances while a study is receiving (it is woken
when a new study starts)."""
IDLE_SECONDS = 2.0
CONFIG_SECONDS = 2.0
"""How often the service checks whether what to pre-make changed."""
SETTLE_SECONDS = 0.2
"""The longest a job waits for a batch of its study being made (about one batch on an
idle core; a batch the child, starved of CPU, has not finished by then is done by the
job itself, which costs less than waiting)."""
CHILD_START_WAIT_SECONDS = 30.0
"""The longest a job waits for the child's start (the fork server's imports, ~1 s, longer
on a busy machine) before it does without the child."""
RECHECK_SECONDS = 0.05
"""A batch in flight asks the queue whether its study still receives at most this often,
not before every file (~4 ms apart): one read of the queue per file is work the child
need not do while the node writes to it."""
WARM_UP_IDLE = 5.0
"""The child loads the SEG builder (:func:`seg_ahead.warm_up`, ~0.2 s of CPU it cannot
break off) only after this long without work or message, so that it does not keep a
job's help request waiting."""
NO_FLOOR = DiskFloor()
RESERVE_BYTES = 1 << 30
"""Free space kept above the disk floor before anything is pre-made (1 GiB): the cache
is an optimisation and must never take the space received instances need."""
WANTED = (
    "(s.state IN ('receiving', 'complete') OR EXISTS (SELECT 1 FROM jobs j"
    " WHERE j.study_id = s.id AND j.state = 'queued'))"
)
"""A study whose instances a loop that goes on past ``receiving`` still makes (SQL on
``studies s``): arriving, complete, or with a job that waits to be pseudonymised."""
RECEIVING = "s.state = 'receiving'"


@dataclass(frozen=True)
class _Queries:
    """The loop's reads of the queue, for studies ``making`` (SQL on ``studies s``)."""

    making: str

    @property
    def rows(self) -> str:
        return (
            "SELECT i.id, i.study_id, i.series_uid, i.path, i.received_at"  # noqa: S608
            " FROM instances i JOIN studies s ON s.id = i.study_id"
            f" WHERE i.id > ? AND {self.making} AND s.kind != 'record' ORDER BY i.id"
        )

    @property
    def study(self) -> str:
        return f"SELECT 1 FROM studies s WHERE s.id = ? AND {self.making}"  # noqa: S608


SELECTION_TAGS = [*HEADER_TAGS, "InstanceNumber", "ImagePositionPatient"]
"""The tags a job's image selection reads (kept with the pre-made files per instance)."""
SELECTION_TAG_NUMBERS = frozenset(int(Tag(keyword)) for keyword in SELECTION_TAGS)


def study_arriving(db: premade.Reader) -> bool:
    """True while any study is receiving (until its completion timer ends it)."""
    return bool(db.query("SELECT 1 FROM studies WHERE state = 'receiving' LIMIT 1"))


@dataclass(frozen=True)
class PlanConfig:
    """What the loop needs to decide what to pre-make (picklable, sent to the child)."""

    active: bool
    """False when switched off or the disk guard refuses new data: nothing is made."""
    routes: tuple[Route, ...]
    packages: tuple[tuple[str, tuple[str, ...], str], ...]
    """(algorithm id, pseudonymisation options, burned-in policy) of the enabled packages."""
    floor: DiskFloor = NO_FLOOR
    """The data volume's free-space floor; nothing is made within :data:`RESERVE_BYTES`
    of it, so that the cache never makes the node refuse an instance."""
    builds_segs: bool = False
    """An enabled package makes a SEG on a local runner: the child then loads what it
    builds SEGs ahead with once it has nothing else to do (:func:`seg_ahead.warm_up`)."""


def plan_config(
    settings: Settings,
    packages: dict[str, AlgorithmPackage],
    disk_short: str | None,
    floor: DiskFloor = NO_FLOOR,
) -> PlanConfig:
    return PlanConfig(
        floor=floor,
        builds_segs=any(
            "seg" in p.result_objects and not isinstance(p.runner, REMOTE_SPECS)
            for p in packages.values()
        ),
        active=settings.completion.pseudonymise_while_receiving and disk_short is None,
        routes=tuple(settings.routes),
        packages=tuple(
            (
                algorithm_id,
                tuple(p.pseudonymisation_options),
                p.burned_in_annotation.value,
            )
            for algorithm_id, p in sorted(packages.items())
        ),
    )


class ReadOnlyDb:
    """A read-only connection to the queue database (the child's own)."""

    def __init__(self, path: Path) -> None:
        # used by the child's two threads, one at a time (the one waits while the other
        # runs: :class:`~aifi_app.pipeline.low_priority_child.LowPriorityThread`)
        self._conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()


@dataclass(frozen=True)
class Plan:
    """One set of pseudonymisation options an instance is pre-made for."""

    key: str
    options: frozenset[ProfileOption]
    burned_in: BurnedInPolicy


@dataclass(frozen=True)
class HelpRequest:
    """A job asks the loop to make some of its instances now (picklable, sent to the
    child): ``items`` (instance id, source path under the data folder, received_at) in
    order; the loop takes each for ``key`` before making it (:func:`premade.take`),
    skips those taken (by the job, or by the loop itself earlier), then writes the index
    file named ``request``."""

    study_id: int
    request: str
    key: str
    options: frozenset[ProfileOption]
    burned_in: BurnedInPolicy
    items: tuple[tuple[int, str, float], ...]


@dataclass(frozen=True)
class Made:
    instance_id: int
    outcome: str
    mappings: list[tuple[str, str, str]]
    size: int


def make_files(
    secret: bytes,
    options: frozenset[ProfileOption],
    burned_in: BurnedInPolicy,
    items: Sequence[tuple[int, str, str]],
    keep_going: Callable[[], bool] = lambda: True,
    memo: ElementMemo | None = None,
    written: Callable[[Path, int], None] | None = None,
    claim: Callable[[int], bool] | None = None,
    spares: SpareInodes | None = None,
    taken: list[int] | None = None,
) -> list[Made]:
    """Pseudonymise each (instance id, source, target) into ``target`` (written under a
    temporary name, then renamed). A refused or failed instance gets no file. Runs in the
    child process (or this thread). ``keep_going`` is asked before each file: once it
    says no (the study completed; its job takes the rest), the files made so far are
    returned, the others are not made. ``memo``: the loop's element memo (the instances
    of a series share most of their header; see
    :mod:`aifi_app.pseudonymise.element_memo`). ``claim(instance id)``, when given, is
    asked after ``keep_going``: an instance it refuses (a job took it) is skipped, with
    no entry in the result (``taken`` gets its id). ``spares``: empty files made ahead,
    one taken for each file (:mod:`aifi_app.pipeline.spare_inodes`; none: each file is
    created).

    The files are not flushed here. ``written(path, size)`` is told of each file made;
    by default (None) it is handed to the kernel's writeback at once
    (:func:`~aifi_app.pipeline.deferred_writeback.start_writeback`, without waiting), so
    that by the time the job flushes the files it takes (before it records them) there
    is little left to write; while a study arrives the loop defers that instead
    (:class:`~aifi_app.pipeline.deferred_writeback.DeferredWriteback`: the node's own
    flushes come first). An fsync per file here would make this process wait for the
    disk with the DICOM node's own fsyncs. The cache is emptied at every start, so a
    file torn by a power cut is never used."""
    if written is None:
        written = _write_back_now
    made: list[Made] = []
    sink: list[list[tuple[str, str, str]]] = [[]]  # the current instance's mappings
    pseudonymiser = Pseudonymiser(
        secret,
        options,
        on_pseudonym=lambda k, o, p: sink[0].append((k, o, p)),
        burned_in=burned_in,
    )
    for instance_id, source, target in items:
        if not keep_going():
            break
        if claim is not None and not claim(instance_id):
            if taken is not None:
                taken.append(instance_id)
            continue
        sink[0] = []
        final = Path(target)
        temporary = final.with_suffix(".tmp")
        temporary.parent.mkdir(parents=True, exist_ok=True)
        if spares is not None:
            spares.place(temporary)  # its inode made ahead (else created by the write)
        try:
            pseudonymise_file(pseudonymiser, Path(source), temporary, memo=memo)
        except Exception:
            # refused (burned-in text), unreadable, not DICOM: no file; the job's own
            # step meets the same and reports it
            temporary.unlink(missing_ok=True)
            made.append(Made(instance_id, premade.REFUSED, [], 0))
            continue
        temporary.replace(final)
        size = final.stat().st_size
        written(final, size)
        made.append(Made(instance_id, premade.MADE, sink[0], size))
    return made


def _write_back_now(path: Path, size: int) -> None:
    start_writeback(path)


def selection_header(path: str) -> Dataset | None:
    """The selection tags of the file (None where it cannot be read), as
    ``dcmread(stop_before_pixels=True, specific_tags=SELECTION_TAGS)`` reads them, by the
    pipeline's own header reader (:func:`~aifi_app.pipeline.image_reader.read_header`:
    0.2 ms a received CT slice against ~1 ms, in the child while the study arrives)."""
    try:
        return read_header(Path(path), SELECTION_TAG_NUMBERS)
    except Exception:
        return None


_JSON_ELEMENTS: dict[tuple[RawDataElement, RawDataElement | None], dict[str, Any]] = {}
"""Selection elements as DICOM JSON, by the raw entry read (its bytes and place in the
file, shared between files by :mod:`~aifi_app.pipeline.image_reader`) and the data set's
Specific Character Set entry."""
_JSON_ELEMENTS_MAX = 2_000
"""Entries kept at most (emptied when full; the child keeps them across studies): see
:data:`aifi_app.pipeline.image_reader.MEMO_ENTRIES`."""
_CHARSET = Tag("SpecificCharacterSet")


def header_json(header: Dataset) -> dict[str, Any]:
    """``header.to_json_dict()`` for a header read by
    :func:`~aifi_app.pipeline.image_reader.read_header`, each element's JSON made once
    per distinct raw entry (the instances of a series share most of their selection
    tags: converting and writing them as JSON again for each instance was a fifth of the
    loop's CPU a CT slice). The JSON values are shared between headers: read only."""
    charset = header.get_item(_CHARSET, keep_deferred=True) if _CHARSET in header else None
    charset_raw = charset if isinstance(charset, RawDataElement) else None
    found: dict[str, Any] = {}
    for tag in header.keys():  # noqa: SIM118 (iterating a Dataset gives its elements)
        raw = header.get_item(tag, keep_deferred=True)
        if (
            not isinstance(raw, RawDataElement)
            or raw.value is None
            or (charset is not None and charset_raw is None)
        ):
            found[f"{tag:08X}"] = header[tag].to_json_dict(None, 1024)
            continue
        key = (raw, charset_raw)
        element = _JSON_ELEMENTS.get(key)
        if element is None:
            if len(_JSON_ELEMENTS) >= _JSON_ELEMENTS_MAX:
                _JSON_ELEMENTS.clear()
            element = _JSON_ELEMENTS[key] = header[tag].to_json_dict(None, 1024)
        found[f"{tag:08X}"] = element
    return found


class PreLoop:
    """One pass at a time of the pre-pseudonymising work (in the child, or a thread)."""

    def __init__(
        self,
        db: premade.Reader,
        data_dir: Path,
        secret: bytes,
        config: Callable[[], PlanConfig],
        *,
        goes_on: bool = False,
        spares: SpareInodes | None = None,
        start_writeback: Callable[[Path], None] = start_writeback,
    ) -> None:
        """``goes_on``: the loop takes (:func:`premade.take`) each instance before it
        makes it and goes on with a study's instances after the study completed, until
        its jobs are pseudonymised (the child process: a job that starts meanwhile
        takes the images it makes itself, so the two meet, nothing is made twice, and
        the other core works while the job selects and links its images). Without it
        (a thread of the service: it would take the job's interpreter) the loop stops
        a study's instances when the study completes, and the job makes the rest.
        ``spares``: empty files the loop makes when it has nothing to do and no study
        arrives (:meth:`make_spares`), taken by the files it makes (the child process).
        ``start_writeback``: hands a made file to the disk's writeback (by default in
        this thread; the child's :class:`WritebackThread` does it in a thread of its own,
        so that the loop goes on making files meanwhile)."""
        self.goes_on = goes_on
        self.spares = spares
        self.db = db
        self.data_dir = data_dir
        self._secret = secret
        self._config = config
        self._plans: dict[tuple[int, str], list[Plan]] = {}
        self._skip_studies: dict[int, bool] = {}
        self._made_studies: set[int] = set()
        self.receiving = False
        self._seen = 0
        """The newest instance row read."""
        self._pending: list[tuple[SourceInstance, str]] = []
        self._memo = ElementMemo()
        self._receiving_checked: dict[int, tuple[float, bool]] = {}
        self._wanted_checked: dict[int, tuple[float, bool]] = {}
        """Kept from batch to batch (a series arrives over many), bounded in size."""
        self.writeback = DeferredWriteback(start=start_writeback)
        """The files made while studies arrive, not yet handed to the disk's writeback."""
        self._found_nothing = False
        """The previous pass found no new instance either."""
        self._cut_batches = itertools.count(1)

    def idle_wait(self) -> float:
        return POLL_SECONDS if self.receiving else IDLE_SECONDS

    def run_once(self, stop: Callable[[], bool] | None = None) -> bool:
        """One pass; True when it made a batch. ``stop``: asked before each file; once it
        says yes the batch ends there, its index is written for the files made, and the
        rest wait for the next pass (the child's passes while a study arrives run at the
        lowest priority: one whose study completes meanwhile stops, so that the next
        pass makes the rest at the child's own priority for the job that comes). The files
        made are written to disk once the node pauses (see
        :mod:`aifi_app.pipeline.deferred_writeback`): when no study is receiving, or when
        two passes in a row (:data:`POLL_SECONDS` apart) found no new instance."""
        self.clean()
        config = self._config()
        if not config.active or not self._room(config.floor):
            self.receiving = False
            self.writeback.release()
            return False
        batch = self._next_batch()
        if not batch:
            if not self.receiving or self._found_nothing:
                self.writeback.release()
            self._found_nothing = True
            return False
        self._found_nothing = False
        self.make(batch, stop)
        return True

    def make_spares(self) -> bool:
        """Make some of the empty files the loop's files take (:data:`spare_inodes.FILL_CHUNK`
        at most, when it has them, found no work on its last pass, no study arrives and
        there is room); True when more are wanted (the caller comes back at once)."""
        spares = self.spares
        if spares is None or not spares.wanted() or self.receiving or self._pending:
            return False
        config = self._config()
        try:
            if not config.active or not self._room(config.floor) or study_arriving(self.db):
                return False
        except sqlite3.Error:  # the queue busy or gone: later, or never
            return False
        return spares.fill() > 0 and spares.wanted()

    def _room(self, floor: DiskFloor) -> bool:
        """True when the data volume has :data:`RESERVE_BYTES` to spare above the floor."""
        try:
            reading = read_disk(self.data_dir)
        except OSError:
            return False
        return reading.free_bytes >= floor.floor_bytes(reading.total_bytes) + RESERVE_BYTES

    def clean(self) -> None:
        """Remove the pre-made files no job will take any more (and forget the studies)."""
        root = self.data_dir / premade.PREMADE_DIR
        on_disk = (
            {int(p.name) for p in root.iterdir() if p.name.isdigit()} if root.is_dir() else set()
        )
        for study_id in premade.removable_studies(self.db, on_disk | self._made_studies):
            premade.remove_study(self.data_dir, study_id)
            self._made_studies.discard(study_id)
        done = [s for s in self._skip_studies if not self.db.query(self._making.study, (s,))]
        for study_id in done:
            self._skip_studies.pop(study_id, None)
            self._plans = {k: v for k, v in self._plans.items() if k[0] != study_id}

    def _next_batch(self) -> list[tuple[SourceInstance, str]]:
        """Up to :data:`BATCH` instances of one receiving study not handled yet. Only rows
        newer than those seen are read. A resent instance (same row, a new copy) is not
        made again: the job pseudonymises it."""
        rows = self.db.query(self._making.rows, (self._seen,))
        for r in rows:
            self._seen = max(self._seen, int(r["id"]))
            self._pending.append(
                (
                    SourceInstance(
                        int(r["id"]), int(r["study_id"]), Path(r["path"]), float(r["received_at"])
                    ),
                    str(r["series_uid"]),
                )
            )
        while self._pending:
            study_id = self._pending[0][0].study_id
            if self.db.query(self._making.study, (study_id,)):
                break
            self._pending = [p for p in self._pending if p[0].study_id != study_id]
        self.receiving = bool(self._pending) or study_arriving(self.db)
        batch: list[tuple[SourceInstance, str]] = []
        size = BATCH
        if (
            self._pending
            and self.goes_on
            and not self._still_receiving(self._pending[0][0].study_id)
        ):
            size = min(BATCH, JOB_BATCH)  # its job waits for this batch's index
        for item in self._pending:
            if item[0].study_id != self._pending[0][0].study_id or len(batch) == size:
                break  # one study per batch: a job's settle waits for it
            batch.append(item)
        self._pending = self._pending[len(batch) :]
        return batch

    def plans(self, study_id: int, series_uid: str, header: Dataset | None) -> list[Plan]:
        """The option sets to pre-make a series' instances for (cached per series)."""
        cached = self._plans.get((study_id, series_uid))
        if cached is not None:
            return cached
        plans: list[Plan] = []
        if not self._skip_study(study_id) and header is not None:
            config = self._config()
            packages = {a: (options, burned_in) for a, options, burned_in in config.packages}
            by_key: dict[str, Plan] = {}
            for decision in routing.evaluate(config.routes, [header]):
                package = packages.get(decision.route.algorithm) if decision.matched else None
                if package is None:
                    continue
                options = frozenset(ProfileOption[name.upper()] for name in package[0])
                burned_in = BurnedInPolicy(package[1])
                key = premade.options_key(self._secret, options, burned_in)
                by_key[key] = Plan(key, options, burned_in)
            plans = list(by_key.values())
        self._plans[(study_id, series_uid)] = plans
        return plans

    def help(self, request: HelpRequest) -> None:
        """Make the instances of ``request`` that the job has not claimed, from the first,
        until one is claimed by the job; then write the request's index file (also when
        nothing was made: the job waits for it)."""
        study_id = request.study_id
        self.writeback.release()  # a job waits: the disk now, for these first
        busy = premade.busy_file(self.data_dir, study_id)
        busy.parent.mkdir(parents=True, exist_ok=True)
        busy.touch()
        self._made_studies.add(study_id)
        config = self._config()
        room = config.active and self._room(config.floor)  # else: nothing, the job makes all
        key = request.key
        try:
            made = make_files(
                self._secret,
                request.options,
                request.burned_in,
                [
                    (
                        instance_id,
                        str(self.data_dir / path),
                        str(premade.premade_file(self.data_dir, study_id, key, instance_id)),
                    )
                    for instance_id, path, _ in request.items
                ],
                keep_going=lambda: room,
                memo=self._memo,
                spares=self.spares,
                claim=lambda instance_id: self._take(study_id, key, instance_id),
            )
            received = {instance_id: at for instance_id, _, at in request.items}
            premade.write_index(
                self.data_dir,
                study_id,
                [
                    {
                        "id": m.instance_id,
                        "received_at": received[m.instance_id],
                        "header": None,
                        "made": {
                            request.key: {
                                "outcome": m.outcome,
                                "size": m.size,
                                "mappings": m.mappings,
                            }
                        },
                    }
                    for m in made
                ],
                name=request.request,
            )
        finally:
            busy.unlink(missing_ok=True)

    def _take(self, study_id: int, key: str, instance_id: int) -> bool:
        """Take the instance for making it for ``key``; False when a job has it (or this
        loop took it earlier: made already, or being made by a batch)."""
        return premade.take(self.data_dir, study_id, key, instance_id, premade.PRE_OWNER) is None

    @property
    def _making(self) -> _Queries:
        """The reads of a study whose instances this loop makes."""
        return _Queries(WANTED if self.goes_on else RECEIVING)

    def _still_wanted(self, study_id: int) -> bool:
        """Whether to go on making the study's instances (read at most
        :data:`RECHECK_SECONDS` ago): while it receives, and with ``goes_on`` also while
        it is complete or a job of it waits to be pseudonymised."""
        if not self.goes_on:
            return self._still_receiving(study_id)
        checked = self._wanted_checked.get(study_id)
        if checked is not None and time.monotonic() - checked[0] < RECHECK_SECONDS:
            return checked[1]
        wanted = bool(self.db.query(_Queries(WANTED).study, (study_id,)))
        self._wanted_checked[study_id] = (time.monotonic(), wanted)
        return wanted

    def _write_back_now(self, path: Path, size: int) -> None:
        """To the disk at once (after whatever waits: none, as it was released)."""
        self.writeback.add(path, size)
        self.writeback.release()

    def _defers_writes(self, study_id: int) -> bool:
        """Whether the files made for ``study_id`` now wait for the node to pause before
        they go to the disk: while it receives; with ``goes_on`` (a completed study's
        instances made for its job) also while another study receives, whose node's
        flushes come first (its job flushes what it takes itself)."""
        if self._still_receiving(study_id):
            return True
        return self.goes_on and study_arriving(self.db)

    def _still_receiving(self, study_id: int) -> bool:
        """True while ``study_id`` is receiving (as read at most :data:`RECHECK_SECONDS`
        ago): once it completes, its job waits for the batch in flight
        (:meth:`PrePseudonymiser.settle`), so the batch stops at the file being made
        instead of finishing (up to :data:`BATCH` files, ~0.1 s on an idle core and
        several times that on a busy one); the job makes the rest."""
        checked = self._receiving_checked.get(study_id)
        if checked is not None and time.monotonic() - checked[0] < RECHECK_SECONDS:
            return checked[1]
        receiving = bool(
            self.db.query("SELECT 1 FROM studies WHERE id = ? AND state = 'receiving'", (study_id,))
        )
        self._receiving_checked[study_id] = (time.monotonic(), receiving)
        return receiving

    def _skip_study(self, study_id: int) -> bool:
        """True for a study that is not routed (objects returned into a pseudonymised study)."""
        skip = self._skip_studies.get(study_id)
        if skip is None:
            row = self.db.query(
                "SELECT 1 FROM studies s JOIN pseudonyms p ON p.pseudonym = s.study_uid"
                " WHERE s.id = ?",
                (study_id,),
            )
            skip = bool(row)
            self._skip_studies[study_id] = skip
        return skip

    def make(
        self, batch: Sequence[tuple[SourceInstance, str]], stop: Callable[[], bool] | None = None
    ) -> None:
        """Pre-make one batch (one study's instances) and write its index file."""
        study_id = batch[0][0].study_id
        busy = premade.busy_file(self.data_dir, study_id)
        busy.parent.mkdir(parents=True, exist_ok=True)
        busy.touch()
        self._made_studies.add(study_id)
        try:
            self._make(batch, stop)
        finally:
            busy.unlink(missing_ok=True)
        if not self._defers_writes(study_id):
            self.writeback.release()  # its job starts: to disk now

    def _make(
        self, batch: Sequence[tuple[SourceInstance, str]], stop: Callable[[], bool] | None = None
    ) -> None:
        sources = [s for s, _ in batch]
        planned = self._read_and_plan(batch)
        headers = [header for header, _ in planned]
        by_plan: dict[str, tuple[Plan, list[SourceInstance]]] = {}
        made_for: dict[int, dict[str, Any]] = {s.instance_id: {} for s in sources}
        for source, (_, plans) in zip(sources, planned, strict=True):
            for plan in plans:
                by_plan.setdefault(plan.key, (plan, []))[1].append(source)
        study_id = sources[0].study_id
        defer = self._defers_writes(study_id)
        if not defer:
            self.writeback.release()  # a job comes: the disk for its files first
        left: set[int] = set()
        for key, (plan, items) in by_plan.items():
            taken: list[int] = []
            made = make_files(
                self._secret,
                plan.options,
                plan.burned_in,
                [
                    (
                        s.instance_id,
                        str(self.data_dir / s.path),
                        str(premade.premade_file(self.data_dir, s.study_id, key, s.instance_id)),
                    )
                    for s in items
                ],
                keep_going=lambda: self._still_wanted(study_id) and not (stop and stop()),
                memo=self._memo,
                spares=self.spares,
                # once it completed, its job flushes them soon: to the disk at once
                written=self.writeback.add if defer else self._write_back_now,
                claim=functools.partial(self._take, study_id, key) if self.goes_on else None,
                taken=taken,
            )
            for m in made:
                made_for[m.instance_id][key] = {
                    "outcome": m.outcome,
                    "size": m.size,
                    "mappings": m.mappings,
                }
            left |= {s.instance_id for s in items} - {m.instance_id for m in made} - set(taken)
        # not reached (stopped, or the study no longer wanted): to the next pass, which
        # drops a study no longer wanted
        self._pending[:0] = [item for item in batch if item[0].instance_id in left]
        # the next pass's index starts with the same instance when this one stopped at
        # its first: this one's own name then (one file never replaces another's entries)
        first = sources[0].instance_id
        name = f"{first}-{next(self._cut_batches)}" if first in left else str(first)
        failpoint("prepseudo.before_recorded")
        # an instance neither read nor made has nothing to say (the job reads it, should
        # one come); a batch of only those writes no index
        indexed = [
            {
                "id": s.instance_id,
                "received_at": s.received_at,
                "header": None if h is None else header_json(h),
                "made": made_for[s.instance_id],
            }
            for s, h in zip(sources, headers, strict=True)
            if h is not None or made_for[s.instance_id]
        ]
        if indexed:
            premade.write_index(self.data_dir, sources[0].study_id, indexed, name=name)

    def _read_and_plan(
        self, batch: Sequence[tuple[SourceInstance, str]]
    ) -> list[tuple[Dataset | None, list[Plan]]]:
        """Each instance's selection tags (None where not read) and its series' plans
        (:meth:`plans`). A series is read for its plans at its first instance, and its
        other instances only when it has a plan: a series no route takes (most of what a
        node receives where the PACS forwards every study) costs one read, not one an
        instance. (The child read and indexed every instance of every study: 0.2-0.3 s of
        CPU a 500-slice CT, on the cores the node was receiving on.) Its job, should a
        route take the study after all (on another series), reads those itself
        (``JobProcessor._select``)."""
        planned: list[tuple[Dataset | None, list[Plan]]] = []
        for source, series_uid in batch:
            known = self._plans.get((source.study_id, series_uid))
            header = None if known == [] else selection_header(str(self.data_dir / source.path))
            planned.append((header, self.plans(source.study_id, series_uid, header)))
        return planned


def _here(call: Callable[[], T]) -> T:
    return call()


class WritebackThread:
    """Hands files to the disk's writeback (:func:`start_writeback`) from a thread of its
    own, in the order given: releasing what waited while a CT arrived (up to
    :data:`~aifi_app.pipeline.deferred_writeback.DEFERRED_BYTES`) took the loop 0.1-0.45 s
    when the study completed (the advice waits while the disk's queue is full), just when
    its job waited for the loop's next files. The job flushes the files it takes itself;
    this only starts their writing early."""

    def __init__(self) -> None:
        self._paths: queue.SimpleQueue[Path] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="aifi-prepseudo-writeback", daemon=True).start()

    def __call__(self, path: Path) -> None:
        self._paths.put(path)

    def _run(self) -> None:
        while True:
            start_writeback(self._paths.get())


def _passes_while_arriving(loop: PreLoop, arriving: _Arriving, inbox: Any) -> bool:
    """Passes of the loop, one after the other while each makes a batch, a study arrives
    and no message waits (in the low-priority thread: the child's own thread, at the
    priority it started with, is not woken for each batch while the node receives);
    True when one made a batch."""
    busy = False
    while loop.run_once(arriving.ended):
        busy = True
        if not arriving() or not inbox.empty():
            break
    return busy


class _Arriving:
    """Whether any study arrives, read at most every :data:`RECHECK_SECONDS`."""

    def __init__(self, db: premade.Reader) -> None:
        self._db = db
        self._checked = (0.0, False)

    def __call__(self) -> bool:
        at, arriving = self._checked
        if time.monotonic() - at >= RECHECK_SECONDS:
            arriving = study_arriving(self._db)
            self._checked = (time.monotonic(), arriving)
        return arriving

    def ended(self) -> bool:
        return not self()


def run_child(
    db_path: str,
    data_dir: str,
    secret: bytes,
    inbox: Any,
    parent_pid: int,
    low: Callable[[Callable[[], Any]], Any] = _here,
) -> None:
    """The child process (started by :func:`aifi_app.pipeline.low_priority_child.child_main`):
    run the loop until told to stop or the service is gone. ``low`` runs a callable at
    the lowest priority (the child's low-priority thread) and returns its result: every
    pass while a study arrives (the DICOM node comes first), the SEG built ahead while a
    model runs, the empty files made ahead and the SEG builder's loading. The rest runs
    in this thread, at the priority the child started with: the passes while no study
    arrives (a completed study's images, for its job that waits for them), a job's
    help request (sent only when no study arrives) and a job's SR after its model
    (:mod:`aifi_app.pipeline.sr_in_child`)."""
    config: PlanConfig = inbox.get()
    db = ReadOnlyDb(Path(db_path))
    loop = PreLoop(
        db,
        Path(data_dir),
        secret,
        lambda: config,
        goes_on=True,
        spares=SpareInodes(Path(data_dir) / premade.PREMADE_DIR / spare_inodes.SPARE_DIR),
        start_writeback=WritebackThread(),
    )
    arriving = _Arriving(db)
    wait = 0.0
    warm = False
    idle_since = time.monotonic()
    while service_alive(parent_pid):
        try:
            message = inbox.get(timeout=wait) if wait else inbox.get_nowait()
            if message is None:
                return
            if isinstance(message, PlanConfig):
                config = message
            elif isinstance(message, HelpRequest):
                try:
                    loop.help(message)  # a job waits
                except Exception as exc:  # the job makes what this did not
                    log_fault(log, "helping a job pseudonymise failed", exc)
            elif isinstance(message, seg_ahead.SegAheadRequest):
                try:
                    low(functools.partial(seg_ahead.build_in_child, message, db))
                except Exception as exc:  # the job builds its SEG itself
                    log_fault(log, "building a job's SEG ahead failed", exc)
            elif isinstance(message, sr_in_child.SrRequest):
                try:
                    sr_in_child.build_in_child(message)  # a job waits
                except Exception as exc:  # the job builds its SR itself
                    log_fault(log, "building a job's SR failed", exc)
            wait = 0.0  # a wake-up or a new config: look again at once
            idle_since = time.monotonic()
            continue
        except queue.Empty:
            sr_in_child.forget_sources(older_than=sr_in_child.KEEP_SECONDS)
        try:
            if study_arriving(db):  # the node first; stopped once the arrival ends
                busy = bool(low(functools.partial(_passes_while_arriving, loop, arriving, inbox)))
            else:  # a completed study's images, for its job
                busy = loop.run_once()
        except Exception as exc:
            log_fault(log, "pre-pseudonymising pass failed; retrying shortly", exc)
            busy = False
        if busy:
            idle_since = time.monotonic()
        elif low(loop.make_spares):
            wait = 0.0  # more to make: after a look at the messages
            continue
        elif config.builds_segs and not warm and time.monotonic() - idle_since >= WARM_UP_IDLE:
            if study_arriving(db):
                # not while a study arrives (~0.2 s of CPU and 20 MB read: the node's
                # receiving would share the cores and caches with it); again later
                idle_since = time.monotonic()
                wait = loop.idle_wait()
                continue
            warm = True  # once: highdicom and its tables, for the first job's SEG in time
            try:
                low(seg_ahead.warm_up)
            except Exception as exc:
                log_fault(log, "loading the SEG builder failed", exc)
            continue
        wait = 0.0 if busy else loop.idle_wait()


class PrePseudonymiser(BackgroundLoop):
    """The service's side: starts the child (or runs the loop as this thread), keeps it
    told what to pre-make, and reads what it made for a job."""

    thread_name = "aifi-prepseudo"

    def __init__(
        self,
        db: Database,
        data_dir: Path,
        settings: Callable[[], Settings],
        packages: Callable[[], dict[str, AlgorithmPackage]],
        secret: bytes,
        *,
        disk_short: Callable[[], str | None] = lambda: None,
        disk_floor: Callable[[], DiskFloor] = DiskFloor,
        in_child: bool | None = None,
        goes_on: bool | None = None,
    ) -> None:
        """``in_child``: run the loop in a low-priority child process (default: everywhere
        but Windows). ``goes_on``: the loop claims what it makes and goes on with a study
        after it completed (see :class:`PreLoop`; default: where it runs in the child).
        ``disk_short`` says why the disk is too full (then nothing is made);
        ``disk_floor`` is the floor the node keeps (nothing is made close to it)."""
        super().__init__()
        self.db = db
        self.data_dir = data_dir
        self._settings = settings
        self._packages = packages
        self._secret = secret
        self._disk_short = disk_short
        self._disk_floor = disk_floor
        self._in_child = (os.name != "nt") if in_child is None else in_child
        self._goes_on = self._in_child if goes_on is None else goes_on
        self._config = PlanConfig(active=False, routes=(), packages=())  # set at start
        self._work = PreLoop(db, data_dir, secret, lambda: self._config, goes_on=self._goes_on)
        self._child: BaseProcess | None = None
        self._inbox: Any = None
        self._launched = threading.Event()
        self._launched.set()  # (cleared from start() until the child's start returned)

    def _current_config(self) -> PlanConfig:
        return plan_config(
            self._settings(), self._packages(), self._disk_short(), self._disk_floor()
        )

    # --- life ---------------------------------------------------------------------------
    def start(self) -> None:
        """Empty the cache (files of an earlier run are never used: they may be torn by a
        power cut), then start this thread, which starts the child first
        (:meth:`before_loop`). Call before the worker starts."""
        self.purge()
        self._config = self._current_config()
        if self._in_child:
            self._launched.clear()
        super().start()

    def before_loop(self) -> None:
        """Start the child, on this thread: the first child the fork server starts waits
        for its imports (~1 s; :mod:`aifi_app.child_processes`), which the service's
        start (the worker's) need not. Until the start returned, what asks the child
        waits for it (:meth:`_child_runs`)."""
        if not self._in_child:
            return
        try:
            self._start_child()
        except Exception as exc:  # the jobs make everything themselves; tried again later
            log_fault(log, "could not start the pre-pseudonymising process", exc)
        finally:
            self._launched.set()

    def _child_runs(self) -> bool:
        """Whether the child runs (once its start returned: at most
        :data:`CHILD_START_WAIT_SECONDS` after :meth:`start`)."""
        self._launched.wait(CHILD_START_WAIT_SECONDS)
        return self._child is not None and self._child.is_alive()

    def _start_child(self) -> None:
        context = child_context()
        self._inbox = context.Queue()
        self._inbox.put(self._config)
        self._child = child_process(
            context,
            low_priority_child.child_main,
            (str(self.db.path), str(self.data_dir), self._secret, self._inbox, os.getpid()),
            name="aifi-prepseudo",
        )
        self._child.start()  # (the fork server's first start waits for its imports)

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        if self._child is not None:
            with contextlib.suppress(Exception):
                self._inbox.put(None)
            self._child.join(5.0)
            if self._child.is_alive():
                self._child.terminate()
                self._child.join(5.0)
            self._child = None

    def purge(self) -> None:
        """Remove every pre-made file."""
        try:
            premade.remove_all(self.data_dir)
        except Exception as exc:
            log_fault(log, "could not empty the pre-made files", exc)

    def wake(self, *_: object) -> None:
        """A new study: look at it now (safe from any thread)."""
        if self._in_child and self._inbox is not None:
            with contextlib.suppress(Exception):
                self._inbox.put_nowait("wake")
        super().wake()

    # --- this thread ----------------------------------------------------------------------
    def idle_wait(self) -> float:
        return CONFIG_SECONDS if self._in_child else self._work.idle_wait()

    def run_once(self) -> bool:
        """Child: send a changed config, start the child again if it died. Thread: one
        pass of the loop itself."""
        config = self._current_config()
        changed = config != self._config
        self._config = config
        if not self._in_child:
            return self._work.run_once()
        if self._child is not None and not self._child.is_alive():
            log.warning("the pre-pseudonymising process ended; starting it again")
            self._start_child()
        elif self._child is None:  # its start failed
            self._start_child()
        elif changed and self._inbox is not None:
            self._inbox.put(config)
        return False

    # --- for a job ----------------------------------------------------------------------
    def request_help(self, request: HelpRequest) -> bool:
        """Ask the child to make some of a job's instances now (see :class:`HelpRequest`);
        False where there is no child to ask (a thread shares the job's core)."""
        return self._to_child(request)

    def request_seg_ahead(self, request: seg_ahead.SegAheadRequest) -> bool:
        """Ask the child to build a job's SEG while its model runs (see
        :mod:`aifi_app.pipeline.seg_ahead`); False where there is no child to ask (a
        thread would take the model's interpreter lock)."""
        return self._to_child(request)

    def request_sr(self, request: sr_in_child.SrRequest) -> bool:
        """Ask the child to build a job's SR after its model (see
        :mod:`aifi_app.pipeline.sr_in_child`); False where there is no child to ask."""
        return self._to_child(request)

    def _to_child(self, message: object) -> bool:
        if not self._in_child or not self._child_runs():
            return False
        try:
            self._inbox.put_nowait(message)
        except Exception:
            return False
        return True

    def shares_claims(self) -> bool:
        """True when the loop takes each instance before making it and goes on with a
        study after it completed (:class:`PreLoop` ``goes_on``), and runs: a job then
        takes each image it makes itself (:func:`premade.take`) and waits for those the
        loop took (:meth:`made_by_loop`), without :meth:`settle`."""
        if not self._goes_on:
            return False
        return not self._in_child or self._child_runs()

    def made_by_loop(
        self, key: str, instances: Sequence[SourceInstance], timeout: float
    ) -> dict[int, premade.Premade]:
        """The usable files the loop made of ``instances`` (which it took) for ``key``,
        once its index says what became of each of them, the loop is gone, or after
        ``timeout``; those not made (refused, failed, not done by then) are the caller's
        to make."""
        index = PremadeIndex(self.data_dir)
        studies = sorted({i.study_id for i in instances})
        deadline = time.monotonic() + timeout
        while True:
            for study_id in studies:
                index.read_new(study_id)
            if all(index.known(i.instance_id, key) for i in instances):
                break
            if time.monotonic() >= deadline or not self.shares_claims():
                for study_id in studies:  # written just before it went
                    index.read_new(study_id)
                break
            time.sleep(0.002)
        return index.lookup(instances, key)

    def settle(self, study_id: int, timeout: float = SETTLE_SECONDS) -> None:
        """Wait (at most ``timeout``) until no batch of ``study_id`` is being made."""
        busy = premade.busy_file(self.data_dir, study_id)
        deadline = time.monotonic() + timeout
        while busy.exists() and time.monotonic() < deadline:
            time.sleep(0.005)

    def index(self, study_ids: set[int]) -> PremadeIndex:
        """What was made for these studies (read from the cache's index files)."""
        return PremadeIndex.load(self.data_dir, study_ids)
