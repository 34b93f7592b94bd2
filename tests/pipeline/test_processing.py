"""The job processor's reads: the algorithm's images read ahead while the job is
pseudonymised (used only for the work folder as it is), the study's first header once."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread

from aifi_app.config.settings import Route
from aifi_app.demo import DemoPacs
from aifi_app.service import Appliance
from aifi_app.store import jobs
from aifi_app.store.states import JobState
from tests.algorithms.test_lung_volume import SLICES, phantom_series, phantom_volume
from tests.pipeline.test_chain_in_process import KEY, _receive, _settings

LUNG_ROUTE = Route(name="ct lung", algorithm="ct-lung-volume", modalities=("CT",))


def _queued_ct(tmp_path: Path, pacs: DemoPacs) -> tuple[Appliance, int]:
    """An appliance with a phantom chest CT's job queued."""
    settings = dataclasses.replace(_settings(tmp_path, pacs.port), routes=(LUNG_ROUTE,))
    app = Appliance(settings, secret_for=lambda _: KEY)
    for ds in phantom_series(phantom_volume()[0]):
        _receive(app, ds, tmp_path)
    (study_id,) = [r["id"] for r in app.db.query("SELECT id FROM studies")]
    assert jobs.mark_complete(app.db, study_id)
    app.worker.route(study_id)
    (job_id,) = jobs.jobs_in_state(app.db, JobState.QUEUED)
    return app, job_id


def _pseudonymised_ct(tmp_path: Path, pacs: DemoPacs) -> tuple[Appliance, int]:
    """An appliance with a phantom chest CT's job pseudonymised, its algorithm not run."""
    app, job_id = _queued_ct(tmp_path, pacs)
    app.processor.pseudonymise(job_id)
    assert jobs.job(app.db, job_id)["state"] == "pseudonymised"
    return app, job_id


def _direct(app: Appliance, job_id: int) -> list[Dataset]:
    work = app.processor.work_dir(job_id)
    return [dcmread(p, defer_size=64 * 1024) for p in sorted(work.glob("*.dcm"))]


def test_the_images_read_ahead_are_those_the_files_hold(tmp_path: Path, pacs: DemoPacs) -> None:
    app, job_id = _pseudonymised_ct(tmp_path, pacs)
    assert job_id in app.processor._read_ahead  # started by the pseudonymise step
    images = app.processor.job_images(job_id)
    assert job_id not in app.processor._read_ahead  # taken once
    assert len(images) == SLICES
    assert images == _direct(app, job_id)
    assert [ds.filename for ds in images] == [
        str(p) for p in sorted(app.processor.work_dir(job_id).glob("*.dcm"))
    ]
    app.db.close()


def test_a_work_folder_made_again_is_read_again(tmp_path: Path, pacs: DemoPacs) -> None:
    app, job_id = _pseudonymised_ct(tmp_path, pacs)
    work = app.processor.work_dir(job_id)
    first = sorted(work.glob("*.dcm"))[0]
    changed = dcmread(first)
    changed.InstanceNumber = 99
    kept = tmp_path / "kept"
    shutil.copytree(work, kept)
    time.sleep(0.05)  # past the file system's timestamp granularity (not a timing check)
    shutil.rmtree(work)
    shutil.copytree(kept, work)
    changed.save_as(first)
    images = app.processor.job_images(job_id)
    assert int(images[0].InstanceNumber) == 99
    assert images == _direct(app, job_id)
    app.db.close()


def test_without_a_read_ahead_the_files_are_read(tmp_path: Path, pacs: DemoPacs) -> None:
    """As after a restart between the two steps."""
    app, job_id = _pseudonymised_ct(tmp_path, pacs)
    app.processor._drop_read_ahead(job_id)
    assert app.processor.job_images(job_id) == _direct(app, job_id)
    app.db.close()


