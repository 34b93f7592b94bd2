"""Pseudonymising a study while it is still arriving, so that its job finds the work done.

A background loop (thread ``aifi-prepseudo``) looks for instances of studies in
``receiving`` that have no pre-made file yet, in batches of :data:`BATCH` instances. For
each series it evaluates the routes' rules on the series' first instance (as the worker
will on completion) and pre-makes the instance for the pseudonymisation options of every
algorithm the study will probably go to (see :mod:`aifi_app.pipeline.premade` for the
cache and its rules). A series no route takes gets a row that says so and no file.

The pseudonymising itself runs in one spawned child process at the lowest CPU priority
(``nice 19``), started on first use and kept: pydicom's header work holds the GIL, and a
thread in the service would take the GIL from the DICOM node's receive threads, which
is exactly the time the study arrives; a low-priority process takes only CPU left
over (on a 2-core machine, the core the receiver does not use), and the receiver never
waits for it. The files are written, flushed and renamed in the child; the rows are
committed here. On Windows (a service under pythonservice.exe cannot spawn the same way)
and in tests the work is done in this thread instead.

A job that starts pseudonymising calls :meth:`PrePseudonymiser.settle` first: it waits
for a batch of its study still in the child (at most one; the loop starts no new batch
for a study once it left ``receiving``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from pydicom import Dataset, dcmread

from aifi_app.algorithms.input_rules import HEADER_TAGS
from aifi_app.algorithms.package import AlgorithmPackage
from aifi_app.config.settings import Settings
from aifi_app.failpoints import failpoint
from aifi_app.fault_logging import log_fault
from aifi_app.pipeline import premade, routing
from aifi_app.pipeline.background_loop import BackgroundLoop
from aifi_app.pipeline.premade import Entry, PremadeIndex, SourceInstance
from aifi_app.pseudonymise import BurnedInPolicy, ProfileOption
from aifi_app.pseudonymise.batch import pseudonymise_file
from aifi_app.pseudonymise.pseudonymiser import Pseudonymiser
from aifi_app.store.database import Database

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

BATCH = 24
"""Instances per batch: small, so that a job waits little for the batch in flight (about
0.1 s of work on an idle core), large enough to keep this loop's own work rare."""
POLL_SECONDS = 0.2
"""How often the loop looks for new instances while a study is receiving (it is woken
when a new study starts)."""
IDLE_SECONDS = 2.0
SELECTION_TAGS = [*HEADER_TAGS, "InstanceNumber", "ImagePositionPatient"]
"""The tags a job's image selection reads (kept in memory per instance)."""


@dataclass(frozen=True)
class Plan:
    """One set of pseudonymisation options an instance is pre-made for."""

    key: str
    options: frozenset[ProfileOption]
    burned_in: BurnedInPolicy


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
) -> list[Made]:
    """Pseudonymise each (instance id, source, target) into ``target`` (written under a
    temporary name, then renamed). A refused or failed instance gets no file. Runs in the
    child process (or this thread).

    The files are not flushed here: they are handed to the kernel's writeback at once
    (``POSIX_FADV_DONTNEED`` starts it without waiting), so that by the time the job
    flushes the files it takes (before it records them) there is little left to write.
    An fsync per file here would make this process wait for the disk with the DICOM
    node's own fsyncs. The cache is emptied at every start, so a file torn by a power
    cut is never used."""
    made: list[Made] = []
    sink: list[list[tuple[str, str, str]]] = [[]]  # the current instance's mappings
    pseudonymiser = Pseudonymiser(
        secret,
        options,
        on_pseudonym=lambda k, o, p: sink[0].append((k, o, p)),
        burned_in=burned_in,
    )
    for instance_id, source, target in items:
        sink[0] = []
        final = Path(target)
        temporary = final.with_suffix(".tmp")
        temporary.parent.mkdir(parents=True, exist_ok=True)
        try:
            pseudonymise_file(pseudonymiser, Path(source), temporary)
        except Exception:
            # refused (burned-in text), unreadable, not DICOM: no file; the job's own
            # step meets the same and reports it
            temporary.unlink(missing_ok=True)
            made.append(Made(instance_id, premade.REFUSED, [], 0))
            continue
        _start_writeback(temporary)
        temporary.replace(final)
        made.append(Made(instance_id, premade.MADE, sink[0], final.stat().st_size))
    return made


