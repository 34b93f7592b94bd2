"""A job's Segmentation built while its model runs, so that only its Pixel Data is left.

A binary SEG with one frame per source image depends on the mask only through its Pixel
Data (:func:`aifi_app.results.segmentation.build_segmentation_headers`) and the frames
the mask leaves empty, which are left out of its encoded bytes once the mask is known
(:mod:`aifi_app.results.segmentation_frames`, from the layout of those bytes the child
finds and keeps with them). So when a job
whose package makes a SEG goes to a local runner, the worker asks the pre-pseudonymiser's
warm child process (``SCHED_IDLE``: it takes only CPU that nothing else wants, the cores
the model leaves idle) to build it ahead (:class:`SegAheadRequest`): from the job's
pseudonymised work files, the UIDs, numbers and creation time the job's results use,
and a speculated segment (label and concept: the same algorithm version's previous
result, or what the package declares). The child re-identifies it with the same check
as the worker (:func:`~aifi_app.pseudonymise.check_reidentification`, the job's scope;
the pseudonyms through its read-only connection to the queue, committed before the job
was handed to the runner) and writes its encoded bytes up to Pixel Data (the last
element) and, last, a description of them (:func:`build_ahead`).

After the model the worker uses them only if the speculation held: the mask's source
images are the job's images, the request it would make now equals the one the skeleton
was made for (segment, algorithm, UIDs, scope, time), and the bytes are whole (their
SHA-256); the SEG file is then those bytes and the Pixel Data element
(:func:`write_segmentation`). Otherwise it builds the SEG itself, from the same request,
to the same bytes (tests compare them). Nothing depends on the skeleton for safety: it is
checked like any result before it leaves, and a missing, stale or torn one is not used.

Thread: :func:`build_ahead` in the child (or a test); the rest on the worker thread.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import sqlite3
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydicom import Dataset, dcmread

from aifi_app import heap_trim
from aifi_app.algorithms.findings import AlgorithmIdentity, CodedConcept
from aifi_app.dicom_node.spool import durable_write
from aifi_app.part10 import part10_bytes, replaced_file
from aifi_app.pipeline import sr_in_child
from aifi_app.pipeline.made_ahead import made_for
from aifi_app.pseudonymise import ResultScope, check_reidentification
from aifi_app.results.segmentation_frames import (
    FrameLayout,
    LayoutUnknown,
    frame_layout,
    without_frames,
)

if TYPE_CHECKING:  # imported when the evidence is first made or read
    from aifi_app.results.sr_evidence import SourcesEvidence

log = logging.getLogger(__name__)

PIXEL_DATA_TAG = 0x7FE00010
SKELETON_NAME = "seg-ahead-{number}"
"""The skeleton's files in the job's work folder: ``.hdr`` (the bytes up to Pixel Data)
and ``.json`` (what they were made for; written last). Not ``.dcm``: the job's images
are its ``.dcm`` files."""


SR_EVIDENCE_NAME = "sr-evidence"
"""The SR's evidence made ahead, in the job's work folder: ``.bin`` (its encoded series
items) and ``.json`` (what they were made for; written last)."""


@dataclass(frozen=True)
class EvidenceAheadRequest:
    """What a job's SR records as the evidence of its source images is made from
    (:mod:`aifi_app.results.sr_evidence`), sent with the job's :class:`SegAheadRequest`
    (the child reads the sources once for both)."""

    job_id: int
    sources: tuple[str, ...]
    """The job's work images (paths), in the job's order."""
    original_header: str
    study_uid: str
    patient_pseudonym: str
    accession_number: str
    study_id: str
    date_offset_days: int | None

    def key(self) -> str:
        """A digest of every field (the evidence names the request it was made for)."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def scope(self, study_of_instance: Callable[[str], str | None]) -> ResultScope:
        """The job's re-identification scope, without siblings (stricter than the SR's
        own check: evidence of the sources names none of the job's results)."""
        return _scope(self, study_of_instance, frozenset())


