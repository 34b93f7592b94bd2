"""A CT's SEG built while its model runs (the pre-pseudonymiser's child builds it ahead):
the same bytes as the SEG built after the model, valid, re-identified; built after the
model whenever the speculation did not hold or the skeleton is missing or torn."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread

from aifi_app.algorithms.findings import AlgorithmResult, CodedConcept, SegmentationMask
from aifi_app.demo import DemoPacs
from aifi_app.pipeline import seg_ahead
from aifi_app.pipeline.pre_pseudonymise import PrePseudonymiser
from aifi_app.pipeline.processing import JobContext
from aifi_app.pseudonymise import ReidentificationError
from aifi_app.service import Appliance
from aifi_app.store import jobs
from aifi_app.store.states import JobState
from tests.helpers.highdicom_clock import stop_highdicom_clock
from tests.helpers.tools import dciodvfy_errors, dsrdump
from tests.pipeline.test_chain_in_process import KEY
from tests.pipeline.test_processing import _pseudonymised_ct

CREATED = datetime.datetime(2026, 11, 29, 9, 15, 30, 123456)
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclasses.dataclass
class Job:
    app: Appliance
    ctx: JobContext
    images: list[Dataset]
    header: Dataset
    result: AlgorithmResult

    def request(self, **changes: object) -> seg_ahead.SegAheadRequest:
        mask = self.result.segmentations[0]
        request = self.app.processor._seg_request(
            self.ctx,
            1,
            mask.concept,
            mask.label,
            tuple(str(ds.filename) for ds in self.images),
            self.header,
            CREATED,
        )
        return dataclasses.replace(request, **changes)  # type: ignore[arg-type]

    def build_ahead(self, request: seg_ahead.SegAheadRequest | None = None) -> None:
        processor = self.app.processor
        seg_ahead.build_ahead(
            request or self.request(), processor.original_for, processor.study_of_instance
        )

    def results(self, result: AlgorithmResult | None = None) -> dict[str, bytes]:
        """Build the job's results after the model; each kind's file bytes."""
        planned = self.app.processor.build_results(
            self.ctx, result or self.result, self.images, self.header, created=CREATED
        )
        return {out.kind: (self.app.data_dir / out.path).read_bytes() for out in planned}

    def skeleton_files(self) -> tuple[Path, Path]:
        return seg_ahead.skeleton_paths(self.app.processor.work_dir(self.ctx.job_id), 1)

    def remove_skeleton(self) -> None:
        for path in self.skeleton_files():
            path.unlink(missing_ok=True)


@pytest.fixture
def job(tmp_path: Path, pacs: DemoPacs) -> Job:
    app, job_id = _pseudonymised_ct(tmp_path, pacs)
    app.processor.early = None  # results only written here, not sent
    ctx = app.processor.context(job_id)
    images = app.processor.job_images(job_id)
    result = app.processor._runners.get(ctx.package).run(images)
    yield Job(app, ctx, images, app.processor.original_header(ctx), result)  # type: ignore[misc]
    app.db.close()


def _path(job: Job, log: list[str]) -> str:
    (line,) = [m for m in log if "SEG 1 " in m]
    return line


def _seg_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "SEG 1" in r.getMessage()]


@pytest.mark.dicom3tools
def test_the_seg_built_ahead_is_the_seg_built_after_the_model(
    job: Job, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aifi_app.pipeline.processing")
    job.build_ahead()
    ahead = job.results()
    assert "from the one built while the model ran" in _path(job, _seg_log(caplog))
    caplog.clear()
    job.remove_skeleton()
    after = job.results()
    assert "built now (none built ahead: not built in time)" in _path(job, _seg_log(caplog))
    assert ahead["seg"] == after["seg"]  # byte for byte
    path = tmp_path / "seg.dcm"
    path.write_bytes(ahead["seg"])
    assert dciodvfy_errors(path) == []
    seg = dcmread(path)
    # one frame per source image (the lung on every slice); the mask's frames in order
    mask = job.result.segmentations[0]
    assert int(seg.NumberOfFrames) == len(job.images) == mask.packed.frames
    assert (str(seg.ContentDate), str(seg.InstanceCreationTime)) == ("20261129", "091530.123456")
    originals = {job.app.processor.original_for(str(ds.SOPInstanceUID)) for ds in job.images}
    frames = [
        f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        for f in seg.PerFrameFunctionalGroupsSequence
    ]
    assert set(frames) == originals  # re-identified: the original images
    by_original = {
        job.app.processor.original_for(uid): n
        for n, uid in enumerate(mask.source_sop_instance_uids)
    }
    assert (seg.pixel_array.astype(bool) == mask.mask[[by_original[f] for f in frames]]).all()
    # no pseudonym of the job in it: not its images', study's or patient's
    pseudonyms = [
        str(ds.get(keyword)) for ds in job.images for keyword in ("SOPInstanceUID", "PatientID")
    ] + [str(job.images[0].StudyInstanceUID), str(job.images[0].SeriesInstanceUID)]
    for pseudonym in set(pseudonyms):
        assert pseudonym.encode() not in ahead["seg"]


@pytest.mark.dicom3tools
def test_the_frames_the_mask_leaves_empty_are_left_out_of_the_seg_built_ahead(
    job: Job, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The skeleton holds a frame per image; the SEG written from it holds only those in
    which the segment is present, the same bytes as when it is built after the model."""
    caplog.set_level(logging.INFO, logger="aifi_app.pipeline.processing")
    mask = job.result.segmentations[0]
    pixels = mask.mask.copy()
    gone = {0, len(pixels) // 2, len(pixels) - 1}  # a gap in the middle as well
    pixels[sorted(gone)] = False
    holed = SegmentationMask.from_array(
        mask.concept, mask.label, mask.source_sop_instance_uids, pixels
    )
    result = dataclasses.replace(job.result, segmentations=(holed,))
    job.build_ahead()
    ahead = job.results(result)
    assert "from the one built while the model ran" in _path(job, _seg_log(caplog))
    caplog.clear()
    job.remove_skeleton()
    assert job.results(result)["seg"] == ahead["seg"]
    assert "built now" in _path(job, _seg_log(caplog))
    path = tmp_path / "seg.dcm"
    path.write_bytes(ahead["seg"])
    assert dciodvfy_errors(path) == []
    seg = dcmread(path)
    assert int(seg.NumberOfFrames) == len(job.images) - len(gone)
    assert "DimensionOrganizationType" not in seg  # the gap: not evenly spaced
    by_original = {
        job.app.processor.original_for(uid): n
        for n, uid in enumerate(mask.source_sop_instance_uids)
    }
    frames = [
        by_original[f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        for f in seg.PerFrameFunctionalGroupsSequence
    ]
    assert sorted(frames) == sorted(set(range(len(pixels))) - gone)
    assert [
        list(f.FrameContentSequence[0].DimensionIndexValues)
        for f in seg.PerFrameFunctionalGroupsSequence
    ] == [[1, n] for n in range(1, len(frames) + 1)]
    assert (seg.pixel_array.astype(bool) == pixels[frames]).all()


def test_a_skeleton_is_used_only_when_the_speculation_held(
    job: Job, caplog: pytest.LogCaptureFixture
) -> None:
    """Another label or concept, another creation time, frames of other images, or a
    mask over part of the images: the SEG is built after the model, as without one."""
    caplog.set_level(logging.INFO, logger="aifi_app.pipeline.processing")
    job.remove_skeleton()
    expected = job.results()
    mask = job.result.segmentations[0]
    for request, why in [
        (job.request(label="Right lung"), "made for another request"),
        (job.request(concept=CodedConcept("44029006", "SCT", "Left lung")), "another request"),
        (job.request(created=CREATED.replace(second=0).isoformat()), "another request"),
    ]:
        job.build_ahead(request)
        caplog.clear()
        assert job.results()["seg"] == expected["seg"]
        assert why in _path(job, _seg_log(caplog))
    # a skeleton made for this request whose frames name other images
    job.build_ahead()
    _, about = job.skeleton_files()
    text = about.read_text().replace(mask.source_sop_instance_uids[0], "2.25.1")
    about.write_text(text)
    caplog.clear()
    assert job.results()["seg"] == expected["seg"]
    assert "its frames are of other images" in _path(job, _seg_log(caplog))
    # a mask over part of the job's images: its own SEG (frames for those images only)
    job.build_ahead()
    part = SegmentationMask.from_array(
        mask.concept, mask.label, mask.source_sop_instance_uids[:-1], mask.mask[:-1]
    )
    caplog.clear()
    fewer = job.results(dataclasses.replace(job.result, segmentations=(part,)))
    assert "the mask is not over all the job's images" in _path(job, _seg_log(caplog))
    assert int(dcmread(_bytes_file(job, fewer["seg"])).NumberOfFrames) == mask.packed.frames - 1


def _bytes_file(job: Job, data: bytes) -> Path:
    path = job.app.data_dir / "check.dcm"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("state", ["header only", "torn header", "torn description", "parts"])
def test_a_skeleton_cut_short_is_not_used(
    job: Job, caplog: pytest.LogCaptureFixture, state: str
) -> None:
    """The child killed while it wrote (or a power cut): whatever it left, the SEG is
    built after the model, to the same bytes."""
    caplog.set_level(logging.INFO, logger="aifi_app.pipeline.processing")
    job.remove_skeleton()
    expected = job.results()
    job.build_ahead()
    hdr, about = job.skeleton_files()
    if state == "header only":  # killed between its two files
        about.unlink()
    elif state == "torn header":
        hdr.write_bytes(hdr.read_bytes()[:-100])
    elif state == "torn description":
        about.write_bytes(about.read_bytes()[:20])
    else:  # killed while writing either: only their temporary files
        hdr.rename(hdr.with_name(hdr.name + ".part"))
        about.rename(about.with_name(about.name + ".part"))
    caplog.clear()
    assert job.results()["seg"] == expected["seg"]
    assert "built now" in _path(job, _seg_log(caplog))


def test_a_refused_seg_is_not_built_ahead_and_still_quarantined(job: Job) -> None:
    """The child's check refuses what the worker's refuses (an image of another study
    here): it writes nothing, and the worker's own build is quarantined as before."""
    job.remove_skeleton()
    processor = job.app.processor
    with pytest.raises(ReidentificationError):
        seg_ahead.build_ahead(job.request(), processor.original_for, lambda uid: "2.25.999")
    assert not any(p.exists() for p in job.skeleton_files())
    processor.study_of_instance = lambda uid: "2.25.999"  # type: ignore[method-assign]
    from aifi_app.pipeline.processing import ResultQuarantined

    with pytest.raises(ResultQuarantined, match="result seg refused and quarantined"):
        job.results()
    assert (processor.quarantine_dir(job.ctx.job_id) / "02-seg.dcm").exists()
    assert not processor.result_dir(job.ctx.job_id).exists() or not list(
        processor.result_dir(job.ctx.job_id).glob("*.dcm")
    )


def test_the_pre_pseudonymisers_child_builds_it_while_the_model_runs(
    tmp_path: Path, pacs: DemoPacs, caplog: pytest.LogCaptureFixture
) -> None:
    """The job asks the real child process (the lung volume declares its segment, so
    the first job after a start speculates too); the job's SEG is then the skeleton's,
    equal to the SEG built after, and its SR the child's, built after the model."""
    caplog.set_level(logging.INFO)  # (the child's records too: aifi_app.child_logging)
    app, job_id = _pseudonymised_ct(tmp_path, pacs)
    app.processor.early = None
    pre = PrePseudonymiser(
        app.db, app.data_dir, lambda: app.settings, app.catalog.enabled, KEY, in_child=True
    )
    app.processor.prepared = pre
    pre.start()
    try:
        ctx = app.processor.context(job_id)
        images = app.processor.job_images(job_id)
        result = app.processor._runners.get(ctx.package).run(images)
        header = app.processor.original_header(ctx)
        assert not app.processor._segments_seen
        mask = result.segmentations[0]
        assert app.processor._speculated_segment(ctx.package) == (mask.concept, mask.label)
        app.processor._ask_seg_ahead(ctx, images, header, CREATED)
        assert [r for r in caplog.records if "asked to be built" in r.getMessage()]
        _, about = seg_ahead.skeleton_paths(app.processor.work_dir(job_id), 1)
        _, evidence = seg_ahead.evidence_paths(app.processor.work_dir(job_id))
        for _ in range(1200):  # the child imports highdicom and loads its tables first
            if about.exists() and evidence.exists():  # (the SR's evidence: after the SEG)
                break
            time.sleep(0.1)
        caplog.clear()
        planned = app.processor.build_results(ctx, result, images, header, created=CREATED)
        assert "from the one built while the model ran" in " ".join(_seg_log(caplog))
        assert "SR's evidence from the one made while the model ran" in _sr_log(caplog)
        # and the SR, asked after the model (aifi_app.pipeline.sr_in_child)
        built_by = f"job {job_id}: SR built by the pre-pseudonymiser's child"
        assert built_by in [r.getMessage() for r in caplog.records]
        for _ in range(100):  # the child's own record, written by this process
            if any(f"job {job_id}: SR built in" in r.getMessage() for r in caplog.records):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the child's record of its SR did not reach the service")
        (seg,) = [app.data_dir / p.path for p in planned if p.kind == "seg"]
        ahead = seg.read_bytes()
        assert dciodvfy_errors(seg) == []
        about.unlink()
        app.processor.build_results(ctx, result, images, header, created=CREATED)
        assert seg.read_bytes() == ahead
    finally:
        pre.stop()
        app.db.close()


def test_the_job_runs_with_its_seg_asked_ahead(tmp_path: Path, pacs: DemoPacs) -> None:
    """The worker's own step: the SEG's content time is the model's start, the job's
    results recorded; without a child to ask, the SEG is built after the model."""
    app, job_id = _pseudonymised_ct(tmp_path, pacs)
    app.processor.early = None
    app.processor.run_algorithm(job_id, JobState.PSEUDONYMISED)
    job = jobs.job(app.db, job_id)
    assert job["state"] == "result_received", job["reason"]
    (seg,) = [o for o in jobs.outputs(app.db, job_id) if o["kind"] == "seg"]
    ds = dcmread(app.data_dir / seg["path"])
    assert int(ds.NumberOfFrames) == len(app.processor.job_images(job_id))
    assert dciodvfy_errors(app.data_dir / seg["path"]) == []
    app.db.close()


@pytest.mark.parametrize("length", [14, 15, 2 << 20])
def test_the_pixel_data_element_is_written_as_pydicom_writes_it(
    job: Job, tmp_path: Path, length: int
) -> None:
    """A skeleton and the Pixel Data element give the bytes of pydicom's writing of the
    whole data set (odd lengths padded, large values written from a buffer)."""
    from aifi_app.part10 import part10_bytes, write_part10_durably
    from aifi_app.results.segmentation import (
        build_segmentation_headers,
        segmentation_frame_order,
    )
    from aifi_app.results.segmentation_frames import frame_layout

    ds = build_segmentation_headers(
        job.images, CodedConcept("39607008", "SCT", "Lung"), "Lung", job.result.algorithm,
        series_instance_uid="2.25.1", sop_instance_uid="2.25.2", series_number=9003,
        instance_number=1, software_version="x",
    )  # fmt: skip
    del ds.PixelData
    header = part10_bytes(ds)
    frames = segmentation_frame_order(ds)
    skeleton = seg_ahead.Skeleton(header, tuple(frames), frame_layout(header))
    pixel_data = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    half = length // 2
    parts = [pixel_data[:half], memoryview(pixel_data)[half:]]  # written one after the other
    every = list(range(len(frames)))
    seg_ahead.write_segmentation(tmp_path / "ours.dcm", skeleton, every, parts, sync=True)
    ds.PixelData = pixel_data
    write_part10_durably(tmp_path / "pydicoms.dcm", ds)
    assert (tmp_path / "ours.dcm").read_bytes() == (tmp_path / "pydicoms.dcm").read_bytes()


_KILLED_AFTER_THE_MODEL = """
import sys
from pathlib import Path
sys.path[:0] = {paths!r}
from aifi_app.pipeline import seg_ahead, sr_in_child
from aifi_app.store.states import JobState
from tests.pipeline.test_seg_ahead import _app_again

app = _app_again(Path({tmp!r}), {port})


class InlineChild:
    def request_seg_ahead(self, request):
        seg_ahead.build_ahead(request, app.processor.original_for, app.processor.study_of_instance)
        return True

    def request_sr(self, request):
        sr_in_child.build_in_child(request)
        return True


app.processor.prepared = InlineChild()
package = app.processor.context({job_id}).package
app.processor._segments_seen[(package.identity.algorithm_id, package.identity.version)] = (
    package.output.concept, "Lung"
)
app.processor.run_algorithm({job_id}, JobState.PSEUDONYMISED)
"""


def _app_again(tmp_path: Path, pacs_port: int) -> Appliance:
    """The appliance of :func:`_pseudonymised_ct` over its data folder, started again."""
    from tests.pipeline.test_chain_in_process import _settings
    from tests.pipeline.test_processing import LUNG_ROUTE

    settings = dataclasses.replace(_settings(tmp_path, pacs_port), routes=(LUNG_ROUTE,))
    app = Appliance(settings, secret_for=lambda _: KEY)
    app.processor.early = None
    return app


def test_killed_after_its_seg_from_the_skeleton_was_written_the_job_makes_it_again(
    tmp_path: Path, pacs: DemoPacs
) -> None:
    """Killed (failpoint, SIGKILL) after the results were written, before they were
    recorded: after a restart the step runs again without a child, builds the SEG itself
    (the skeleton was made for the killed run's creation time) under the same UIDs."""
    app, job_id = _pseudonymised_ct(tmp_path, pacs)
    app.db.close()
    script = textwrap.dedent(_KILLED_AFTER_THE_MODEL).format(
        paths=sys.path, tmp=str(tmp_path), port=pacs.port, job_id=job_id
    )
    env = {**os.environ, "AIFI_FAILPOINTS": "processing.after_results_written"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=Path.cwd(), capture_output=True, timeout=300
    )
    assert done.returncode == -9, done.stderr.decode()[-2000:]  # killed at the point
    app = _app_again(tmp_path, pacs.port)
    try:
        assert jobs.job(app.db, job_id)["state"] == "submitted"
        assert not jobs.outputs(app.db, job_id)
        killed_seg = app.processor.result_dir(job_id) / "02-seg.dcm"
        before = dcmread(killed_seg, stop_before_pixels=True)
        assert all(p.exists() for p in seg_ahead.skeleton_paths(app.processor.work_dir(job_id), 1))
        app.processor.run_algorithm(job_id, JobState.SUBMITTED)
        job = jobs.job(app.db, job_id)
        assert job["state"] == "result_received", job["reason"]
        (seg,) = [o for o in jobs.outputs(app.db, job_id) if o["kind"] == "seg"]
        assert seg["sop_instance_uid"] == before.SOPInstanceUID
        assert app.data_dir / seg["path"] == killed_seg
        again = dcmread(killed_seg)
        assert again.ContentTime != before.ContentTime  # made again, by the worker
        assert dciodvfy_errors(killed_seg) == []
    finally:
        app.db.close()


def test_a_result_teaches_the_segment_of_the_next(job: Job) -> None:
    """The segment speculated on is the same algorithm version's last result's, before
    what the algorithm declares."""
    processor = job.app.processor
    other = dataclasses.replace(
        job.result.segmentations[0],
        label="Lungs",
        concept=CodedConcept("44029006", "SCT", "Left lung"),
    )
    job.results(dataclasses.replace(job.result, segmentations=(other,)))
    assert processor._speculated_segment(job.ctx.package) == (other.concept, "Lungs")


def test_the_child_is_told_to_load_the_seg_builder_when_a_package_makes_segs(job: Job) -> None:
    from aifi_app.pipeline.pre_pseudonymise import plan_config

    packages = job.app.catalog.enabled()
    assert plan_config(job.app.settings, packages, None).builds_segs  # the lung volume
    others = {k: p for k, p in packages.items() if "seg" not in p.result_objects}
    assert others
    assert not plan_config(job.app.settings, others, None).builds_segs


def test_a_failure_to_ask_leaves_the_seg_to_after_the_model(tmp_path: Path, pacs: DemoPacs) -> None:
    app, job_id = _pseudonymised_ct(tmp_path, pacs)
    app.processor.early = None

    class Refusing:
        def request_seg_ahead(self, request: seg_ahead.SegAheadRequest) -> bool:
            raise RuntimeError("the child's queue is broken")

    app.processor.prepared = Refusing()  # type: ignore[assignment]
    app.processor.run_algorithm(job_id, JobState.PSEUDONYMISED)
    job = jobs.job(app.db, job_id)
    assert job["state"] == "result_received", job["reason"]
    assert {o["kind"] for o in jobs.outputs(app.db, job_id)} == {"sr", "seg"}
    app.db.close()


# -- the SR's evidence of the job's images, made with the SEG ahead --------------------


def _sr_log(caplog: pytest.LogCaptureFixture) -> str:
    (line,) = [
        m
        for m in (r.getMessage() for r in caplog.records)
        if "SR's evidence" in m or "SR made whole" in m
    ]
    return line


def _remove_evidence(job: Job) -> None:
    for path in seg_ahead.evidence_paths(job.app.processor.work_dir(job.ctx.job_id)):
        path.unlink(missing_ok=True)


@pytest.mark.dcmtk
@pytest.mark.dicom3tools
def test_the_sr_with_its_evidence_made_ahead_is_the_sr_made_whole(
    job: Job, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child makes the SR's evidence of the job's images after the SEG's skeleton;
    the SR joined from it after the model is the SR made whole, byte for byte: valid,
    re-identified, every image its evidence."""
    stop_highdicom_clock(monkeypatch)
    caplog.set_level(logging.INFO, logger="aifi_app.pipeline.processing")
    job.build_ahead()
    assert all(p.exists() for p in seg_ahead.evidence_paths(job.skeleton_files()[0].parent))
    ahead = job.results()
    assert "SR's evidence from the one made while the model ran" in _sr_log(caplog)
    caplog.clear()
    _remove_evidence(job)
    whole = job.results()
    assert "SR made whole (its evidence not made ahead: not made in time)" in _sr_log(caplog)
    assert ahead["sr"] == whole["sr"]
    assert ahead["seg"] == whole["seg"]
    path = _bytes_file(job, ahead["sr"])
    assert dciodvfy_errors(path) == []
    assert "Lung" in dsrdump(path)
    sr = dcmread(path)
    (study,) = sr.CurrentRequestedProcedureEvidenceSequence
    images, seg = study.ReferencedSeriesSequence
    original_for = job.app.processor.original_for
    assert [i.ReferencedSOPInstanceUID for i in images.ReferencedSOPSequence] == [
        original_for(str(ds.SOPInstanceUID)) for ds in job.images
    ]
    assert images.SeriesInstanceUID == original_for(str(job.images[0].SeriesInstanceUID))
    assert study.StudyInstanceUID == original_for(str(job.images[0].StudyInstanceUID))
    assert seg.ReferencedSOPSequence[0].ReferencedSOPClassUID == SEGMENTATION_STORAGE
    for pseudonym in {str(ds.SOPInstanceUID) for ds in job.images}:
        assert pseudonym.encode() not in ahead["sr"]


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ("other request", "made for another request"),
        ("other images", "made of other images"),
        ("torn items", "incomplete"),
        ("torn description", "unreadable (JSONDecodeError)"),
        ("items only", "not made in time"),
    ],
)
def test_evidence_not_made_for_the_sr_or_cut_short_is_not_used(
    job: Job,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    state: str,
    why: str,
) -> None:
    """Whatever the child left that was not made for these images (another request, a
    description naming other images) or that it did not finish: the SR is made whole,
    to the same bytes."""
    stop_highdicom_clock(monkeypatch)
    caplog.set_level(logging.INFO, logger="aifi_app.pipeline.processing")
    job.remove_skeleton()
    _remove_evidence(job)
    expected = job.results()["sr"]
    request = job.request()
    assert request.sr_evidence is not None
    if state == "other request":
        other = dataclasses.replace(request.sr_evidence, study_id="S-OTHER")
        request = dataclasses.replace(request, sr_evidence=other)
    job.build_ahead(request)
    items, about = seg_ahead.evidence_paths(job.skeleton_files()[0].parent)
    if state == "other images":
        described = json.loads(about.read_text())
        described["digest"] = "0" * 64
        about.write_text(json.dumps(described))
    elif state == "torn items":
        items.write_bytes(items.read_bytes()[:-10])
    elif state == "torn description":
        about.write_bytes(about.read_bytes()[:20])
    elif state == "items only":
        about.unlink()
    caplog.clear()
    assert job.results()["sr"] == expected
    assert f"SR made whole (its evidence not made ahead: {why})" in _sr_log(caplog)


def test_a_refused_sr_is_quarantined_whole(job: Job) -> None:
    """An SR refused after the model (an image of another study here, as the store now
    says) is quarantined as the SR made whole: pseudonymised, every image its evidence;
    nothing is written."""
    from aifi_app.pipeline.processing import ResultQuarantined

    processor = job.app.processor
    job.build_ahead()
    processor.study_of_instance = lambda uid: "2.25.999"  # type: ignore[method-assign]
    with pytest.raises(ResultQuarantined, match="result sr refused and quarantined"):
        job.results()
    sr = dcmread(processor.quarantine_dir(job.ctx.job_id) / "01-sr.dcm")
    (study,) = sr.CurrentRequestedProcedureEvidenceSequence
    recorded = [
        i.ReferencedSOPInstanceUID
        for s in study.ReferencedSeriesSequence
        for i in s.ReferencedSOPSequence
    ]
    assert recorded[:-1] == [str(ds.SOPInstanceUID) for ds in job.images]  # pseudonymised
    assert not list(processor.result_dir(job.ctx.job_id).glob("*.dcm"))


def test_evidence_refused_in_the_child_is_not_written(job: Job) -> None:
    """The child's check refuses the evidence as the worker's refuses the SR: it writes
    none (the SEG's skeleton, checked first, is written)."""
    processor = job.app.processor
    request = job.request()
    assert request.sr_evidence is not None
    with pytest.raises(ReidentificationError):
        seg_ahead.build_evidence_ahead(
            request.sr_evidence,
            job.images,
            job.header,
            processor.original_for,
            lambda uid: "2.25.999",
        )
    assert not any(p.exists() for p in seg_ahead.evidence_paths(job.skeleton_files()[0].parent))


def test_a_job_without_an_sr_asks_for_no_evidence(job: Job) -> None:
    package = dataclasses.replace(job.ctx.package, result_objects=("seg",))
    ctx = dataclasses.replace(job.ctx, package=package)
    mask = job.result.segmentations[0]
    sources = tuple(str(ds.filename) for ds in job.images)
    request = job.app.processor._seg_request(
        ctx, 1, mask.concept, mask.label, sources, job.header, CREATED
    )
    assert request.sr_evidence is None
    assert job.request().sr_evidence is not None


def test_the_child_trims_its_heap_after_each_request(
    job: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a request made is garbage once it is written or refused: the child gives it
    back (:func:`aifi_app.heap_trim.trim`) either way."""
    from aifi_app import heap_trim
    from aifi_app.pipeline.pre_pseudonymise import ReadOnlyDb

    trims: list[bool] = []
    trim = heap_trim.trim

    def counted() -> bool:
        trims.append(trim())
        return trims[-1]

    monkeypatch.setattr(heap_trim, "trim", counted)
    db = ReadOnlyDb(job.app.db.path)
    job.remove_skeleton()
    seg_ahead.build_in_child(job.request(), db)
    assert all(p.exists() for p in job.skeleton_files())
    assert len(trims) == 1
    work_dir = job.app.processor.work_dir(job.ctx.job_id)
    with pytest.raises(FileNotFoundError):
        seg_ahead.build_in_child(job.request(sources=(str(work_dir / "missing.dcm"),)), db)
    assert len(trims) == 2
    db._conn.close()


def test_a_first_build_is_rehearsed_on_a_few_images_and_writes_only_the_skeleton(
    job: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first SEG of a kind of source image a process builds ahead is rehearsed on the
    first images (built, re-identified, encoded, thrown away), once; a failing rehearsal
    leaves the build to go on."""
    built: list[int] = []
    build = seg_ahead.SegAheadRequest.build

    def counted(self: seg_ahead.SegAheadRequest, sources: list[Dataset]) -> Dataset:
        built.append(len(sources))
        if len(sources) == seg_ahead.REHEARSAL and failing:
            raise ReidentificationError("refused")
        return build(self, sources)

    monkeypatch.setattr(seg_ahead.SegAheadRequest, "build", counted)
    monkeypatch.setattr(seg_ahead, "_rehearsed", set())
    slices = len(job.images)
    failing: list[bool] = []  # the rehearsal's build raises while this holds an item
    for fail in (False, True):
        failing[:] = [True] if fail else []
        seg_ahead._rehearsed.clear()
        job.remove_skeleton()
        for path in seg_ahead.evidence_paths(job.skeleton_files()[0].parent):
            path.unlink(missing_ok=True)
        job.build_ahead()
        about = json.loads(job.skeleton_files()[1].read_bytes())
        assert about["key"] == job.request().key()  # the request's skeleton, whole
        assert len(about["frame_sources"]) == slices
        assert isinstance(seg_ahead.load_skeleton(job.request()), seg_ahead.Skeleton)
    assert built == [seg_ahead.REHEARSAL, slices, seg_ahead.REHEARSAL, slices]
    job.build_ahead()  # rehearsed already in this process: the build alone
    assert built[-1:] == [slices] and len(built) == 5
    names = sorted(p.name for p in job.skeleton_files()[0].parent.iterdir() if "ahead" in p.name)
    assert names == ["seg-ahead-1.hdr", "seg-ahead-1.json"]


_REHEARSED_BUILD = """
import json, pickle, sys
sys.path[:0] = {paths!r}
from pathlib import Path
from aifi_app.pipeline import seg_ahead
from aifi_app.pipeline.pre_pseudonymise import ReadOnlyDb
from aifi_app.results import module_attributes

seen = {{}}
rehearse = seg_ahead.rehearse

def recorded(*args):
    seen["rehearsed"] = rehearse(*args)
    seen["parsed after the rehearsal"] = sorted(module_attributes.installed().parsed())
    seen["numpy.ma after the rehearsal"] = "numpy.ma" in sys.modules
    return seen["rehearsed"]

seg_ahead.rehearse = recorded
request = pickle.loads(Path({request!r}).read_bytes())
seg_ahead.build_in_child(request, ReadOnlyDb(Path({db!r})))
seen["parsed after the build"] = sorted(module_attributes.installed().parsed())
print(json.dumps(seen))
"""


def test_after_the_rehearsal_the_build_loads_nothing_it_keeps(job: Job, tmp_path: Path) -> None:
    """In a fresh process, as in the child: the modules of highdicom's table the SEG and
    its SR evidence ask for, and ``numpy.ma``, are loaded by the rehearsal, before the
    CT's images are read, so that nothing the build keeps lies among its garbage."""
    request_file = tmp_path / "request.pickle"
    request_file.write_bytes(pickle.dumps(job.request()))
    script = textwrap.dedent(_REHEARSED_BUILD).format(
        paths=sys.path, request=str(request_file), db=str(job.app.db.path)
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=Path.cwd(), capture_output=True, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    seen = json.loads(done.stdout)
    assert seen["rehearsed"] is True
    assert seen["numpy.ma after the rehearsal"] is True
    assert "segmentation-multi-frame-functional-groups" in seen["parsed after the rehearsal"]
    assert seen["parsed after the build"] == seen["parsed after the rehearsal"]
    assert all(p.exists() for p in job.skeleton_files())


_RESULTS_BEFORE_HIGHDICOM = """
import json, pickle, subprocess, sys
from pathlib import Path
sys.path[:0] = {paths!r}
from aifi_app.store import jobs
from aifi_app.store.states import JobState
from tests.pipeline.test_seg_ahead import _app_again

app = _app_again(Path({tmp!r}), {port})
processor = app.processor
seen = {{}}
BUILD = (
    "import pickle, sys; sys.path[:0] = {paths!r}; from pathlib import Path;"
    " from aifi_app.pipeline import seg_ahead;"
    " from aifi_app.pipeline.pre_pseudonymise import ReadOnlyDb;"
    " seg_ahead.build_in_child(pickle.loads(Path(sys.argv[1]).read_bytes()),"
    " ReadOnlyDb(Path(sys.argv[2])))"
)
BUILD_SR = (
    "import pickle, sys; sys.path[:0] = {paths!r}; from pathlib import Path;"
    " from aifi_app.pipeline import sr_in_child;"
    " sr_in_child.build_in_child(pickle.loads(Path(sys.argv[1]).read_bytes()))"
)


class ChildProcess:  # builds ahead in a process of its own, as the child does
    def request_seg_ahead(self, request):
        path = Path({tmp!r}) / "request.pickle"
        path.write_bytes(pickle.dumps(request))
        subprocess.run([sys.executable, "-c", BUILD, str(path), str(app.db.path)], check=True)
        return True

    def request_sr(self, request):
        if not {sr_by_child}:
            return False
        path = Path({tmp!r}) / "sr-request.pickle"
        path.write_bytes(pickle.dumps(request))
        subprocess.run([sys.executable, "-c", BUILD_SR, str(path)], check=True)
        return True


class Watch:  # what holds when highdicom is first imported
    def find_spec(self, name, path=None, target=None):
        if name == "highdicom" and "highdicom imported" not in seen:
            seen["highdicom imported"] = True
            seen["SEG written before"] = "mask" in seen
            seen["its mask released before"] = "mask" in seen and seen["mask"].packed.released
        return None


write = processor._write_skeleton_seg


def written(ctx, n, skeleton, segment, *, sync):
    out = write(ctx, n, skeleton, segment, sync=sync)
    seen["mask"] = segment.mask
    return out


processor._write_skeleton_seg = written
processor.prepared = ChildProcess()
package = processor.context({job_id}).package
processor._segments_seen[(package.identity.algorithm_id, package.identity.version)] = (
    package.output.concept, "Lung"
)
sys.meta_path.insert(0, Watch())
processor.run_algorithm({job_id}, JobState.PSEUDONYMISED)
seen.pop("mask")
seen["highdicom in the service at the end"] = "highdicom" in sys.modules
seen["state"] = jobs.job(app.db, {job_id})["state"]
seen["kinds"] = sorted(o["kind"] for o in jobs.outputs(app.db, {job_id}))
print(json.dumps(seen))
"""


def _results_in_a_fresh_service(tmp_path: Path, pacs: DemoPacs, sr_by_child: bool) -> object:
    app, job_id = _pseudonymised_ct(tmp_path, pacs)
    app.db.close()
    script = textwrap.dedent(_RESULTS_BEFORE_HIGHDICOM).format(
        paths=sys.path, tmp=str(tmp_path), port=pacs.port, job_id=job_id, sr_by_child=sr_by_child
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=Path.cwd(), capture_output=True, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout.decode().splitlines()[-1])


def test_a_seg_built_ahead_is_written_and_its_mask_let_go_before_highdicom_is_loaded(
    tmp_path: Path, pacs: DemoPacs
) -> None:
    """In a fresh service process whose job's SEG the child built ahead, and whose SR it
    does not build: the SEG is written, and its mask's memory let go, before the SR's
    builder imports highdicom (the mask's 16 MB and highdicom's ~20 MB are not held at
    once)."""
    assert _results_in_a_fresh_service(tmp_path, pacs, sr_by_child=False) == {
        "highdicom imported": True,
        "SEG written before": True,
        "its mask released before": True,
        "highdicom in the service at the end": True,
        "state": "result_received",
        "kinds": ["seg", "sr"],
    }


def test_with_its_seg_and_sr_built_by_the_child_the_service_never_loads_highdicom(
    tmp_path: Path, pacs: DemoPacs
) -> None:
    """In a fresh service process whose job's SEG the child built ahead and whose SR it
    built after the model (:mod:`aifi_app.pipeline.sr_in_child`): the job's results are
    made and recorded, and highdicom is never imported in the service (~19 MB it would
    hold from then on)."""
    assert _results_in_a_fresh_service(tmp_path, pacs, sr_by_child=True) == {
        "highdicom in the service at the end": False,
        "state": "result_received",
        "kinds": ["seg", "sr"],
    }