def _start_writeback(path: Path) -> None:
    """Ask the kernel to start writing ``path`` to disk now, without waiting for it."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:  # Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        advise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


def _warm() -> None:
    """Nothing: submitted once so that the child imports its modules before a study."""


def selection_headers(paths: Sequence[str]) -> list[Dataset | None]:
    """The selection tags of each file (None where it cannot be read)."""
    out: list[Dataset | None] = []
    for path in paths:
        try:
            out.append(dcmread(path, stop_before_pixels=True, specific_tags=SELECTION_TAGS))
        except Exception:
            out.append(None)
    return out


def _lower_priority() -> None:
    """The child's initializer: the lowest CPU priority, so that receiving comes first."""
    with contextlib.suppress(AttributeError, OSError):  # not on this OS
        os.nice(19)


class PrePseudonymiser(BackgroundLoop):
    thread_name = "aifi-prepseudo"

    def __init__(
        self,
        db: Database,
        data_dir: Path,
        settings: Callable[[], Settings],
        packages: Callable[[], dict[str, AlgorithmPackage]],
        secret: bytes,
        *,
        is_our_pseudonym: Callable[[str], bool],
        disk_short: Callable[[], str | None] = lambda: None,
        in_child: bool | None = None,
    ) -> None:
        """``in_child``: pseudonymise in a low-priority child process (default: everywhere
        but Windows). ``disk_short`` says why the disk is too full (then nothing is made)."""
        super().__init__()
        self.db = db
        self.data_dir = data_dir
        self._settings = settings
        self._packages = packages
        self._secret = secret
        self._is_our_pseudonym = is_our_pseudonym
        self._disk_short = disk_short
        self._in_child = (os.name != "nt") if in_child is None else in_child
        self._pool: ProcessPoolExecutor | None = None
        self.index = PremadeIndex(data_dir)
        self._plans: dict[tuple[int, str], list[Plan]] = {}
        self._skip_studies: dict[int, bool] = {}
        self._busy = threading.Condition()
        self._busy_study: int | None = None
        self._receiving = False
        self._seen = 0
        """The newest instance row read."""
        self._pending: list[tuple[SourceInstance, str]] = []

    # --- the loop ---------------------------------------------------------------------
    def start(self) -> None:
        """Empty the cache (files of an earlier run may be torn by a power cut: they are
        made again), then start the loop. Call before the worker starts."""
        self.purge()
        super().start()

    def purge(self) -> None:
        """Remove every pre-made file."""
        try:
            self.index.purge()
        except Exception as exc:
            log_fault(log, "could not empty the pre-made files", exc)

    def before_loop(self) -> None:
        if self._in_child:  # the child imports pydicom and the pseudonymiser now, at
            try:  # the lowest priority, not when the first study arrives
                self._call(_warm)
            except Exception as exc:
                log_fault(log, "the pre-pseudonymising process did not start", exc)

    def idle_wait(self) -> float:
        return POLL_SECONDS if self._receiving else IDLE_SECONDS

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def run_once(self) -> bool:
        self.clean()
        if not self._settings().completion.pseudonymise_while_receiving:
            self._receiving = False
            return False
        sources = self._next_batch()
        if not sources:
            return False
        if self._disk_short() is not None:
            return False  # the disk guard refuses new studies meanwhile; nothing cached
        self.make(sources)
        return True

    def clean(self) -> None:
        """Remove the pre-made files no job will take any more."""
        for study_id in premade.removable_studies(self.db, self.index.studies()):
            self.index.remove_study(study_id)
        done = [
            s
            for s in self._skip_studies
            if not self.db.query("SELECT 1 FROM studies WHERE id = ? AND state = 'receiving'", (s,))
        ]
        for study_id in done:
            self._skip_studies.pop(study_id, None)
            self._plans = {k: v for k, v in self._plans.items() if k[0] != study_id}

    def settle(self, study_id: int, timeout: float = 10.0) -> None:
        """Wait until no batch of ``study_id`` is being made (called by a job's step)."""
        with self._busy:
            self._busy.wait_for(lambda: self._busy_study != study_id, timeout)

    # --- one batch --------------------------------------------------------------------
    def _next_batch(self) -> list[tuple[SourceInstance, str]]:
        """Up to :data:`BATCH` instances of one receiving study not handled yet. Only rows
        newer than those seen are read (the loop shares the service's GIL with the DICOM
        node: it does as little as it can in this process); nothing here writes to the
        queue while a study arrives. A resent instance (same row, a new copy) is not made
        again: the job pseudonymises it."""
        rows = self.db.query(
            "SELECT i.id, i.study_id, i.series_uid, i.path, i.received_at"
            " FROM instances i JOIN studies s ON s.id = i.study_id"
            " WHERE i.id > ? AND s.state = 'receiving' AND s.kind != 'record' ORDER BY i.id",
            (self._seen,),
        )
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
            if self.db.query(
                "SELECT 1 FROM studies WHERE id = ? AND state = 'receiving'", (study_id,)
            ):
                break
            self._pending = [p for p in self._pending if p[0].study_id != study_id]
        self._receiving = bool(self._pending) or bool(
            self.db.query("SELECT 1 FROM studies WHERE state = 'receiving' LIMIT 1")
        )
        batch: list[tuple[SourceInstance, str]] = []
        for item in self._pending:
            if item[0].study_id != self._pending[0][0].study_id or len(batch) == BATCH:
                break  # one study per batch: a job's settle waits for it
            batch.append(item)
        taken = {id(item) for item in batch}
        self._pending = [p for p in self._pending if id(p) not in taken]
        return batch

    def plans(self, study_id: int, series_uid: str, header: Dataset | None) -> list[Plan]:
        """The option sets to pre-make a series' instances for (cached per series)."""
        cached = self._plans.get((study_id, series_uid))
        if cached is not None:
            return cached
        if self._skip_study(study_id) or header is None:
            plans: list[Plan] = []
        else:
            decisions = routing.evaluate(self._settings().routes, [header])
            packages = self._packages()
            by_key: dict[str, Plan] = {}
            for decision in decisions:
                package = packages.get(decision.route.algorithm) if decision.matched else None
                if package is None:
                    continue
                options = frozenset(
                    ProfileOption[name.upper()] for name in package.pseudonymisation_options
                )
                burned_in = package.burned_in_annotation
                key = premade.options_key(self._secret, options, burned_in)
                by_key[key] = Plan(key, options, burned_in)
            plans = list(by_key.values())
        self._plans[(study_id, series_uid)] = plans
        return plans

    def _skip_study(self, study_id: int) -> bool:
        """True for a study that is not routed (objects returned into a pseudonymised study)."""
        skip = self._skip_studies.get(study_id)
        if skip is None:
            row = self.db.query("SELECT study_uid FROM studies WHERE id = ?", (study_id,))
            skip = not row or self._is_our_pseudonym(str(row[0]["study_uid"]))
            self._skip_studies[study_id] = skip
        return skip

    def make(self, batch: Sequence[tuple[SourceInstance, str]]) -> None:
        """Pre-make one batch (one study's instances) and record it."""
        study_id = batch[0][0].study_id
        with self._busy:
            self._busy_study = study_id
        try:
            self._make(batch)
        finally:
            with self._busy:
                self._busy_study = None
                self._busy.notify_all()

    def _make(self, batch: Sequence[tuple[SourceInstance, str]]) -> None:
        sources = [s for s, _ in batch]
        headers = self._call(selection_headers, [str(self.data_dir / s.path) for s in sources])
        by_plan: dict[str, tuple[Plan, list[SourceInstance]]] = {}
        entries: dict[int, dict[str, Entry]] = {s.instance_id: {} for s in sources}
        for (source, series_uid), header in zip(batch, headers, strict=True):
            plans = self.plans(source.study_id, series_uid, header)
            if not plans:
                entries[source.instance_id][""] = Entry(
                    source.study_id, source.received_at, premade.NO_ROUTE, 0, ()
                )
            for plan in plans:
                by_plan.setdefault(plan.key, (plan, []))[1].append(source)
        for key, (plan, items) in by_plan.items():
            made = self._call(
                make_files,
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
            )
            received = {s.instance_id: s for s in items}
            for m in made:
                s = received[m.instance_id]
                entries[m.instance_id][key] = Entry(
                    s.study_id, s.received_at, m.outcome, m.size, tuple(m.mappings)
                )
        failpoint("prepseudo.before_recorded")
        for source, header in zip(sources, headers, strict=True):
            self.index.put(source, header, entries[source.instance_id])

    def _call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """``fn`` in the child process (started on first use; started again after it
        died), or in this thread."""
        if not self._in_child:
            return fn(*args, **kwargs)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_lower_priority,
            )
        try:
            return self._pool.submit(fn, *args, **kwargs).result()
        except BrokenProcessPool:
            self._pool = None
            raise