@dataclass(frozen=True)
class SegAheadRequest:
    """Everything a job's SEG number ``number`` is built and re-identified from but its
    mask (picklable, sent to the child); equal requests give equal bytes."""

    job_id: int
    number: int
    sources: tuple[str, ...]
    """The job's work images (paths), in the job's order: the SEG's source images."""
    original_header: str
    """Path of the first instance the job works on (re-identification's identity)."""
    concept: CodedConcept
    label: str
    algorithm: AlgorithmIdentity
    series_instance_uid: str
    sop_instance_uid: str
    series_number: int
    instance_number: int
    software_version: str
    created: str
    """ISO date and time: the SEG's content and instance creation date and time."""
    dimension_organization_uid: str
    study_uid: str
    patient_pseudonym: str
    accession_number: str
    study_id: str
    date_offset_days: int | None
    sr_evidence: EvidenceAheadRequest | None = None
    """The job's SR's evidence to make too (after the SEG), when the job makes an SR."""

    def key(self) -> str:
        """A digest of every field (the skeleton names the request it was made for)."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def scope(self, study_of_instance: Callable[[str], str | None]) -> ResultScope:
        """The job's re-identification scope, the SEG's own UIDs as its siblings (as the
        worker checks a job's SEGs: together, before its other results)."""
        return _scope(
            self, study_of_instance, frozenset({self.sop_instance_uid, self.series_instance_uid})
        )

    def build(self, sources: Sequence[Dataset]) -> Dataset:
        """The SEG's elements but Pixel Data (highdicom), pseudonymised."""
        from aifi_app.results.segmentation import build_segmentation_headers  # highdicom

        return build_segmentation_headers(
            sources,
            self.concept,
            self.label,
            self.algorithm,
            series_instance_uid=self.series_instance_uid,
            sop_instance_uid=self.sop_instance_uid,
            series_number=self.series_number,
            instance_number=self.instance_number,
            software_version=self.software_version,
            created=datetime.datetime.fromisoformat(self.created),
            dimension_organization_uid=self.dimension_organization_uid,
        )


def _scope(
    request: EvidenceAheadRequest | SegAheadRequest,
    study_of_instance: Callable[[str], str | None],
    siblings: frozenset[str],
) -> ResultScope:
    """A request's re-identification scope (the job's study, as the worker has it)."""
    return ResultScope(
        study_uid=request.study_uid,
        patient_pseudonym=request.patient_pseudonym,
        accession_number=request.accession_number,
        study_id=request.study_id,
        study_of_instance=study_of_instance,
        date_offset_days=request.date_offset_days,
        sibling_uids=siblings,
    )


@dataclass(frozen=True)
class Skeleton:
    """A SEG built ahead: its bytes up to Pixel Data, its frames' source images, and
    where its frame-dependent parts lie (to leave out the frames the mask leaves empty,
    :func:`write_segmentation`)."""

    header: bytes
    frame_sources: tuple[str, ...]
    """Each frame's source SOP Instance UID, in frame order."""
    layout: FrameLayout


def skeleton_paths(work_dir: Path, number: int) -> tuple[Path, Path]:
    """The skeleton's header and description files in a job's work folder."""
    stem = SKELETON_NAME.format(number=number)
    return work_dir / f"{stem}.hdr", work_dir / f"{stem}.json"


def build_ahead(
    request: SegAheadRequest,
    original_for: Callable[[str], str | None],
    study_of_instance: Callable[[str], str | None],
) -> None:
    """Build, re-identify and write the skeleton of ``request`` into the job's work
    folder, and then the SR's evidence it asks for (:func:`build_evidence_ahead`).
    Raises what the build or the re-identification raises (nothing more is written
    then: the worker builds the SEG, or the SR's evidence, itself and refuses it the
    same way)."""
    from aifi_app.results import module_attributes  # highdicom
    from aifi_app.results.segmentation import segmentation_frame_order

    module_attributes.install()  # not highdicom's whole table: the modules asked for
    first = [dcmread(path, stop_before_pixels=True) for path in request.sources[:REHEARSAL]]
    original_header = dcmread(request.original_header, stop_before_pixels=True)
    rehearse(request, first, original_header, original_for, study_of_instance)
    rest = request.sources[len(first) :]
    sources = first + [dcmread(path, stop_before_pixels=True) for path in rest]
    ds = request.build(sources)
    frame_sources = segmentation_frame_order(ds)  # pseudonymised, as the mask names them
    _write_skeleton(request, ds, frame_sources, original_header, original_for, study_of_instance)
    del ds
    if request.sr_evidence is not None and request.sr_evidence.sources == request.sources:
        build_evidence_ahead(
            request.sr_evidence, sources, original_header, original_for, study_of_instance
        )
        sr_in_child.keep_sources(request.sources, sources)  # for the SR, after the model


REHEARSAL = 3
"""Source images of the SEG (and SR evidence) :func:`rehearse` builds and throws away."""

_rehearsed: set[str] = set()
"""The SOP classes of source images whose SEG this process has rehearsed (the child's
low-priority thread alone builds ahead)."""


def rehearse(
    request: SegAheadRequest,
    first: Sequence[Dataset],
    original_header: Dataset,
    original_for: Callable[[str], str | None],
    study_of_instance: Callable[[str], str | None],
) -> bool:
    """Once per process and SOP class of the sources: build, re-identify and encode the
    SEG of the request's first images ``first`` (read) and their SR evidence, write
    nothing, and throw it away; True when it did.

    What a first build loads on its way and keeps (the modules of highdicom's table it
    asks for, :mod:`aifi_app.results.module_attributes`; ``numpy.ma``, which
    ``numpy.unique`` imports) is then loaded before the request's other images are read.
    Loaded in the middle of a CT's build, those long-lived objects lay among the build's
    short-lived ones and kept CPython's arenas from being given back after it: measured
    (``bench/seg_ahead_memory_bench.py``), the child kept 24 MB of the 27 MB a 500-slice
    CT's build took, rehearsed 6 MB. A rehearsal that fails is left at that: the build
    itself raises what it raises."""
    sop_class = str(first[0].get("SOPClassUID", "")) if first else ""
    if not sop_class or sop_class in _rehearsed:
        return False
    _rehearsed.add(sop_class)
    from aifi_app.results.segmentation import segmentation_frame_order  # highdicom

    small = dataclasses.replace(request, sources=request.sources[: len(first)], sr_evidence=None)
    try:
        ds = small.build(first)
        segmentation_frame_order(ds)
        skeleton_header(small, ds, original_header, original_for, study_of_instance)
        if request.sr_evidence is not None:
            _reidentified_evidence(
                request.sr_evidence, first, original_header, original_for, study_of_instance
            )
    except Exception as exc:
        log.debug("job %d: rehearsing its SEG failed (%s)", request.job_id, type(exc).__name__)
    return True


def skeleton_header(
    request: SegAheadRequest,
    ds: Dataset,
    original_header: Dataset,
    original_for: Callable[[str], str | None],
    study_of_instance: Callable[[str], str | None],
) -> bytes:
    """The encoded elements of ``request``'s SEG ``ds`` but Pixel Data, re-identified
    (raises :class:`~aifi_app.pseudonymise.ReidentificationError` when it would not be)."""
    restored = check_reidentification(
        ds, original_for, original_header, request.scope(study_of_instance)
    ).apply()
    if PIXEL_DATA_TAG in restored:
        del restored[PIXEL_DATA_TAG]
    return part10_bytes(restored)


def _write_skeleton(
    request: SegAheadRequest,
    ds: Dataset,
    frame_sources: list[str],
    original_header: Dataset,
    original_for: Callable[[str], str | None],
    study_of_instance: Callable[[str], str | None],
) -> None:
    header = skeleton_header(request, ds, original_header, original_for, study_of_instance)
    layout = frame_layout(header)  # raises LayoutUnknown: the worker builds the SEG
    hdr, description = skeleton_paths(Path(request.sources[0]).parent, request.number)
    durable_write(hdr, header)
    durable_write(
        description,
        json.dumps(
            {
                "key": request.key(),
                "sha256": hashlib.sha256(header).hexdigest(),
                "frame_sources": frame_sources,
                "frame_layout": layout.to_json(),
            }
        ).encode(),
    )


def evidence_paths(work_dir: Path) -> tuple[Path, Path]:
    """The SR's evidence made ahead: its bytes and description files."""
    return work_dir / f"{SR_EVIDENCE_NAME}.bin", work_dir / f"{SR_EVIDENCE_NAME}.json"


def _reidentified_evidence(
    request: EvidenceAheadRequest,
    sources: Sequence[Dataset],
    original_header: Dataset,
    original_for: Callable[[str], str | None],
    study_of_instance: Callable[[str], str | None],
) -> SourcesEvidence:
    """The SR's evidence of ``sources``, re-identified with ``request``'s check (raises
    what the check raises)."""
    from aifi_app.results.sr_evidence import sources_evidence  # highdicom

    scope = request.scope(study_of_instance)
    return sources_evidence(
        sources,
        lambda ds: check_reidentification(ds, original_for, original_header, scope).apply(),
    )


def build_evidence_ahead(
    request: EvidenceAheadRequest,
    sources: Sequence[Dataset],
    original_header: Dataset,
    original_for: Callable[[str], str | None],
    study_of_instance: Callable[[str], str | None],
) -> None:
    """Make the SR's evidence of ``sources`` (the request's, read), re-identified with
    the job's check, and write it into the job's work folder; raises what the check
    raises (nothing is written then: the SR is made whole after the model)."""
    evidence = _reidentified_evidence(
        request, sources, original_header, original_for, study_of_instance
    )
    data, description = evidence_paths(Path(request.sources[0]).parent)
    durable_write(data, evidence.items)
    durable_write(
        description,
        json.dumps(
            {
                "key": request.key(),
                "sha256": hashlib.sha256(evidence.items).hexdigest(),
                "digest": evidence.digest,
                "series_uids": evidence.series_uids,
            }
        ).encode(),
    )


def load_evidence(
    request: EvidenceAheadRequest, sources: Sequence[Dataset]
) -> SourcesEvidence | str:
    """The SR's evidence made for ``request`` when it is of ``sources`` (the worker's
    images: :func:`~aifi_app.results.sr_evidence.evidence_digest`), or why there is none
    to use (in words)."""
    from aifi_app.results.sr_evidence import SourcesEvidence, evidence_digest

    made = made_for(
        request.key(),
        *evidence_paths(Path(request.sources[0]).parent if request.sources else Path()),
        missing="not made in time",
    )
    if isinstance(made, str):
        return made
    about, items = made
    if about.get("digest") != evidence_digest(sources):
        return "made of other images"
    return SourcesEvidence(
        digest=str(about["digest"]),
        series_uids=tuple(str(uid) for uid in about.get("series_uids", ())),
        items=items,
    )


def load_skeleton(request: SegAheadRequest) -> Skeleton | str:
    """The skeleton made for ``request``, or why there is none to use (in words)."""
    work_dir = Path(request.sources[0]).parent if request.sources else Path()
    made = made_for(
        request.key(), *skeleton_paths(work_dir, request.number), missing="not built in time"
    )
    if isinstance(made, str):
        return made
    about, header = made
    try:
        layout = FrameLayout.from_json(about.get("frame_layout", {}))
    except LayoutUnknown:
        return "made without its frames' layout"
    frame_sources = tuple(str(uid) for uid in about.get("frame_sources", ()))
    if len(frame_sources) != len(layout.items):
        return "its frames' layout does not fit them"
    return Skeleton(header, frame_sources, layout)


def write_segmentation(
    dest: Path,
    skeleton: Skeleton,
    kept: Sequence[int],
    pixel_data: Sequence[bytes | memoryview],
    *,
    sync: bool,
) -> None:
    """The SEG file: the skeleton's bytes with only its frames ``kept`` (indices in its
    frame order, ascending: :func:`kept_frames_of`; see
    :mod:`aifi_app.results.segmentation_frames`) and the Pixel Data element of
    ``pixel_data``, those frames' packed bits (its parts one after the other, so that a
    mask's packed frames need not be joined in memory first; VR OB, defined length,
    padded to even length: as pydicom writes a BINARY SEG's in Explicit VR Little Endian;
    tests compare the bytes with the SEG built whole), written as
    :func:`aifi_app.part10.write_part10_durably` writes (a temporary file renamed;
    ``sync=False``: left for the caller's :func:`~aifi_app.part10.make_durable`)."""
    header = without_frames(skeleton.header, skeleton.layout, kept)
    length = sum(memoryview(part).nbytes for part in pixel_data)
    padded = length % 2
    with replaced_file(dest, sync=sync) as fh:
        fh.write(header)
        fh.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, length + padded))
        for part in pixel_data:
            fh.write(part)
        if padded:
            fh.write(b"\0")


