"""The steps of one job: select and pseudonymise its images, run the algorithm, build the
results and re-identify them. Runs on the worker thread.

Each step reads its input from disk and the database, writes its output files durably,
and then records the output and the state change in one transaction. A crash between the
two repeats the step on restart; the step is idempotent (keyed pseudonyms and derived UIDs
make the same files again), so nothing is lost and nothing doubles.

One exception for speed, not for safety: a job with a Segmentation hands its result objects
to the dispatcher as soon as each group is re-identified and written (the SEG, then the
others), before the job records them (:mod:`aifi_app.pipeline.early_delivery`); a crash
before the record makes the step again and sends the same objects again, which the PACS
stores once (stable SOP Instance UIDs).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import functools
import gc
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydicom import Dataset, dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import Tag

from aifi_app import __version__
from aifi_app.algorithms.findings import (
    AlgorithmResult,
    CodedConcept,
    Finding,
    MeasurementFinding,
    SegmentationMask,
)
from aifi_app.algorithms.package import (
    REMOTE_SPECS,
    AlgorithmPackage,
    HttpRunnerSpec,
    KServeV2Spec,
    MaskSpec,
)
from aifi_app.algorithms.runners import InferenceError, RunnerCache
from aifi_app.dicom_node.spool import durable_write
from aifi_app.failpoints import failpoint
from aifi_app.fault_logging import log_fault
from aifi_app.part10 import (
    DurableInBackground,
    make_durable,
    part10_bytes,
    write_part10_durably,
)
from aifi_app.pipeline import durable_batch, premade, sr_in_child
from aifi_app.pipeline.durable_batch import DurableBatch
from aifi_app.pipeline.early_delivery import EarlyBatch, EarlyObject
from aifi_app.pipeline.image_reader import read_header, read_image
from aifi_app.pipeline.input_selection import (
    Image,
    InputNotConforming,
    group_series,
    select_images,
)
from aifi_app.pipeline.parallel_pseudonymise import (
    processes_for,
    pseudonymise_claimed,
    pseudonymise_items,
    pseudonymise_numbered,
    work_file,
)
from aifi_app.pipeline.pre_pseudonymise import (
    SELECTION_TAGS,
    HelpRequest,
    PrePseudonymiser,
    study_arriving,
)
from aifi_app.pipeline.premade import SourceInstance
from aifi_app.pipeline.read_ahead import ImagesReadAhead
from aifi_app.pipeline.seg_ahead import (
    EvidenceAheadRequest,
    SegAheadRequest,
    Skeleton,
    load_evidence,
    load_skeleton,
    skeleton_header,
    write_segmentation,
)
from aifi_app.pipeline.sr_in_child import ReferencedSegment, SrRequest
from aifi_app.pipeline.uids import derived_uid
from aifi_app.pseudonymise import (
    BurnedInAnnotationRefused,
    CheckedResult,
    ProfileOption,
    Pseudonymiser,
    ReidentificationError,
    ResultScope,
    check_reidentification,
)
from aifi_app.results.catalog import result_object
from aifi_app.results.segmentation_frames import LayoutUnknown, frame_layout, kept_frames_of
from aifi_app.store import job_inputs, jobs, stage_times
from aifi_app.store.database import Database, now
from aifi_app.store.jobs import PlannedOutput
from aifi_app.store.states import JobState

if TYPE_CHECKING:  # imported where first used
    from aifi_app.results.segment_reference import SegmentReference
    from aifi_app.results.sr_evidence import EvidenceJoin, SourcesEvidence

log = logging.getLogger(__name__)

_INPUT_TAG_NUMBERS = frozenset(int(Tag(keyword)) for keyword in job_inputs.HEADER_TAGS)
_SELECTION_TAG_NUMBERS = frozenset(int(Tag(keyword)) for keyword in SELECTION_TAGS)
HELP_FROM_IMAGES = 16
"""A job with at least this many images left to pseudonymise asks the pre-pseudonymiser's
process to make half of them (fewer: not worth a message). 16 images are 50-80 ms of
work for one core; the job waits only for images the process has taken (claimed), and
takes back every one it has not, so a process still busy costs the job nothing. (48
before: a CT whose last 20-47 slices were not pre-made was made on one core.)"""
HELP_WAIT_SECONDS = 2.0
"""The longest a job waits for the images the pre-pseudonymiser's process has taken
(it stops after the one it is making once the job reaches its images)."""
READ_AHEAD_JOBS = 2
"""At most this many jobs' images are kept read ahead (the worker pseudonymises every
queued job before it runs the first one's algorithm)."""
HANDOVER_WAIT_SECONDS = 2.0
"""The longest a job's SEG, handed to the PACS early, is waited for to be sent before its
other results are made (a slow PACS takes longer; they are made then all the same)."""
SC_SERIES_NUMBER = result_object("sc").series_number
SR_SERIES_NUMBER = result_object("sr").series_number
SEG_SERIES_NUMBER = result_object("seg").series_number
GSPS_SERIES_NUMBER = result_object("gsps").series_number
KO_SERIES_NUMBER = result_object("ko").series_number
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


ResultHook = Callable[[sqlite3.Connection, int, AlgorithmPackage, AlgorithmResult, Dataset], object]
"""Called inside the transaction that records a job's result (job id, package, result,
original header of the study's first image): the RIS outbox queues its HL7 messages."""


class JobRejected(Exception):
    """The study does not conform to what the algorithm needs (reason in words)."""


class ResultQuarantined(Exception):
    """A result could not be re-identified safely; it was kept under quarantine, not sent."""


class EarlyDelivery(Protocol):
    """Sends a job's result objects while the job is still being finished (the
    dispatcher: :mod:`aifi_app.pipeline.early_delivery`)."""

    def deliver_early(self, job_id: int, objects: Sequence[EarlyObject]) -> EarlyBatch | None:
        """Send them now; None when they are not sent (no PACS)."""
        ...

    def abandon_early(self, job_id: int) -> None:
        """The job failed before recording its results."""
        ...


class RemoteStep(Protocol):
    """A remote runner whose vendor returns DICOM objects into the pseudonymised study."""

    def send(self, job_id: int, package: AlgorithmPackage, work_dir: Path) -> None:
        """pseudonymised -> submitted (or failed, with the reason)."""
        ...

    def collect(
        self, job_id: int, package: AlgorithmPackage, work_dir: Path
    ) -> list[Dataset] | None:
        """The vendor's objects once complete; None while waiting or after failing the job."""
        ...


@dataclass(frozen=True)
class JobContext:
    job_id: int
    study_id: int
    study_uid: str
    episode_kind: str
    package: AlgorithmPackage


def _object_kind(sop_class_uid: str) -> str:
    if sop_class_uid == "1.2.840.10008.5.1.4.1.1.88.59":
        return "ko"
    if sop_class_uid == "1.2.840.10008.5.1.4.1.1.11.1":
        return "gsps"
    if sop_class_uid == "1.2.840.10008.5.1.4.1.1.104.1":
        return "pdf"
    if sop_class_uid.startswith("1.2.840.10008.5.1.4.1.1.88."):
        return "sr"
    if sop_class_uid.startswith("1.2.840.10008.5.1.4.1.1.7"):
        return "sc"
    if sop_class_uid == "1.2.840.10008.5.1.4.1.1.66.4":
        return "seg"
    return "dicom"


_EVIDENCE_UID_TAGS = tuple(
    Tag(keyword)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID")
)


def _decode_evidence_uids(images: Sequence[Dataset]) -> None:
    """Decode the UIDs by which an SR records the job's images as its evidence, before the
    model: read from their files, they are raw values until first asked for, and
    decoding 2,000 of them (~0.08 s for a 500-slice CT) was the SR's largest part after
    the model once its SEG was built ahead (the SEG's build had decoded them before)."""
    for ds in images:
        for tag in _EVIDENCE_UID_TAGS:
            if tag in ds:
                ds[tag]  # converts the raw element in place


def _own_uids_of(result: Dataset | SegmentReference) -> Dataset:
    """A result as its job's other results see it once it is written (or a SEG built
    ahead): its own SOP Instance and Series Instance UIDs, which they may reference."""
    ds = Dataset()
    if isinstance(result, Dataset):
        for keyword in ("SOPInstanceUID", "SeriesInstanceUID"):
            if keyword in result:
                setattr(ds, keyword, result.get(keyword))
    else:
        ds.SOPInstanceUID = result.sop_instance_uid
        ds.SeriesInstanceUID = result.series_instance_uid
    return ds


def _findings_detail(result: AlgorithmResult) -> str:
    """ "; its SR reports N finding(s), M positive" for a vendor result with findings."""
    if not result.findings and not result.measurements:
        return ""
    positives = sum(f.positive for f in result.findings)
    return f"; its SR reports {len(result.findings)} finding(s), {positives} positive" + (
        f", {len(result.measurements)} measurement(s)" if result.measurements else ""
    )