def test_the_algorithm_runs_on_what_was_read_ahead(tmp_path: Path, pacs: DemoPacs) -> None:
    """The result is the one the chain gives without reading ahead (the same job again,
    its images read from the files)."""
    app, job_id = _pseudonymised_ct(tmp_path, pacs)
    app.processor.run_algorithm(job_id, JobState.PSEUDONYMISED)
    job = jobs.job(app.db, job_id)
    assert job["state"] == "result_received", job["reason"]
    outputs = {o["sop_instance_uid"] for o in jobs.outputs(app.db, job_id)}
    ctx = app.processor.context(job_id)
    header = app.processor.original_header(ctx)
    first_received = app.db.query("SELECT path FROM instances ORDER BY id LIMIT 1")[0]["path"]
    assert header == dcmread(app.data_dir / first_received, stop_before_pixels=True)
    images = _direct(app, job_id)
    result = app.processor._runners.get(ctx.package).run(images)
    assert result.to_json() == job["result_json"]
    again = app.processor.build_results(ctx, result, images)
    assert {p.sop_instance_uid for p in again} == outputs
    assert len(outputs) == 2  # the SR and the SEG
    app.db.close()


def test_the_uids_an_sr_records_as_evidence_are_decoded_before_the_model(
    tmp_path: Path, pacs: DemoPacs
) -> None:
    """Read from their files they are raw until asked for; the step decodes them before
    the model (not after it, on the way to the PACS), and leaves the rest raw."""
    from pydicom.dataelem import RawDataElement

    from aifi_app.pipeline import processing

    app, job_id = _pseudonymised_ct(tmp_path, pacs)
    app.processor._drop_read_ahead(job_id)
    images = app.processor.job_images(job_id)
    tags = [0x0020000D, 0x0020000E, 0x00080016, 0x00080018]
    assert all(isinstance(ds._dict[tag], RawDataElement) for ds in images for tag in tags)
    processing._decode_evidence_uids(images)
    assert not any(isinstance(ds._dict[tag], RawDataElement) for ds in images for tag in tags)
    assert isinstance(images[0]._dict[0x00100010], RawDataElement)  # Patient's Name
    app.db.close()


def test_the_images_read_ahead_come_with_their_evidence_uids_decoded(
    tmp_path: Path, pacs: DemoPacs
) -> None:
    """The read-ahead decodes them as it reads each image while the job is pseudonymised
    (the step's waits), so that little is left between the step and the model."""
    from pydicom.dataelem import RawDataElement

    app, job_id = _pseudonymised_ct(tmp_path, pacs)
    images, read_ahead = app.processor._job_images(job_id)
    assert read_ahead
    tags = [0x0020000D, 0x0020000E, 0x00080016, 0x00080018]
    assert not any(isinstance(ds._dict[tag], RawDataElement) for ds in images for tag in tags)
    assert isinstance(images[0]._dict[0x00100010], RawDataElement)  # the rest stays raw
    app.db.close()


def test_the_collector_is_held_off_while_results_are_made_and_resumed_after() -> None:
    """Nested and concurrent holds: the collector runs again once the last ends, and
    stays off when it was off before."""
    import gc

    from aifi_app.pipeline.processing import _defer_collections

    assert gc.isenabled()
    first = _defer_collections()
    second = _defer_collections()
    assert not gc.isenabled()
    first()
    first()  # once only
    assert not gc.isenabled()
    second()
    assert gc.isenabled()
    gc.disable()
    try:
        _defer_collections()()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_evidence_uids_decoded_once_a_series_are_those_pydicom_decodes(tmp_path: Path) -> None:
    """The read-ahead's evidence UIDs, decoded once per distinct raw entry and copied
    into each image, are the elements pydicom makes, each image's its own (changing one
    changes no other)."""
    from pydicom.dataelem import RawDataElement

    from aifi_app.pipeline import processing
    from aifi_app.sample_studies import ct_series, demo_patient, write

    paths = [write(ds, tmp_path / "ct") for ds in ct_series(demo_patient(5), 4, size=16)]
    got = [processing._read_image_with_evidence(p) for p in paths]
    tags = [0x0020000D, 0x0020000E, 0x00080016, 0x00080018]
    for path, ds in zip(paths, got, strict=True):
        expected = dcmread(path, defer_size=64 * 1024)
        for tag in tags:
            assert not isinstance(ds._dict[tag], RawDataElement)
            assert vars(ds[tag]) == vars(expected[tag]), (path, tag)
    assert got[0][0x0020000D] is not got[1][0x0020000D]  # copies, not one element
    got[0].StudyInstanceUID = "1.2.3"
    assert got[1].StudyInstanceUID == dcmread(paths[1]).StudyInstanceUID
    again = processing._read_image_with_evidence(paths[2])
    assert again.StudyInstanceUID == got[2].StudyInstanceUID