def warm_up() -> None:
    """Import the SEG builder and load highdicom's tables of the standard, its table of
    module attributes read one module at a time (:mod:`aifi_app.results.module_attributes`:
    ~0.2 s of CPU and ~21 MB, highdicom's import most of it; its whole table took ~0.5 s
    more and ~65 MB), so that a first SEG built ahead is ready before a model of a few
    seconds ends. For the pre-pseudonymiser's child, when it has nothing else to do."""
    from aifi_app.results.segmentation import build_segmentation_headers  # noqa: F401
    from aifi_app.results.standard_tables import load_and_freeze

    load_and_freeze()  # (installs the table read a module at a time first)


class _Queries(Protocol):
    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]: ...


def build_in_child(request: SegAheadRequest, db: _Queries) -> None:
    """:func:`build_ahead` with the pseudonyms and instances of the queue (the
    pre-pseudonymiser's read-only connection), as the worker looks them up."""

    def original_for(pseudonym: str) -> str | None:
        rows = db.query("SELECT original FROM pseudonyms WHERE pseudonym = ?", (pseudonym,))
        return str(rows[0][0]) if rows else None

    def study_of_instance(sop_instance_uid: str) -> str | None:
        rows = db.query(
            "SELECT s.study_uid FROM instances i JOIN studies s ON s.id = i.study_id"
            " WHERE i.sop_instance_uid = ? LIMIT 1",
            (sop_instance_uid,),
        )
        return str(rows[0][0]) if rows else None

    started = time.perf_counter()
    try:
        build_ahead(request, original_for, study_of_instance)
        log.info(
            "job %d: SEG %d built ahead in %.3f s",
            request.job_id,
            request.number,
            time.perf_counter() - started,
        )
    finally:  # its images and SEG are garbage now: what the heap can give back, back
        heap_trim.trim()