def _builder(name: str) -> Callable[..., Dataset]:
    """The result builder ``name`` of :mod:`aifi_app.results`, imported when first called,
    with highdicom and its tables of the standard (:func:`load_and_freeze`: once per
    process, after which full collections skip what lives then). Not when the results
    are planned: a job whose SEG was built ahead writes it and lets its mask go before
    the service's first highdicom import takes its ~20 MB (and before the service listens
    no builder is imported at all)."""

    def build(*args: Any, **kwargs: Any) -> Dataset:
        from aifi_app import results
        from aifi_app.results.standard_tables import load_and_freeze

        load_and_freeze()
        function: Callable[..., Dataset] = getattr(results, name)
        return function(*args, **kwargs)

    return build


def _work_paths(images: Sequence[Dataset]) -> tuple[str, ...]:
    """The files the job's images were read from, in their order ("" for one read from
    no file): what the pre-pseudonymiser's child reads them from."""
    return tuple(str(getattr(ds, "filename", "") or "") for ds in images)


def _work_images(work: Path) -> list[Path]:
    """A job's pseudonymised images in its work folder, in the algorithm's order (their
    names: :func:`work_file`); none when there is no folder."""
    try:
        names = sorted(p.name for p in work.iterdir())
    except FileNotFoundError:
        return []
    return [work / name for name in names if name.endswith(".dcm") and not name.startswith(".")]


def _read_image(path: Path) -> Dataset:
    """One of a job's images for its runner: pixel data read on first use
    (:func:`aifi_app.pipeline.image_reader.read_image`, as ``dcmread`` reads it)."""
    return read_image(path)


def _read_image_with_evidence(path: Path) -> Dataset:
    """:func:`_read_image`, and the UIDs by which an SR records it as evidence decoded
    (as :func:`_decode_evidence_uids` decodes them): read ahead while the job is
    pseudonymised, this work falls into the step's waits instead of between it and the
    model. The study's, series' and class UIDs are the same in every image of a series:
    each decoded element is kept (:data:`_DECODED_UIDS`, by the raw entry it was
    decoded from: its bytes and place in the file, which the reader shares between
    files, see :mod:`aifi_app.pipeline.image_reader`) and a copy of it put in each
    data set that holds the same entry (half of the read-ahead's CPU before: 0.13 ms an
    image, against 0.14 ms for reading it)."""
    ds = _read_image(path)
    for tag in _EVIDENCE_UID_TAGS:
        raw = ds.get_item(tag, keep_deferred=True) if tag in ds else None
        if not isinstance(raw, RawDataElement) or raw.value is None:
            if raw is not None:
                ds[tag]  # deferred or already decoded: as _decode_evidence_uids does
            continue
        decoded = _DECODED_UIDS.get(raw)
        if decoded is None:
            if len(_DECODED_UIDS) >= _DECODED_UIDS_MAX:
                _DECODED_UIDS.clear()
            decoded = _DECODED_UIDS[raw] = copy.copy(ds[tag])  # converted in place
        else:
            ds[tag] = copy.copy(decoded)  # a UID value: immutable, shared
    return ds


_DECODED_UIDS: dict[RawDataElement, DataElement] = {}
"""Evidence UID elements decoded, by the raw entry they were decoded from (copies are
handed out: a data set's element may be changed by its user)."""
_DECODED_UIDS_MAX = 1_000
"""Entries kept at most (emptied when full): a CT adds one a slice (its SOP Instance
UID) that no later study uses; see :data:`aifi_app.pipeline.image_reader.MEMO_ENTRIES`."""