def _states(app: Appliance, job_id: int) -> list[tuple[str, str]]:
    rows = app.db.query(
        "SELECT from_state, to_state FROM audit_events WHERE job_id = ?"
        " AND event = 'state_changed' ORDER BY id",
        (job_id,),
    )
    return [(r["from_state"], r["to_state"]) for r in rows]


def test_the_model_runs_while_the_step_is_flushed_and_recorded(
    tmp_path: Path, pacs: DemoPacs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pseudonymise_for_model: the model starts before the step's record, which is made
    (queued -> pseudonymised -> submitted, one transaction) only once the work folder is
    on disk; the results are those of the images the files hold."""
    app, job_id = _queued_ct(tmp_path, pacs)
    processor = app.processor
    record_started = threading.Event()
    model_started = threading.Event()
    recorded_before_model: list[str] = []
    original_record = processor._record_pseudonymised
    original_run = processor._runners.get(processor.context(job_id).package).run

    def record(*args: object) -> None:
        record_started.set()
        assert model_started.wait(30)  # the model began before the step was recorded
        original_record(*args)  # type: ignore[arg-type]

    def run(images: list[Dataset]) -> object:
        recorded_before_model.append(jobs.job(app.db, job_id)["state"])
        model_started.set()
        return original_run(images)

    synced: list[str] = []
    from aifi_app.pipeline import durable_batch

    real_sync = durable_batch.DurableBatch.sync

    def sync(batch: durable_batch.DurableBatch) -> None:
        synced.append(threading.current_thread().name)
        real_sync(batch)

    monkeypatch.setattr(durable_batch.DurableBatch, "sync", sync)
    monkeypatch.setattr(processor, "_record_pseudonymised", record)
    runner = processor._runners.get(processor.context(job_id).package)
    monkeypatch.setattr(runner, "run", run)
    recorded = processor.pseudonymise_for_model(job_id)
    assert recorded is not None
    processor.run_algorithm(job_id, JobState.PSEUDONYMISED, recorded=recorded)
    assert recorded_before_model == ["queued"]
    assert record_started.is_set()
    assert synced and all(name.startswith("aifi-record") for name in synced)
    job = jobs.job(app.db, job_id)
    assert job["state"] == "result_received", job["reason"]
    assert _states(app, job_id)[-3:] == [
        ("queued", "pseudonymised"),
        ("pseudonymised", "submitted"),
        ("submitted", "result_received"),
    ]
    result = original_run(_direct(app, job_id))
    assert result.to_json() == job["result_json"]
    assert len(jobs.outputs(app.db, job_id)) == 2  # the SR and the SEG
    app.db.close()


@pytest.mark.parametrize("fault", ["record", "flush"])
def test_a_step_that_cannot_be_recorded_leaves_no_results(
    tmp_path: Path, pacs: DemoPacs, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """The step's flush or record fails while the model runs: its error is raised once
    the model ends, before any result is made; the job is still queued, and the worker
    fails it as a failed pseudonymisation (nothing half-recorded)."""
    app, job_id = _queued_ct(tmp_path, pacs)
    processor = app.processor

    def broken(*args: object) -> None:
        raise OSError("no space left on the device")

    if fault == "record":
        monkeypatch.setattr(processor, "_record_pseudonymised", broken)
    else:
        from aifi_app.pipeline import durable_batch

        monkeypatch.setattr(durable_batch.DurableBatch, "sync", broken)
    recorded = processor.pseudonymise_for_model(job_id)
    assert recorded is not None
    with pytest.raises(OSError, match="no space"):
        processor.run_algorithm(job_id, JobState.PSEUDONYMISED, recorded=recorded)
    assert jobs.job(app.db, job_id)["state"] == "queued"
    assert jobs.outputs(app.db, job_id) == []
    result_dir = processor.result_dir(job_id)
    assert not result_dir.exists() or not any(result_dir.iterdir())

    app.worker._guard_job(job_id, JobState.QUEUED, app.worker._pseudonymise_and_run)
    job = jobs.job(app.db, job_id)
    assert job["state"] == "failed"
    assert job["reason"] == "pseudonymisation failed: OSError"
    assert jobs.outputs(app.db, job_id) == []
    app.db.close()


def test_the_worker_runs_a_lone_queued_job_on_to_its_model(
    tmp_path: Path, pacs: DemoPacs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One queued job: pseudonymised and its model run in one step of the worker's pass
    (the plain step is not used); the job ends with its results."""
    app, job_id = _queued_ct(tmp_path, pacs)

    def plain(job_id: int) -> None:
        raise AssertionError("the plain step for a lone job")

    monkeypatch.setattr(app.processor, "pseudonymise", plain)
    taken: list[str] = []
    real_take = app.worker._take

    def take(job_id: int, state: JobState, step: object, max_images: int | None) -> bool:
        taken.append(state.value)
        return real_take(job_id, state, step, max_images)  # type: ignore[arg-type]

    monkeypatch.setattr(app.worker, "_take", take)
    app.worker._pass()
    job = jobs.job(app.db, job_id)
    assert job["state"] in ("result_received", "delivered"), job["reason"]
    assert taken == ["queued"]  # nothing left for the pass's later steps
    app.db.close()


def test_a_seg_built_after_the_model_is_written_from_the_mask_as_built_whole(
    tmp_path: Path, pacs: DemoPacs, caplog: pytest.LogCaptureFixture
) -> None:
    """No SEG built ahead: its elements but Pixel Data are built, checked and encoded
    here, then written with the mask's packed frames (not joined into one value first):
    the bytes of the SEG built whole, which is still how it is built when that is off."""
    import datetime
    import logging

    from aifi_app.pipeline import processing

    caplog.set_level(logging.INFO, logger="aifi_app.pipeline.processing")
    app, job_id = _pseudonymised_ct(tmp_path, pacs)
    app.processor.early = None  # results only written here, not sent
    ctx = app.processor.context(job_id)
    images = app.processor.job_images(job_id)
    result = app.processor._runners.get(ctx.package).run(images)
    header = app.processor.original_header(ctx)
    created = datetime.datetime(2026, 11, 29, 9, 15, 30, 123456)

    def seg_bytes() -> bytes:
        planned = app.processor.build_results(ctx, result, images, header, created=created)
        (seg,) = [out for out in planned if out.kind == "seg"]
        return (app.data_dir / seg.path).read_bytes()

    here = seg_bytes()
    assert any("its Pixel Data written from the mask" in r.getMessage() for r in caplog.records)
    with pytest.MonkeyPatch.context() as monkey:
        monkey.setattr(processing.JobProcessor, "_skeleton_here", lambda *a, **k: None)
        whole = seg_bytes()
    assert here == whole
    seg = dcmread(BytesIO(here))
    assert int(seg.NumberOfFrames) == SLICES
    assert seg.pixel_array.astype(bool).sum() == result.segmentations[0].packed.count()
    app.db.close()
