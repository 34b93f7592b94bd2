"""A job's SR built by the pre-pseudonymiser's child once the model has ended, so that
the service itself need not load highdicom for it.

highdicom, pydicom's tables of codes and highdicom's tables of the standard take ~19 MB
of a process's memory once imported, and a process does not give them back. The
pre-pseudonymiser's warm child holds them anyway: it builds the job's SEG while the model
runs (:mod:`aifi_app.pipeline.seg_ahead`). A job whose SR's evidence the child made
ahead therefore asks it for the SR as well, when the SR is due: after the model, once
the job's SEGs are written and their masks let go (:class:`SrRequest`: the result's
findings and measurements, the SR's UIDs and numbers, the SEGs it refers to). The child
builds the SR with part of its images as evidence (as the worker would,
``evidence_of_all_sources=False``), pseudonymised, from the same images (kept from
building the SEG ahead, :func:`keep_sources`, or read again), and writes its encoded
bytes and, last, a description of them into the job's work folder
(:func:`build_in_child`). Measured in a running appliance (``python -m bench --only
memory``), a CT's peak after the first fell from 309-318 MB to 286-293 MB.

The worker reads it back (:func:`load`: made for the same request, whole) and goes on
as with the SR it would have built: re-identified with the job's check, joined with its
evidence made ahead, written. Where the child's SR is not there in time
(:data:`WAIT_SECONDS`), torn, or made for another request, the worker builds it itself,
to the same bytes (tests compare them). Nothing depends on the child for safety: its SR
is checked like any result before it leaves.

Thread: :func:`build_in_child` in the child's own thread (or a test); :func:`load` on the
worker thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydicom import Dataset, dcmread

from aifi_app import heap_trim
from aifi_app.algorithms.findings import AlgorithmResult, CodedConcept, SegmentationMask
from aifi_app.algorithms.packed_mask import PackedFrames
from aifi_app.part10 import part10_bytes, replaced_file
from aifi_app.pipeline.made_ahead import made_for

log = logging.getLogger(__name__)

SR_NAME: Final = "sr-in-child"
"""The SR's files in the job's work folder: ``.bin`` (the encoded SR, pseudonymised) and
``.json`` (what it was made for; written last). Not ``.dcm``: the job's images are its
``.dcm`` files."""
WAIT_SECONDS: Final = 3.0
"""How long the worker waits for the child's SR (built in ~0.1 s) before it builds the
SR itself (the child may be busy with another job's SEG)."""
POLL_SECONDS: Final = 0.002
KEEP_SECONDS: Final = 300.0
"""How long the child keeps a job's images read for its SEG, for its SR, when no SR is
asked for (the model failed, or took longer): they are read again then."""


@dataclass(frozen=True)
class ReferencedSegment:
    """A SEG's segment that the SR refers to (its UIDs, derived before the SEG exists)."""

    sop_instance_uid: str
    series_instance_uid: str
    segment_number: int
    concept: CodedConcept
    label: str
    source_sop_instance_uids: tuple[str, ...]


@dataclass(frozen=True)
class SrRequest:
    """Everything a job's SR is built from but its images (picklable, sent to the child);
    equal requests give equal SRs (but their creation times)."""

    job_id: int
    sources: tuple[str, ...]
    """The job's work images (paths), in the job's order: the SR's sources."""
    result: str
    """The model's result: :meth:`AlgorithmResult.to_json` (no masks: the SR needs none)."""
    segments: tuple[ReferencedSegment, ...]
    series_instance_uid: str
    sop_instance_uid: str
    series_number: int
    instance_number: int
    device_observer_uid: str
    software_version: str
    tracking_base_uid: str

    def key(self) -> str:
        """A digest of every field (the SR's description names the request)."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def build(self, sources: Sequence[Dataset]) -> Dataset:
        """The SR with part of ``sources`` as evidence (highdicom), pseudonymised."""
        from aifi_app.results import build_measurement_report  # highdicom
        from aifi_app.results.segment_reference import SegmentReference
        from aifi_app.results.standard_tables import load_and_freeze

        load_and_freeze()
        segments = [
            SegmentReference(
                sop_instance_uid=s.sop_instance_uid,
                series_instance_uid=s.series_instance_uid,
                segment_number=s.segment_number,
                # the SR reads the segment's concept and images, never its frames
                mask=SegmentationMask(
                    s.concept, s.label, s.source_sop_instance_uids, PackedFrames(0, 1, 1)
                ),
            )
            for s in self.segments
        ]
        return build_measurement_report(
            sources,
            AlgorithmResult.from_json(self.result),
            series_instance_uid=self.series_instance_uid,
            sop_instance_uid=self.sop_instance_uid,
            series_number=self.series_number,
            instance_number=self.instance_number,
            device_observer_uid=self.device_observer_uid,
            software_version=self.software_version,
            tracking_base_uid=self.tracking_base_uid,
            segments=segments,
            evidence_of_all_sources=False,
        )


def sr_paths(work_dir: Path) -> tuple[Path, Path]:
    """The child's SR: its bytes and description files in a job's work folder."""
    return work_dir / f"{SR_NAME}.bin", work_dir / f"{SR_NAME}.json"


def _work_dir(request: SrRequest) -> Path:
    return Path(request.sources[0]).parent if request.sources else Path()


@dataclass
class _Kept:
    paths: tuple[str, ...]
    images: Sequence[Dataset]
    since: float


_kept: _Kept | None = None
"""The images the child last read for a SEG whose job makes an SR too (one job's: the
child builds one job's SEG at a time, and its threads take turns: see
:mod:`aifi_app.pipeline.low_priority_child`)."""


def keep_sources(paths: tuple[str, ...], images: Sequence[Dataset]) -> None:
    """Keep ``images`` (read from ``paths``) for the job's SR (:func:`build_in_child`)."""
    global _kept
    _kept = _Kept(paths, images, time.monotonic())


def forget_sources(older_than: float = 0.0) -> bool:
    """Let the kept images go when they were kept ``older_than`` seconds ago or more;
    True when some were let go."""
    global _kept
    if _kept is None or time.monotonic() - _kept.since < older_than:
        return False
    _kept = None
    return True


def _sources(paths: tuple[str, ...]) -> Sequence[Dataset]:
    """The images at ``paths``: those kept when they are these, else read now."""
    if _kept is not None and _kept.paths == paths:
        return _kept.images
    return [dcmread(path, stop_before_pixels=True) for path in paths]


def build_in_child(request: SrRequest) -> None:
    """Build the SR of ``request`` and write it, and then its description, into the job's
    work folder; the kept images are let go. Raises what the build raises (nothing is
    written then: the worker builds the SR itself, and fails the same way)."""
    started = time.perf_counter()
    try:
        data = part10_bytes(request.build(_sources(request.sources)))
    finally:  # the images and the SR are garbage now: what the heap can give back, back
        forget_sources()
        heap_trim.trim()
    path, description = sr_paths(_work_dir(request))
    about = {"key": request.key(), "sha256": hashlib.sha256(data).hexdigest()}
    # each renamed into place whole; not made durable (a work file: after a crash the
    # job's SR is built again)
    for dest, content in ((path, data), (description, json.dumps(about).encode())):
        with replaced_file(dest, sync=False) as fh:
            fh.write(content)
    log.info("job %d: SR built in %.3f s", request.job_id, time.perf_counter() - started)


def load(request: SrRequest, wait: float = WAIT_SECONDS) -> Dataset | str:
    """The SR the child built for ``request`` (read back: pseudonymised, part of its
    images as evidence), waiting up to ``wait`` seconds for it; or why there is none to
    use (in words)."""
    path, description = sr_paths(_work_dir(request))
    deadline = time.monotonic() + wait
    while not description.exists():
        if time.monotonic() >= deadline:
            return "not built in time"
        time.sleep(POLL_SECONDS)
    made = made_for(request.key(), path, description, missing="not built")
    if isinstance(made, str):
        return made
    _, data = made
    try:
        return dcmread(io.BytesIO(data))
    except Exception as exc:  # pydicom raises many kinds on bad bytes
        return f"unreadable ({type(exc).__name__})"


def remove(request: SrRequest) -> None:
    """Remove the child's SR files of the request's job (before it is asked again)."""
    for path in sr_paths(_work_dir(request)):
        path.unlink(missing_ok=True)