class _CollectorTime:
    """The time Python's garbage collector ran (in any thread) while this is entered, for
    a step's log line."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1

    def __enter__(self) -> _CollectorTime:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


class _CollectorHold:
    """How many threads hold the garbage collector off now, and whether it was enabled
    before the first of them did."""

    lock = threading.Lock()
    holders = 0
    was_enabled = False


def _defer_collections() -> Callable[[], None]:
    """Hold Python's cyclic garbage collector off until the returned function is called
    (once): while a job's results are made after its model (~0.1 s), a full collection
    that Python starts by itself (the service's heap: millions of objects) took 0.03 s
    of an SR's 0.05 s in the in-process bench; it runs after them instead. Nested and
    concurrent holds (the worker's lanes) end when the last one does."""
    with _CollectorHold.lock:
        if _CollectorHold.holders == 0:
            _CollectorHold.was_enabled = gc.isenabled()
            gc.disable()
        _CollectorHold.holders += 1
    done = threading.Event()

    def resume() -> None:
        with _CollectorHold.lock:
            if done.is_set():
                return
            done.set()
            _CollectorHold.holders -= 1
            if _CollectorHold.holders == 0 and _CollectorHold.was_enabled:
                gc.enable()

    return resume


class RecordInFlight:
    """A job's pseudonymise step being flushed and recorded in the background while its
    model runs (:meth:`JobProcessor.pseudonymise_for_model`)."""

    def __init__(self, future: Future[None]) -> None:
        self._future = future

    def wait(self) -> None:
        """Until the step is recorded; raises what its flush or its record raised."""
        self._future.result()


class JobProcessor:
    """Carries jobs from ``queued`` to ``result_received``."""

    def __init__(
        self,
        db: Database,
        data_dir: Path,
        packages: Callable[[], dict[str, AlgorithmPackage]],
        runners: RunnerCache,
        secret: bytes,
        remote: Mapping[type, RemoteStep] | None = None,
        on_result: ResultHook | None = None,
    ) -> None:
        self.db = db
        self.data_dir = data_dir
        self._packages = packages
        self._runners = runners
        self._secret = secret
        self._remote = dict(remote or {})
        """The remote step per runner spec type (RemoteDicomSpec, RemoteDicomwebSpec)."""
        self._on_result = on_result
        self.prepared: PrePseudonymiser | None = None
        """The background pre-pseudonymiser, when the service runs one (set after both
        are made: it asks this processor which UIDs are our pseudonyms)."""
        self._read_ahead: dict[int, ImagesReadAhead] = {}
        """Per job pseudonymised in this process, its images read ahead for its algorithm."""
        self._read_ahead_lock = threading.Lock()
        self._record_thread: ThreadPoolExecutor | None = None
        """The worker's lanes (:mod:`aifi_app.pipeline.worker`) keep and take jobs' read-aheads
        from their own threads."""
        self.early: EarlyDelivery | None = None
        """Sends a job's SEG while its other results are made (the service's dispatcher;
        set after both are made). None: the results wait for the job's record."""
        self._segments_seen: dict[tuple[str, str], tuple[CodedConcept, str]] = {}
        """Per algorithm (id, version), the concept and label of the first segment of its
        last result: what its next SEG built ahead speculates on."""

    def warm_up(self, algorithm_ids: set[str]) -> None:
        """Load the models of these algorithms now, so that the first study does not wait
        for it (called on the worker thread, after the node already accepts studies)."""
        durable_batch.warm_up()  # the fsync threads, started before a job needs them
        packages = self._packages()
        for algorithm_id in sorted(algorithm_ids):
            package = packages.get(algorithm_id)
            if package is not None:
                self._runners.get(package)

    # --- helpers ------------------------------------------------------------------------
    def context(self, job_id: int) -> JobContext:
        row = self.db.query(
            "SELECT j.id, j.study_id, j.algorithm_id, s.study_uid, s.kind FROM jobs j"
            " JOIN studies s ON s.id = j.study_id WHERE j.id = ?",
            (job_id,),
        )[0]
        package = self._packages().get(row["algorithm_id"])
        if package is None:
            raise JobRejected(
                f"algorithm {row['algorithm_id']} is not installed, not usable or disabled"
            )
        return JobContext(job_id, row["study_id"], row["study_uid"], row["kind"], package)

    def work_dir(self, job_id: int) -> Path:
        return self.data_dir / "work" / str(job_id)

    def result_dir(self, job_id: int) -> Path:
        return self.data_dir / "results" / str(job_id)

    def _instances(self, ctx: JobContext, limit: int = -1) -> list[SourceInstance]:
        """The received instances the job works on: its episode's, or the whole study's
        when the episode is a reprocess of late instances (the first ``limit`` of them;
        -1: all)."""
        if ctx.episode_kind == "reprocess":
            rows = self.db.query(
                "SELECT i.id, i.study_id, i.path, i.received_at FROM instances i"
                " JOIN studies s ON s.id = i.study_id WHERE s.study_uid = ? ORDER BY i.id"
                " LIMIT ?",
                (ctx.study_uid, limit),
            )
        else:
            rows = self.db.query(
                "SELECT i.id, i.study_id, i.path, i.received_at FROM instances i"
                " WHERE i.study_id = ? ORDER BY i.id LIMIT ?",
                (ctx.study_id, limit),
            )
        return [
            SourceInstance(
                int(r["id"]), int(r["study_id"]), self.data_dir / r["path"], float(r["received_at"])
            )
            for r in rows
        ]

    def original_header(self, ctx: JobContext) -> Dataset:
        """The header of the first instance the job works on, as received (read once per
        job step and passed on to what needs it)."""
        return dcmread(self._instances(ctx, limit=1)[0].path, stop_before_pixels=True)

    def select_images(self, ctx: JobContext) -> list[Path]:
        """The images the algorithm takes, by the input rules and series selection of its
        manifest; raises :class:`JobRejected` with the reason when the study does not conform.
        """
        return [s.path for s in self._select(ctx, self._instances(ctx))]

    def _select(
        self,
        ctx: JobContext,
        instances: Sequence[SourceInstance],
        kept: premade.PremadeIndex | None = None,
    ) -> list[SourceInstance]:
        """The selected instances, in order; the selection tags read while the study
        arrived (``kept``) are used where they are (the files are read otherwise)."""
        images = []
        by_path: dict[Path, SourceInstance] = {}
        for instance in instances:
            header = kept.header(instance.instance_id, instance.received_at) if kept else None
            if header is None:  # not pre-made (yet): its selection tags read now
                header = read_header(instance.path, _SELECTION_TAG_NUMBERS)
            images.append(Image(instance.path, header))
            by_path[instance.path] = instance
        try:
            return [by_path[p] for p in select_images(ctx.package.input, group_series(images))]
        except InputNotConforming as exc:
            raise JobRejected(str(exc)) from exc

    def pseudonymiser(self, ctx: JobContext, mappings: list[tuple[str, str, str]]) -> Pseudonymiser:
        options = frozenset(
            ProfileOption[name.upper()] for name in ctx.package.pseudonymisation_options
        )
        return Pseudonymiser(
            self._secret,
            options,
            on_pseudonym=lambda k, o, p: mappings.append((k, o, p)),
            burned_in=ctx.package.burned_in_annotation,
        )

    # --- steps --------------------------------------------------------------------------
    def record_input(self, job_id: int, path: Path | None = None) -> None:
        """Record the job's input header values (the evaluation's input variation) from
        ``path``, by default the first instance the job's study received."""
        if path is None:
            row = self.db.conn.execute(
                "SELECT i.path FROM instances i JOIN jobs j ON j.study_id = i.study_id"
                " WHERE j.id = ? ORDER BY i.id LIMIT 1",
                (job_id,),
            ).fetchone()
            if row is None:
                return
            path = self.data_dir / row[0]
        job_inputs.record(self.db, job_id, self._input_of(path))

    def pseudonymise(self, job_id: int) -> None:
        """queued -> pseudonymised (or rejected): see :meth:`_pseudonymise`."""
        with _CollectorTime() as collector:
            self._pseudonymise(job_id, collector, for_model=False)

    def pseudonymise_for_model(self, job_id: int) -> RecordInFlight | None:
        """:meth:`pseudonymise` for a job whose model this thread runs next
        (:meth:`run_algorithm` with ``recorded``): the step's flush of the work folder and
        its record (queued -> pseudonymised -> submitted, one transaction) are made in the
        background while the model starts on the images already read, instead of
        before it (the flush waits for the writes the pre-pseudonymiser held back while
        the study arrived: 0.13 s for a 500-slice CT). The job's state changes only once
        its files are on disk, as in :meth:`pseudonymise`; nothing of its results is
        made or recorded before that record (:meth:`RecordInFlight.wait`). ``None``
        when the stage was recorded here as by :meth:`pseudonymise` (a remote runner, no
        model to start) or the job was rejected."""
        with _CollectorTime() as collector:
            return self._pseudonymise(job_id, collector, for_model=True)

    def _pseudonymise(
        self, job_id: int, collector: _CollectorTime, *, for_model: bool
    ) -> RecordInFlight | None:
        """queued -> pseudonymised (or rejected).

        Images pre-made while the study arrived (:mod:`aifi_app.pipeline.pre_pseudonymise`)
        are linked into the work folder; only the others are pseudonymised now, with the
        pre-pseudonymiser's process making them from the other end, on the other core
        (:meth:`_pseudonymise_rest`). Either way the work folder
        holds the same bytes. The pre-made files' data start going to disk at once
        (while the images are selected); the links are made one after the other and made
        durable together at the end, by one flush of the file system where there is one
        (:class:`DurableBatch`); the algorithm's input is read meanwhile
        (:mod:`aifi_app.pipeline.read_ahead`). The input values, the pseudonyms, the
        stage's time and the state change are recorded in one transaction, once every
        file is on disk (``for_model``: see :meth:`pseudonymise_for_model`)."""
        started = now()
        cpu_started = time.thread_time()
        self._drop_read_ahead(job_id)  # its work folder is made again
        closing: contextlib.ExitStack | None = None
        """The batch's closing, handed to the background record (``for_model``)."""
        with contextlib.ExitStack() as stack:
            batch = stack.enter_context(DurableBatch())
            try:
                ctx = self.context(job_id)
                instances = self._instances(ctx)
                kept = None
                if self.prepared is not None:
                    if self.prepared.shares_claims():  # it goes on with the study, now
                        self.prepared.wake()
                    else:
                        self.prepared.settle(ctx.study_id)
                    kept = self.prepared.index({i.study_id for i in instances})
                settled_at = now()
                cpu_settled = time.thread_time()
                pseudonymiser = self.pseudonymiser(ctx, [])
                key = premade.options_key(
                    self._secret, pseudonymiser.options, pseudonymiser.burned_in
                )
                # those of the selected series are taken; flushing the others is harmless
                ready = kept.lookup(instances, key) if kept is not None else {}
                for premade_file in ready.values():
                    batch.flush_source(premade_file.path)
                selected = self._select(ctx, instances, kept)
            except JobRejected as exc:
                batch.close()
                self.record_input(job_id)
                jobs.transition(
                    self.db, job_id, JobState.QUEUED, JobState.REJECTED, reason=str(exc)
                )
                return None
            found_input = self._input_of(selected[0].path) if selected else None
            work = self.work_dir(job_id)
            if work.exists():
                shutil.rmtree(work)  # left by an interrupted attempt
            selected_at = now()
            cpu_selected = time.thread_time()
            mappings: list[tuple[str, str, str]] = []
            rest: list[tuple[int, SourceInstance]] = []
            # the algorithm's input read from now on, each file once it is in the work
            # folder (:mod:`aifi_app.pipeline.read_ahead`); a remote runner reads none
            read_ahead = (
                None
                if isinstance(ctx.package.runner, REMOTE_SPECS)
                else ImagesReadAhead(
                    work,
                    _read_image_with_evidence
                    if "sr" in ctx.package.result_objects
                    else _read_image,
                )
            )
            try:
                batch.folder(work_file(work, 0))
                linked: list[Path] = []
                for n, instance in enumerate(selected):
                    made = ready.get(instance.instance_id)
                    if made is None:
                        rest.append((n, instance))
                        continue
                    target = work_file(work, n)
                    try:
                        premade.link_into(made.path, target)
                    except OSError:  # removed meanwhile: pseudonymised now instead
                        rest.append((n, instance))
                        continue
                    batch.linked(target, made.path)
                    linked.append(target)
                    mappings += made.mappings
                if read_ahead is not None:
                    # read once all are linked: the reading thread took the interpreter
                    # at each link's system call (500 links: 0.10-0.13 s against
                    # 0.014-0.018 s, the step and the reading 0.33-0.36 s against
                    # 0.24-0.28 s, in-process, every image pre-made)
                    for target in linked:
                        read_ahead.add(target)
                linked_at = now()
                try:
                    made_now, helped = self._pseudonymise_rest(
                        ctx, job_id, key, pseudonymiser, work, rest, batch
                    )
                    mappings += made_now
                except BurnedInAnnotationRefused as exc:
                    if read_ahead is not None:
                        read_ahead.cancel()
                    batch.close()
                    shutil.rmtree(work, ignore_errors=True)
                    with self.db.transaction() as conn:
                        if found_input is not None:
                            job_inputs.record_in(conn, job_id, found_input)
                        jobs.transition_in(
                            conn, job_id, JobState.QUEUED, JobState.REJECTED, reason=str(exc)
                        )
                    return None
                made_at = now()
                if read_ahead is not None:  # the files made now, and those the process made
                    read_ahead.finish(_work_images(work))
                if not for_model or read_ahead is None:
                    batch.sync()  # every file on disk, and the folder's entries
            except BaseException:
                if read_ahead is not None:
                    read_ahead.cancel()
                raise
            if for_model and read_ahead is not None:
                closing = stack.pop_all()  # the batch closed once the record synced it
        if read_ahead is not None:
            self._keep_read_ahead(job_id, read_ahead)
        cpu = time.thread_time()
        submitted = self._submission_detail(ctx) if closing is not None else None

        def record() -> None:
            if closing is not None:
                with closing:
                    batch.sync()  # every file on disk, and the folder's entries
            flushed_at = now()
            self._log_pseudonymised(
                job_id,
                len(selected) - len(rest),
                len(rest),
                helped,
                (
                    settled_at - started,
                    selected_at - settled_at,
                    cpu_settled - cpu_started,
                    cpu_selected - cpu_settled,
                    linked_at - selected_at,
                    made_at - linked_at,
                    flushed_at - made_at,
                    cpu - cpu_started,
                    collector.seconds,
                    collector.collections,
                ),
            )
            try:
                self._record_pseudonymised(
                    job_id, started, selected, rest, mappings, found_input, submitted
                )
            except BaseException:
                self._drop_read_ahead(job_id)
                raise

        if closing is None:
            record()
            return None
        return RecordInFlight(self._recorder().submit(record))

    def _recorder(self) -> ThreadPoolExecutor:
        """The thread that flushes and records the pseudonymise steps of jobs whose model
        runs meanwhile (:meth:`pseudonymise_for_model`): one, so that it keeps one database
        connection."""
        with self._read_ahead_lock:
            if self._record_thread is None:
                self._record_thread = ThreadPoolExecutor(1, thread_name_prefix="aifi-record")
            return self._record_thread

    @staticmethod
    def _submission_detail(ctx: JobContext) -> str:
        """The detail of a job's submission to its runner, in the queue's history."""
        runner = ctx.package.runner
        where = "remote" if isinstance(runner, (HttpRunnerSpec, KServeV2Spec)) else "local"
        identity = ctx.package.identity
        return f"{where} {runner.kind} runner, {identity.name} {identity.version}"

    @staticmethod
    def _log_pseudonymised(
        job_id: int, linked: int, now_made: int, helped: int, times: tuple[float | int, ...]
    ) -> None:
        log.info(
            "job %d: %d image(s) linked from those made while the study arrived, %d"
            " pseudonymised now (%d of them by the pre-pseudonymiser's process);"
            " settle and index %.3f s, selection %.3f s (CPU %.3f, %.3f), links %.3f s,"
            " pseudonymising %.3f s, flush %.3f s; CPU %.3f s in all, garbage collector"
            " %.3f s (%d)",
            job_id,
            linked,
            now_made,
            helped,
            *times,
        )

    def _input_of(self, path: Path) -> job_inputs.JobInput:
        """The input header values of the job's first selected image (see
        :meth:`record_input`)."""
        return job_inputs.from_header(read_header(path, _INPUT_TAG_NUMBERS))

    def _record_pseudonymised(
        self,
        job_id: int,
        started: float,
        selected: Sequence[SourceInstance],
        rest: Sequence[tuple[int, SourceInstance]],
        mappings: Sequence[tuple[str, str, str]],
        found_input: job_inputs.JobInput | None,
        submitted: str | None = None,
    ) -> None:
        """The step's record; with ``submitted`` (the submission's detail) the job goes on
        to submitted in the same transaction (its model already runs)."""
        failpoint("processing.after_pseudonymised_files")
        with self.db.transaction() as conn:
            if found_input is not None:
                job_inputs.record_in(conn, job_id, found_input)
            conn.executemany(
                "INSERT INTO pseudonyms (pseudonym, kind, original) VALUES (?, ?, ?)"
                " ON CONFLICT (pseudonym) DO NOTHING",
                {(p, k, o) for k, o, p in mappings},
            )
            linked = len(selected) - len(rest)
            premade_count = f", {linked} of them made while the study arrived" if linked else ""
            stage_times.record_in(conn, job_id, stage_times.PSEUDONYMISE, started, now())
            jobs.transition_in(
                conn,
                job_id,
                JobState.QUEUED,
                JobState.PSEUDONYMISED,
                detail=f"{len(selected)} image(s) pseudonymised{premade_count}",
            )
            if submitted is not None:
                jobs.transition_in(
                    conn, job_id, JobState.PSEUDONYMISED, JobState.SUBMITTED, detail=submitted
                )

    def _pseudonymise_rest(
        self,
        ctx: JobContext,
        job_id: int,
        key: str,
        pseudonymiser: Pseudonymiser,
        work: Path,
        rest: Sequence[tuple[int, SourceInstance]],
        batch: DurableBatch,
    ) -> tuple[list[tuple[str, str, str]], int]:
        """Pseudonymise the job's images that were not pre-made (``rest``: place in the
        job, instance) into ``work``; the mappings made, and how many the pre-pseudonymiser
        made.

        Where the pre-pseudonymiser's process goes on with a study after it completed
        (:meth:`PrePseudonymiser.shares_claims`), it has gone on making the study's
        instances from the first not made, in arrival order, taking each before it makes
        it (:func:`premade.take`), while this job selected and linked its images. This
        thread takes the images left from the other end, the last to arrive first, and
        makes those it gets; the two meet, and the images the process took are linked
        once its index says they are made (:meth:`PrePseudonymiser.made_by_loop`).
        Whatever the process did not make (it stopped, refused an image, or is slower than
        :data:`HELP_WAIT_SECONDS`) is made here, as is an image an earlier attempt of a
        job took. From :data:`HELP_FROM_IMAGES` images on, and when no other study
        arrives (the node needs the other core), the process is also asked to make them
        (:class:`HelpRequest`: the images of a job whose options it was not making). The
        same bytes either way."""
        args = (self._secret, pseudonymiser.options, pseudonymiser.burned_in, work)
        items = [(n, instance.path) for n, instance in rest]
        prepared = self.prepared
        if (
            prepared is None
            or not rest
            or processes_for(len(rest)) > 1
            or not prepared.shares_claims()
        ):
            return pseudonymise_numbered(*args, items, batch=batch), 0
        owner = f"job{job_id}-{time.time_ns()}"
        forward = sorted(rest, key=lambda r: r[1].instance_id)
        if (
            len(rest) >= HELP_FROM_IMAGES
            and all(i.study_id == ctx.study_id for _, i in rest)
            and not self._receiving()
        ):
            prepared.request_help(
                HelpRequest(
                    ctx.study_id,
                    owner,
                    key,
                    pseudonymiser.options,
                    pseudonymiser.burned_in,
                    tuple((i.instance_id, str(i.path), i.received_at) for _, i in forward),
                )
            )
        instance_at = dict(rest)
        theirs: list[tuple[int, SourceInstance]] = []

        def take(n: int) -> bool:
            instance = instance_at[n]
            holder = premade.take(
                self.data_dir, instance.study_id, key, instance.instance_id, owner
            )
            if holder == premade.PRE_OWNER:
                theirs.append((n, instance))
                return False
            return True  # ours, or an earlier attempt's: made here

        mappings, _ = pseudonymise_claimed(
            *args, [(n, i.path) for n, i in reversed(forward)], take, batch=batch
        )
        if not theirs:
            return mappings, 0
        made = prepared.made_by_loop(key, [i for _, i in theirs], HELP_WAIT_SECONDS)
        todo: list[tuple[int, Path]] = []
        for n, instance in sorted(theirs):
            found = made.get(instance.instance_id)
            target = work_file(work, n)
            batch.folder(target)
            try:
                if found is None:
                    raise FileNotFoundError
                premade.link_into(found.path, target)
            except OSError:  # not made (refused, failed, too slow): made here
                todo.append((n, instance.path))
                continue
            batch.linked(target, found.path)
            mappings += found.mappings
        mappings += pseudonymise_items(*args, todo, batch=batch)
        return mappings, len(theirs) - len(todo)

    def _keep_read_ahead(self, job_id: int, read_ahead: ImagesReadAhead) -> None:
        """Keep the job's images read ahead for its algorithm step (at most
        :data:`READ_AHEAD_JOBS` jobs': the oldest dropped)."""
        dropped = []
        with self._read_ahead_lock:
            dropped.append(self._read_ahead.pop(job_id, None))
            while len(self._read_ahead) >= READ_AHEAD_JOBS:
                dropped.append(self._read_ahead.pop(next(iter(self._read_ahead))))
            self._read_ahead[job_id] = read_ahead
        for old in dropped:
            if old is not None:
                old.cancel()

    def _drop_read_ahead(self, job_id: int) -> None:
        with self._read_ahead_lock:
            read_ahead = self._read_ahead.pop(job_id, None)
        if read_ahead is not None:
            read_ahead.cancel()

    def job_images(self, job_id: int) -> list[Dataset]:
        """The job's pseudonymised images, in file order, their pixel data read when a
        runner asks for it (not all at once: a 500-slice CT would otherwise hold 260 MB
        here; the lung volume decodes slice by slice). Those read ahead while the job was
        pseudonymised are taken when they are of the work folder as it is now."""
        return self._job_images(job_id)[0]

    def _job_images(self, job_id: int) -> tuple[list[Dataset], bool]:
        """:meth:`job_images`, and whether they were read ahead."""
        work = self.work_dir(job_id)
        paths = _work_images(work)
        with self._read_ahead_lock:
            read_ahead = self._read_ahead.pop(job_id, None)
        if read_ahead is not None:
            images = read_ahead.datasets(paths)
            if images is not None:
                return images, True
        return [_read_image(p) for p in paths], False

    def _receiving(self) -> bool:
        """True while a study is arriving (the DICOM node is receiving)."""
        return study_arriving(self.db)

    def run_algorithm(
        self, job_id: int, from_state: JobState, *, recorded: RecordInFlight | None = None
    ) -> None:
        """pseudonymised/submitted -> result_received (or failed).

        ``recorded``: the job's pseudonymise step, still being flushed and recorded
        (:meth:`pseudonymise_for_model`; it records the submission too): the model
        starts meanwhile, and the step's outcome is waited for as the model ends, before
        anything of its results is made (an error of the step is raised then, the job
        still queued)."""
        started = now()
        ctx = self.context(job_id)
        if isinstance(ctx.package.runner, REMOTE_SPECS):
            self._run_remote(ctx, from_state)
            return
        if from_state == JobState.PSEUDONYMISED and recorded is None:
            jobs.transition(
                self.db,
                job_id,
                from_state,
                JobState.SUBMITTED,
                detail=self._submission_detail(ctx),
            )
        asked_at = now()
        images, read_ahead = self._job_images(job_id)
        log.info(
            "job %d: %d image(s) for the model, %s; %.3f s to have them",
            job_id,
            len(images),
            "read while it was pseudonymised" if read_ahead else "read now",
            now() - asked_at,
        )
        had_images = now()
        original_header = self.original_header(ctx)
        created = datetime.datetime.now()  # the results' content date and time
        try:
            self._ask_seg_ahead(ctx, images, original_header, created)
        except Exception as exc:  # only for speed: the SEG is built after the model then
            log_fault(log, "job %d: its SEG not asked to be built ahead", exc, job_id)
        asked_seg = now()
        if "sr" in ctx.package.result_objects:
            _decode_evidence_uids(images)  # (a dictionary look-up each where read ahead)
        log.info(
            "job %d: before the model: submitted %.3f s, images %.3f s, original header and"
            " SEG asked %.3f s, evidence UIDs %.3f s",
            job_id,
            asked_at - started,
            had_images - asked_at,
            asked_seg - had_images,
            now() - asked_seg,
        )
        try:
            with stage_times.timed(self.db, job_id, stage_times.MODEL):
                try:
                    result = self._runners.get(ctx.package).run(images)
                finally:
                    if recorded is not None:
                        recorded.wait()  # its images on disk, the job submitted
        except InferenceError as exc:
            jobs.transition(self.db, job_id, JobState.SUBMITTED, JobState.FAILED, reason=str(exc))
            return
        try:
            with stage_times.timed(self.db, job_id, stage_times.BUILD):
                planned = self.build_results(
                    ctx, result, images, original_header, created=created, release_masks=True
                )
        except ResultQuarantined as exc:
            jobs.transition(self.db, job_id, JobState.SUBMITTED, JobState.FAILED, reason=str(exc))
            return
        failpoint("processing.after_results_written")
        with self.db.transaction() as conn:
            jobs.add_outputs_in(conn, job_id, planned)
            self._result_recorded_in(conn, ctx, result, original_header)
            positives = sum(f.positive for f in result.findings)
            detail = f"{len(result.findings)} finding(s), {positives} positive"
            if result.measurements:
                detail = "; ".join(m.label for m in result.measurements)
            jobs.transition_in(
                conn,
                job_id,
                JobState.SUBMITTED,
                JobState.RESULT_RECEIVED,
                detail=detail,
                result_json=result.to_json(),
            )

    def _run_remote(self, ctx: JobContext, from_state: JobState) -> None:
        """A vendor's node or service runs the algorithm: send, then wait for its objects."""
        step = self._remote.get(type(ctx.package.runner))
        if step is None:
            raise RuntimeError(f"no remote step configured for {ctx.package.runner.kind} runners")
        work = self.work_dir(ctx.job_id)
        if from_state == JobState.PSEUDONYMISED:
            with stage_times.timed(self.db, ctx.job_id, stage_times.SUBMIT):
                step.send(ctx.job_id, ctx.package, work)
            return
        returned = step.collect(ctx.job_id, ctx.package, work)
        if returned is None:
            return
        from aifi_app.results.vendor_report import findings_of_vendor_report  # highdicom

        submitted_at = float(jobs.job(self.db, ctx.job_id)["updated_at"])
        stage_times.record(self.db, ctx.job_id, stage_times.VENDOR, submitted_at, now())
        vendor_objects = []
        findings: list[Finding] = []
        measurements: list[MeasurementFinding] = []
        for ds in returned:
            kind = _object_kind(str(ds.SOPClassUID))
            vendor_objects.append((kind, ds))
            if kind == "sr":  # the vendor's TID 1500 findings go into our queue too
                read = findings_of_vendor_report(ds, ctx.package.identity)
                findings += read.findings
                measurements += read.measurements
        vendor_result = AlgorithmResult(
            algorithm=ctx.package.identity,
            findings=tuple(findings),
            measurements=tuple(measurements),
        )
        original_header = self.original_header(ctx)
        try:
            planned = self.reidentify_and_write(ctx, vendor_objects, original_header)
        except ResultQuarantined as exc:
            jobs.transition(
                self.db, ctx.job_id, JobState.SUBMITTED, JobState.FAILED, reason=str(exc)
            )
            return
        with self.db.transaction() as conn:
            jobs.add_outputs_in(conn, ctx.job_id, planned)
            self._result_recorded_in(conn, ctx, vendor_result, original_header)
            jobs.transition_in(
                conn,
                ctx.job_id,
                JobState.SUBMITTED,
                JobState.RESULT_RECEIVED,
                detail=f"{len(planned)} result object(s) from the vendor, re-identified"
                + _findings_detail(vendor_result),
                result_json=vendor_result.to_json(),
                next_attempt_at=None,
            )

    def _result_recorded_in(
        self,
        conn: sqlite3.Connection,
        ctx: JobContext,
        result: AlgorithmResult,
        original_header: Dataset,
    ) -> None:
        if self._on_result is not None:
            self._on_result(conn, ctx.job_id, ctx.package, result, original_header)

    def is_our_pseudonym(self, uid: str) -> bool:
        """True when ``uid`` is a pseudonym this appliance issued (e.g. a vendor's results
        returned into the pseudonymised study)."""
        return self.original_for(uid) is not None

    def _speculated_segment(self, package: AlgorithmPackage) -> tuple[CodedConcept, str] | None:
        """The concept and label the package's next segment probably has: its last
        result's in this process, else what its algorithm declares (a built-in runner's
        ``segment``, an ONNX mask output's concept and label)."""
        identity = package.identity
        seen = self._segments_seen.get((identity.algorithm_id, identity.version))
        if seen is not None:
            return seen
        declared = getattr(self._runners.get(package), "segment", None)
        if (
            isinstance(declared, tuple)
            and len(declared) == 2
            and isinstance(declared[0], CodedConcept)
            and isinstance(declared[1], str)
        ):
            return declared[0], declared[1]
        if isinstance(package.output, MaskSpec):
            return package.output.concept, package.output.label
        return None

    def _ask_seg_ahead(
        self,
        ctx: JobContext,
        images: Sequence[Dataset],
        original_header: Dataset,
        created: datetime.datetime,
    ) -> None:
        """Ask the pre-pseudonymiser's child to build the job's SEG while its model runs
        (:mod:`aifi_app.pipeline.seg_ahead`), when its package makes one on a local
        runner and its segment can be speculated; nothing otherwise."""
        package = ctx.package
        if "seg" not in package.result_objects or self.prepared is None or not images:
            return
        speculated = self._speculated_segment(package)
        if speculated is None:
            return
        sources = _work_paths(images)
        if not all(sources):
            return
        request = self._seg_request(ctx, 1, *speculated, sources, original_header, created)
        if self.prepared.request_seg_ahead(request):
            log.info("job %d: its SEG asked to be built while the model runs", ctx.job_id)

    def _seg_request(
        self,
        ctx: JobContext,
        number: int,
        concept: CodedConcept,
        label: str,
        sources: tuple[str, ...],
        original_header: Dataset,
        created: datetime.datetime,
    ) -> SegAheadRequest:
        """What the job's SEG ``number`` is built and re-identified from, but its mask."""
        key = self._result_key(ctx)
        scope = self.result_scope(ctx, original_header)
        header_path = str(self._instances(ctx, limit=1)[0].path)
        return SegAheadRequest(
            job_id=ctx.job_id,
            number=number,
            sources=sources,
            original_header=header_path,
            concept=concept,
            label=label,
            algorithm=ctx.package.identity,
            series_instance_uid=derived_uid(self._secret, *key, "seg-series"),
            sop_instance_uid=derived_uid(self._secret, *key, "seg", str(number)),
            series_number=SEG_SERIES_NUMBER,
            instance_number=number,
            software_version=__version__,
            created=created.isoformat(),
            dimension_organization_uid=derived_uid(
                self._secret, *key, "seg-dimensions", str(number)
            ),
            study_uid=scope.study_uid,
            patient_pseudonym=scope.patient_pseudonym,
            accession_number=scope.accession_number,
            study_id=scope.study_id,
            date_offset_days=scope.date_offset_days,
            sr_evidence=(
                self._evidence_request(ctx, sources, header_path, scope)
                if "sr" in ctx.package.result_objects
                else None
            ),
        )

    def _evidence_request(
        self, ctx: JobContext, sources: tuple[str, ...], header_path: str, scope: ResultScope
    ) -> EvidenceAheadRequest:
        """What the job's SR's evidence of its images is made from ahead."""
        return EvidenceAheadRequest(
            job_id=ctx.job_id,
            sources=sources,
            original_header=header_path,
            study_uid=scope.study_uid,
            patient_pseudonym=scope.patient_pseudonym,
            accession_number=scope.accession_number,
            study_id=scope.study_id,
            date_offset_days=scope.date_offset_days,
        )

    def _sr_evidence(
        self, ctx: JobContext, images: Sequence[Dataset], original_header: Dataset
    ) -> SourcesEvidence | None:
        """The SR's evidence of ``images`` made while the model ran (asked with the job's
        SEG: :meth:`_seg_request`), when it was made for them; the reason is logged when
        there is none."""
        if "seg" not in ctx.package.result_objects or not images:
            return None
        sources = _work_paths(images)
        if not all(sources):
            return None
        request = self._evidence_request(
            ctx,
            sources,
            str(self._instances(ctx, limit=1)[0].path),
            self.result_scope(ctx, original_header),
        )
        found = load_evidence(request, images)
        if isinstance(found, str):
            log.info("job %d: SR made whole (its evidence not made ahead: %s)", ctx.job_id, found)
            return None
        log.info("job %d: SR's evidence from the one made while the model ran", ctx.job_id)
        return found

    def _result_key(self, ctx: JobContext) -> tuple[str, str, str, str]:
        """What the job's results' derived UIDs are made from."""
        return (
            ctx.study_uid,
            str(ctx.study_id),
            ctx.package.identity.algorithm_id,
            ctx.package.identity.version,
        )

    def _seg_skeleton(
        self,
        ctx: JobContext,
        number: int,
        mask: SegmentationMask,
        images: Sequence[Dataset],
        original_header: Dataset,
        created: datetime.datetime,
    ) -> Skeleton | None:
        """The skeleton of the job's SEG ``number`` built ahead, when the speculation held
        (the mask over all the job's images, the same segment and everything else); the
        reason is logged when there is none."""
        sources = _work_paths(images)
        over_all = all(sources) and {str(ds.SOPInstanceUID) for ds in images} == set(
            mask.source_sop_instance_uids
        )
        if not over_all:
            found: Skeleton | str = "the mask is not over all the job's images"
        else:
            request = self._seg_request(
                ctx, number, mask.concept, mask.label, sources, original_header, created
            )
            found = load_skeleton(request)
        if isinstance(found, Skeleton) and set(found.frame_sources) != set(
            mask.source_sop_instance_uids
        ):
            found = "its frames are of other images"
        if isinstance(found, str):
            here = self._skeleton_here(request, mask, images, original_header) if over_all else None
            log.info(
                "job %d: SEG %d built now (none built ahead: %s)%s",
                ctx.job_id,
                number,
                found,
                "" if here is None else "; its Pixel Data written from the mask",
            )
            return here
        log.info("job %d: SEG %d from the one built while the model ran", ctx.job_id, number)
        return found

    def _skeleton_here(
        self,
        request: SegAheadRequest,
        mask: SegmentationMask,
        images: Sequence[Dataset],
        original_header: Dataset,
    ) -> Skeleton | None:
        """The skeleton of the job's SEG ``number`` built here, now, as the child builds
        it ahead (:func:`aifi_app.pipeline.seg_ahead.build_ahead`: its elements but Pixel
        Data, checked and re-identified, encoded), when none was built ahead: the SEG is
        then written from it and the mask's packed frames (:meth:`_write_skeleton_seg`),
        the same bytes as built whole, without its 16 MB of Pixel Data joined in memory
        (a 500-slice CT) beside the mask they are made from. None when the SEG would
        refuse re-identification: it is then built whole, and refused and quarantined
        as always."""
        from aifi_app.results.segmentation import segmentation_frame_order  # highdicom

        ds = request.build(images)
        frame_sources = segmentation_frame_order(ds)
        if set(frame_sources) != set(mask.source_sop_instance_uids):
            return None
        try:
            header = skeleton_header(
                request, ds, original_header, self.original_for, self.study_of_instance
            )
            layout = frame_layout(header)
        except (ReidentificationError, LayoutUnknown):
            return None
        return Skeleton(header, tuple(frame_sources), layout)

    def _write_skeleton_seg(
        self,
        ctx: JobContext,
        n: int,
        skeleton: Skeleton,
        segment: SegmentReference,
        *,
        sync: bool,
    ) -> PlannedOutput:
        """Write result ``n``, a SEG built ahead: its skeleton and the mask's frames in
        the skeleton's frame order (re-identified already: checked in the child)."""
        packed = segment.mask.packed
        index_of = {uid: i for i, uid in enumerate(segment.mask.source_sop_instance_uids)}
        order = [index_of[uid] for uid in skeleton.frame_sources]
        kept = kept_frames_of(packed, order)  # the segment's frames
        frames = [order[k] for k in kept]
        # frames that end on a byte are written as they are packed (not joined first: 16 MB)
        parts = (
            [packed.bits[i].data for i in frames]
            if (packed.rows * packed.columns) % 8 == 0
            else [packed.pixel_data(frames)]
        )
        relative = self.result_dir(ctx.job_id).relative_to(self.data_dir) / f"{n:02d}-seg.dcm"
        write_segmentation(self.data_dir / relative, skeleton, kept, parts, sync=sync)
        return PlannedOutput(
            "seg", segment.sop_instance_uid, SEGMENTATION_STORAGE, relative.as_posix()
        )

    def build_results(
        self,
        ctx: JobContext,
        result: AlgorithmResult,
        images: list[Dataset],
        original_header: Dataset | None = None,
        *,
        created: datetime.datetime | None = None,
        release_masks: bool = False,
    ) -> list[PlannedOutput]:
        """Build, re-identify and durably write the job's result objects
        (``original_header``: :meth:`original_header`, read here when not given;
        ``created``: the SEGs' content date and time, default now; ``release_masks``:
        the caller has no more use for ``result``'s masks, so they are released once
        the SEGs are written, before the other results are built, see
        :meth:`~aifi_app.algorithms.packed_mask.PackedFrames.release`: a 500-slice CT's
        mask is 16 MB).

        A SEG built ahead while the model ran (:mod:`aifi_app.pipeline.seg_ahead`) is
        used when it was built for what the result holds; otherwise it is built here, to
        the same bytes.

        A job with a Segmentation has it made first (built, re-identified, written) and,
        with :attr:`early` set, handed to the PACS at once; its other results are made
        while the PACS stores it, and handed over as one group too
        (:mod:`aifi_app.pipeline.early_delivery`). Either way the outputs are those of
        the canonical order (SCs, SR, SEGs, GSPSs, KO) with the same file names."""
        from aifi_app.results.segment_reference import SegmentReference

        # each builder imports highdicom when first called (_builder), not when planned
        build_secondary_capture = _builder("build_secondary_capture")
        build_measurement_report = _builder("build_measurement_report")
        build_segmentation = _builder("build_segmentation")
        build_presentation_state = _builder("build_presentation_state")
        build_key_object_selection = _builder("build_key_object_selection")

        by_uid = {str(ds.SOPInstanceUID): ds for ds in images}
        key = self._result_key(ctx)
        if created is None:
            created = datetime.datetime.now()
        if result.segmentations:
            first = result.segmentations[0]
            identity = ctx.package.identity
            self._segments_seen[(identity.algorithm_id, identity.version)] = (
                first.concept,
                first.label,
            )
        builds: list[tuple[str, Callable[[], Dataset]]] = []
        """Each result object's kind and how it is built, in the canonical order."""
        device_observer = derived_uid(self._secret, "device", ctx.package.identity.algorithm_id)
        tracking_base = derived_uid(self._secret, *key, "tracking")
        if "sc" in ctx.package.result_objects:
            sc_series = derived_uid(self._secret, *key, "sc-series")
            for n, finding in enumerate(result.findings, start=1):
                builds.append(
                    (
                        "sc",
                        functools.partial(
                            build_secondary_capture,
                            by_uid[finding.source_sop_instance_uid],
                            result,
                            finding,
                            series_instance_uid=sc_series,
                            sop_instance_uid=derived_uid(self._secret, *key, "sc", str(n)),
                            series_number=SC_SERIES_NUMBER,
                            instance_number=n,
                            software_version=__version__,
                        ),
                    )
                )
        # the SEGs' UIDs are derived, so the SR can reference their segments before they exist
        segments = (
            [
                SegmentReference(
                    sop_instance_uid=derived_uid(self._secret, *key, "seg", str(n)),
                    series_instance_uid=derived_uid(self._secret, *key, "seg-series"),
                    segment_number=1,
                    mask=segmentation,
                )
                for n, segmentation in enumerate(result.segmentations, start=1)
            ]
            if "seg" in ctx.package.result_objects
            else []
        )
        if original_header is None:
            original_header = self.original_header(ctx)
        sr_ahead: dict[int, tuple[SourcesEvidence, Callable[[], Dataset]]] = {}
        """The SR whose evidence of the images was made ahead, by its number: that
        evidence, and how the SR is built whole (with every image as evidence)."""
        if "sr" in ctx.package.result_objects:
            sr_args: dict[str, Any] = {
                "series_instance_uid": derived_uid(self._secret, *key, "sr-series"),
                "sop_instance_uid": derived_uid(self._secret, *key, "sr"),
                "series_number": SR_SERIES_NUMBER,
                "instance_number": 1,
                "device_observer_uid": device_observer,
                "software_version": __version__,
                "tracking_base_uid": tracking_base,
            }
            build_whole = functools.partial(
                build_measurement_report, images, result, segments=segments, **sr_args
            )
            evidence = self._sr_evidence(ctx, images, original_header)
            if evidence is None:
                builds.append(("sr", build_whole))
            else:
                sr_ahead[len(builds) + 1] = (evidence, build_whole)
                light = functools.partial(build_whole, evidence_of_all_sources=False)
                builds.append(
                    ("sr", self._sr_of_child(ctx, images, result, segments, sr_args, light))
                )
        ahead: dict[int, tuple[Skeleton, SegmentReference]] = {}
        """The SEGs built ahead, by their number among the results."""
        for n, segment in enumerate(segments, start=1):
            skeleton = self._seg_skeleton(ctx, n, segment.mask, images, original_header, created)
            if skeleton is not None:
                ahead[len(builds) + 1] = (skeleton, segment)
            builds.append(
                (
                    "seg",
                    functools.partial(
                        build_segmentation,
                        images,
                        segment.mask,
                        ctx.package.identity,
                        series_instance_uid=segment.series_instance_uid,
                        sop_instance_uid=segment.sop_instance_uid,
                        series_number=SEG_SERIES_NUMBER,
                        instance_number=n,
                        software_version=__version__,
                        created=created,
                        dimension_organization_uid=derived_uid(
                            self._secret, *key, "seg-dimensions", str(n)
                        ),
                    ),
                )
            )
        if "gsps" in ctx.package.result_objects and result.regions:
            from aifi_app.results import images_per_presentation_state  # highdicom

            gsps_series = derived_uid(self._secret, *key, "gsps-series")
            groups = images_per_presentation_state(result, images)
            for n, group in enumerate(groups, start=1):
                builds.append(
                    (
                        "gsps",
                        functools.partial(
                            build_presentation_state,
                            group,
                            result,
                            series_instance_uid=gsps_series,
                            sop_instance_uid=derived_uid(self._secret, *key, "gsps", str(n)),
                            series_number=GSPS_SERIES_NUMBER,
                            instance_number=n,
                            tracking_base_uid=tracking_base,
                            software_version=__version__,
                        ),
                    )
                )
        if "ko" in ctx.package.result_objects:
            from aifi_app.results import key_image_uids  # highdicom

            if key_image_uids(result):
                builds.append(
                    (
                        "ko",
                        functools.partial(
                            build_key_object_selection,
                            images,
                            result,
                            series_instance_uid=derived_uid(self._secret, *key, "ko-series"),
                            sop_instance_uid=derived_uid(self._secret, *key, "ko"),
                            series_number=KO_SERIES_NUMBER,
                            instance_number=1,
                            device_observer_uid=device_observer,
                        ),
                    )
                )
        # the SEGs first (the PACS takes longest to store them), then the others together
        numbered = list(enumerate(builds, start=1))
        phases = [
            [(n, kind, build) for n, (kind, build) in numbered if kind == "seg"],
            [(n, kind, build) for n, (kind, build) in numbered if kind != "seg"],
        ]
        phases = [phase for phase in phases if phase]
        made: list[tuple[int, str, Dataset]] = []
        planned: list[tuple[int, PlannedOutput]] = []
        handed_over: list[str] = []
        reidentifying = 0.0
        begun = time.perf_counter()
        marks: list[str] = []
        """When each group was written, on disk and sent (seconds from here), for the log."""

        def mark(what: str) -> None:
            marks.append(f"{what} {time.perf_counter() - begun:.3f}")

        flushing: DurableInBackground | None = None
        """The SEGs' files being made durable while a light SR is made (see below)."""
        resume_collections = _defer_collections()
        try:
            for index, phase in enumerate(phases):
                group_made = [(n, kind, build()) for n, kind, build in phase if n not in ahead]
                joins = self._evidence_joins(ctx, group_made, sr_ahead)
                group_ahead = [n for n, _, _ in phase if n in ahead]
                made += group_made + [(n, "seg", _own_uids_of(ahead[n][1])) for n in group_ahead]
                early = self.early is not None and len(phases) > 1
                started = now()
                written = (
                    self._reidentify_and_write_numbered(
                        ctx,
                        group_made,
                        original_header,
                        siblings_of=made,
                        sync=not early,
                        joins=joins,
                        whole={n: sr_ahead[n][1] for n in joins},
                    )
                    if group_made
                    else []
                )
                written += [
                    (n, self._write_skeleton_seg(ctx, n, *ahead[n], sync=not early))
                    for n in group_ahead
                ]
                written.sort(key=lambda w: w[0])
                reidentifying += now() - started
                planned += written
                # the later results need only their own UIDs (the SEG's metadata: ~20 MB)
                made = [(n, kind, _own_uids_of(ds)) for n, kind, ds in made]
                del group_made
                if release_masks and all(kind == "seg" for _, kind, _ in phase):
                    # written: the later results refer to the SEGs by UID, not by their
                    # masks (a 500-slice CT's: 16 MB, let go before the SR is built)
                    for segment in segments:
                        segment.mask.packed.release()
                mark("+".join(out.kind for _, out in written) + " written")
                if self.early is not None and early:
                    files = [self.data_dir / out.path for _, out in written]
                    objects = [
                        EarlyObject(out.kind, out.sop_instance_uid, path)
                        for (_, out), path in zip(written, files, strict=True)
                    ]
                    batch = self.early.deliver_early(ctx.job_id, objects)
                    if batch is not None:
                        handed_over += [out.kind for _, out in written]
                    following = phases[index + 1] if index + 1 < len(phases) else []
                    if following and all(n in sr_ahead for n, _, _ in following):
                        # only an SR with its evidence made ahead follows (~0.05 s of
                        # CPU): made now, while the SEG's files are flushed beside it and
                        # the sender hands its bytes to the kernel (a few large writes).
                        # The SEG's 16.7 MB then reach Orthanc 0.07-0.11 s after the
                        # hand-over instead of 0.04-0.08 s, but the SEG is stored as soon
                        # (0.26-0.44 s after it, median 0.33 s, against 0.22-0.39 s,
                        # median 0.32 s: the SR's CPU falls into Orthanc's reading instead
                        # of its storing) and the SR is on disk sooner (23 bench runs;
                        # bench/README.md, "After the model, sixth pass")
                        flushing = DurableInBackground(files)
                        continue
                    make_durable(files)  # on disk while they go (before the job records them)
                    mark("on disk")
                    if batch is not None and following:
                        # any other result built once the SEG's bytes are with the PACS:
                        # built while they go, it holds the interpreter's lock between the
                        # sender's writes (a CPU-bound thread beside it made sending a 13
                        # MB SEG to Orthanc 0.2-0.7 s slower)
                        batch.data_sent.wait(HANDOVER_WAIT_SECONDS)
                        mark("sent")
        except ResultQuarantined as exc:
            if flushing is not None:
                flushing.wait()
            for _, out in planned:  # not recorded: nothing points to them
                (self.data_dir / out.path).unlink(missing_ok=True)
            if handed_over:
                assert self.early is not None
                self.early.abandon_early(ctx.job_id)
                raise ResultQuarantined(
                    f"{exc}; its {', '.join(handed_over)} went to the PACS before"
                    " (see the audit log)"
                ) from exc
            raise
        finally:
            resume_collections()
        if flushing is not None:
            flushing.wait()  # the SEGs on disk before the job records them
            marks.append(f"seg on disk {flushing.finished_at - begun:.3f}")
        if len(phases) > 1:
            log.info("job %d: results made (s after the model): %s", ctx.job_id, ", ".join(marks))
        finished = now()
        # the re-identifications' total (with their writing), as the last one ended
        stage_times.record(
            self.db, ctx.job_id, stage_times.REIDENTIFY, finished - reidentifying, finished
        )
        return [out for _, out in sorted(planned, key=lambda p: p[0])]

    def _sr_of_child(
        self,
        ctx: JobContext,
        images: Sequence[Dataset],
        result: AlgorithmResult,
        segments: Sequence[SegmentReference],
        sr_args: Mapping[str, Any],
        build_here: Callable[[], Dataset],
    ) -> Callable[[], Dataset]:
        """How the job's SR with part of its images as evidence is made: asked of the
        pre-pseudonymiser's child when it is due (:mod:`aifi_app.pipeline.sr_in_child`;
        the child holds highdicom already, the service need not load it) and read back;
        built here (``build_here``) where there is no child to ask or its SR is not
        there in time or not whole. Not asked earlier: the SEGs are written and their
        masks let go by then (a 500-slice CT's: 16 MB), not held while the child builds."""
        sources = _work_paths(images)
        if self.prepared is None or not all(sources):
            return build_here
        request = SrRequest(
            job_id=ctx.job_id,
            sources=sources,
            result=result.to_json(),
            segments=tuple(
                ReferencedSegment(
                    sop_instance_uid=s.sop_instance_uid,
                    series_instance_uid=s.series_instance_uid,
                    segment_number=s.segment_number,
                    concept=s.mask.concept,
                    label=s.mask.label,
                    source_sop_instance_uids=s.mask.source_sop_instance_uids,
                )
                for s in segments
            ),
            **sr_args,
        )
        prepared = self.prepared

        def build() -> Dataset:
            sr_in_child.remove(request)
            if not prepared.request_sr(request):
                return build_here()
            found = sr_in_child.load(request)
            if isinstance(found, Dataset):
                log.info("job %d: SR built by the pre-pseudonymiser's child", ctx.job_id)
                return found
            log.info("job %d: SR built here (the child's: %s)", ctx.job_id, found)
            return build_here()

        return build

    def _evidence_joins(
        self,
        ctx: JobContext,
        group: list[tuple[int, str, Dataset]],
        sr_ahead: Mapping[int, tuple[SourcesEvidence, Callable[[], Dataset]]],
    ) -> dict[int, EvidenceJoin]:
        """How each SR of ``group`` built with part of its images as evidence gets the
        evidence made ahead of them all; an SR that cannot (not expected: its evidence
        is not what it was made for) is built whole in its place in ``group``."""
        from aifi_app.results.sr_evidence import EvidenceJoin

        joins = {}
        for i, (n, kind, ds) in enumerate(group):
            if n not in sr_ahead:
                continue
            evidence, build_whole = sr_ahead[n]
            try:
                joins[n] = EvidenceJoin.of(ds, evidence)
            except ValueError as exc:
                log.warning("job %d: SR made whole (%s)", ctx.job_id, exc)
                group[i] = (n, kind, build_whole())
        return joins

    def reidentify_and_write(
        self,
        ctx: JobContext,
        objects: Sequence[tuple[str, Dataset]],
        original_header: Dataset | None = None,
    ) -> list[PlannedOutput]:
        """Re-identify result objects (ours or a vendor's) strictly and write them durably.

        Raises :class:`ResultQuarantined` when one refers to anything outside the job's
        study and patient; that object is kept in the quarantine folder, none is written.
        """
        with stage_times.timed(self.db, ctx.job_id, stage_times.REIDENTIFY):
            if original_header is None:
                original_header = self.original_header(ctx)
            return self._reidentify_and_write(ctx, objects, original_header)

    def _reidentify_and_write(
        self, ctx: JobContext, objects: Sequence[tuple[str, Dataset]], original_header: Dataset
    ) -> list[PlannedOutput]:
        numbered = [(n, kind, ds) for n, (kind, ds) in enumerate(objects, start=1)]
        written = self._reidentify_and_write_numbered(ctx, numbered, original_header)
        return [out for _, out in written]

    def _reidentify_and_write_numbered(
        self,
        ctx: JobContext,
        objects: Sequence[tuple[int, str, Dataset]],
        original_header: Dataset,
        siblings_of: Sequence[tuple[int, str, Dataset]] | None = None,
        *,
        sync: bool = True,
        joins: Mapping[int, EvidenceJoin] | None = None,
        whole: Mapping[int, Callable[[], Dataset]] | None = None,
    ) -> list[tuple[int, PlannedOutput]]:
        """Re-identify and write ``objects`` (each with its number among the job's
        results, which names its file); they may reference the SOP Instance and Series
        UIDs of ``siblings_of`` (default: of each other). Every one is checked before any
        is changed: a refused one is still the pseudonymised one (for the quarantine), and
        an item two results share is re-identified once. ``sync=False``: the files are
        complete but left for the caller to make durable (:func:`part10.make_durable`).

        ``joins``: an SR built with part of its images as evidence gets the rest (made
        and checked ahead) once it is re-identified; ``whole``: how such an SR is built
        whole, for the quarantine when it is refused (the SR as it is made without)."""
        joins = joins or {}
        whole = whole or {}
        siblings = frozenset(
            str(ds.get(keyword) or "")
            for _, _, ds in (objects if siblings_of is None else siblings_of)
            for keyword in ("SOPInstanceUID", "SeriesInstanceUID")
        ) - {""}
        scope = dataclasses.replace(self.result_scope(ctx, original_header), sibling_uids=siblings)
        checked: list[tuple[int, str, CheckedResult]] = []
        for n, kind, ds in objects:
            try:
                checked.append(
                    (n, kind, check_reidentification(ds, self.original_for, original_header, scope))
                )
            except ReidentificationError as exc:
                path = self.quarantine_dir(ctx.job_id) / f"{n:02d}-{kind}.dcm"
                durable_write(path, part10_bytes(whole[n]() if n in whole else ds))
                log.warning("job %d: result %s quarantined: %s", ctx.job_id, kind, exc)
                raise ResultQuarantined(
                    f"result {kind} refused and quarantined, never sent: {exc}"
                ) from exc
        restored_all = [
            (n, kind, joins[n].apply(result.apply()) if n in joins else result.apply())
            for n, kind, result in checked
        ]
        planned = []
        out_dir = self.result_dir(ctx.job_id)
        for n, kind, restored in restored_all:
            relative = out_dir.relative_to(self.data_dir) / f"{n:02d}-{kind}.dcm"
            write_part10_durably(self.data_dir / relative, restored, sync=sync)
            planned.append(
                (
                    n,
                    PlannedOutput(
                        kind,
                        str(restored.SOPInstanceUID),
                        str(restored.SOPClassUID),
                        relative.as_posix(),
                    ),
                )
            )
        return planned

    def quarantine_dir(self, job_id: int) -> Path:
        return self.data_dir / "quarantine" / str(job_id)

    def result_scope(self, ctx: JobContext, original_header: Dataset) -> ResultScope:
        """What the job's results may reference: its study, its patient, its instances."""
        pseudonymiser = self.pseudonymiser(ctx, [])
        patient_id = str(original_header.get("PatientID") or "")
        shifted = ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in pseudonymiser.options
        return ResultScope(
            study_uid=ctx.study_uid,
            patient_pseudonym=pseudonymiser.patient_pseudonym(patient_id) if patient_id else "",
            accession_number=str(original_header.get("AccessionNumber") or ""),
            study_id=str(original_header.get("StudyID") or ""),
            study_of_instance=self.study_of_instance,
            date_offset_days=pseudonymiser.date_offset_days(patient_id) if shifted else None,
        )

    def study_of_instance(self, sop_instance_uid: str) -> str | None:
        row = self.db.conn.execute(
            "SELECT s.study_uid FROM instances i JOIN studies s ON s.id = i.study_id"
            " WHERE i.sop_instance_uid = ? LIMIT 1",
            (sop_instance_uid,),
        ).fetchone()
        return None if row is None else str(row[0])

    def original_for(self, pseudonym: str) -> str | None:
        row = self.db.conn.execute(
            "SELECT original FROM pseudonyms WHERE pseudonym = ?", (pseudonym,)
        ).fetchone()
        return None if row is None else str(row[0])
