"""A CT's SEG handed to the PACS while its SR is made (aifi_app/pipeline/early_delivery.py),
in the in-process chain: what reaches the PACS, what the queue records, and the fault
paths (PACS down, a later result quarantined after the SEG was stored)."""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread

from aifi_app import part10
from aifi_app.config.settings import RemoteNode, Route
from aifi_app.demo import DemoPacs
from aifi_app.dicom_node.requestor import Peer
from aifi_app.dicom_node.storage_scu import SendOutcome, send_files
from aifi_app.dicom_node.store_request import InstanceFile, instance_file
from aifi_app.pipeline.early_delivery import EarlyBatch, EarlyObject, EarlySends
from aifi_app.service import Appliance
from aifi_app.store import jobs
from aifi_app.store.database import Database
from aifi_app.store.states import JobState
from tests.algorithms.test_lung_volume import phantom_series, phantom_volume
from tests.helpers.leaky_results import make_reports_leak
from tests.helpers.noting_scp import storage_scp_on
from tests.helpers.ports import free_port
from tests.helpers.tools import dciodvfy_errors, dsrdump
from tests.pipeline.test_chain_in_process import KEY, _drain, _receive, _settings

LUNG_ROUTE = Route(name="ct lung", algorithm="ct-lung-volume", modalities=("CT",))


def _lung_app(tmp_path: Path, port: int, ae_title: str = "DEMO_PACS") -> Appliance:
    settings = dataclasses.replace(
        _settings(tmp_path, port),
        remote_nodes=(RemoteNode("pacs", ae_title, "127.0.0.1", port),),
        routes=(LUNG_ROUTE,),
    )
    return Appliance(settings, secret_for=lambda _: KEY)


def _receive_ct(app: Appliance, tmp_path: Path) -> list[Dataset]:
    hu, _ = phantom_volume()
    sources = list(phantom_series(hu))
    for ds in sources:
        _receive(app, ds, tmp_path)
    return sources


def _uids(ds: Dataset) -> Iterator[str]:
    for element in ds.iterall():
        if element.VR == "UI" and element.value:
            values = element.value if isinstance(element.value, list) else [element.value]
            yield from (str(v) for v in values)


def _data_set_bytes(path: Path) -> bytes:
    """A DICOM file's data set (after its preamble and file meta), as stored."""
    found = instance_file(path)
    assert isinstance(found, InstanceFile)
    return path.read_bytes()[found.offset :]


def _stored_as_written(
    app: Appliance,
    orthanc: Any,
    sources: Sequence[Dataset],
    outputs: Sequence[dict[str, Any]],
    tmp_path: Path,
) -> list[tuple[Path, Dataset]]:
    """The job's results as Orthanc stored them (saved under ``tmp_path``), each checked
    to be the data set as written, byte for byte (Orthanc writes its own file meta), with
    no pseudonym in it (none left the box)."""
    pseudonyms = {str(r["pseudonym"]) for r in app.db.query("SELECT pseudonym FROM pseudonyms")}
    found = orthanc.wait_for_instances(str(sources[0].StudyInstanceUID), 2)
    written = {o["sop_instance_uid"]: app.data_dir / o["path"] for o in outputs}
    stored = []
    for instance in found:
        data = orthanc.file(instance["ID"])
        ds = dcmread(io.BytesIO(data))
        path = tmp_path / f"{ds.Modality}.dcm"
        path.write_bytes(data)
        assert _data_set_bytes(path) == _data_set_bytes(written[ds.SOPInstanceUID])
        assert not set(_uids(ds)) & pseudonyms
        stored.append((path, ds))
    return stored


def _events(app: Appliance, event: str) -> list[str]:
    rows = app.db.query("SELECT detail FROM audit_events WHERE event = ? ORDER BY id", (event,))
    return [str(r["detail"]) for r in rows]


@pytest.mark.orthanc
@pytest.mark.dcmtk
@pytest.mark.dicom3tools
def test_the_seg_goes_first_and_both_are_stored_once_as_written(
    tmp_path: Path, orthanc_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aifi_app import results  # the pipeline takes its builders from here on use

    orthanc = orthanc_factory({"aifi": ("AIFI", "127.0.0.1", 104)})
    app = _lung_app(tmp_path, orthanc.dicom_port, orthanc.aet)
    seen_when_the_sr_was_built: list[set[int]] = []
    build = results.build_measurement_report

    def observed(*args: Any, **kwargs: Any) -> Dataset:
        seen_when_the_sr_was_built.append(app.dispatcher.early.pending_jobs())
        return build(*args, **kwargs)

    monkeypatch.setattr(results, "build_measurement_report", observed)
    sources = _receive_ct(app, tmp_path)
    _drain(app)
    (job,) = app.db.query("SELECT * FROM jobs")
    assert job["state"] == JobState.DELIVERED.value, job["reason"]
    # the SEG was with the dispatcher before the SR was built
    assert seen_when_the_sr_was_built == [{job["id"]}]
    outputs = jobs.outputs(app.db, job["id"])
    assert [o["kind"] for o in outputs] == ["sr", "seg"]  # the canonical order and names
    assert [Path(o["path"]).name for o in outputs] == ["01-sr.dcm", "02-seg.dcm"]
    assert all(o["state"] == "delivered" and o["attempts"] == 1 for o in outputs)
    delivered = _events(app, "output_delivered")
    assert len(delivered) == 2  # each sent once: none again by the dispatcher
    assert all("while the job's other results were made" in d for d in delivered)
    (deliver,) = app.db.query("SELECT * FROM job_stage_times WHERE stage = 'deliver'")
    assert deliver["finished_at"] >= deliver["started_at"]
    checks = app.db.query("SELECT ok FROM node_checks WHERE kind = 'delivery'")
    assert [c["ok"] for c in checks] == [1, 1]

    stored = _stored_as_written(app, orthanc, sources, outputs, tmp_path)
    app.db.close()
    for path, ds in stored:
        assert ds.PatientID == sources[0].PatientID
        assert dciodvfy_errors(path) == [], ds.Modality
        if ds.Modality == "SR":
            assert "Lung" in dsrdump(path)


def test_pacs_down_leaves_the_results_to_the_dispatcher(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet
    app = _lung_app(tmp_path, port)
    _receive_ct(app, tmp_path)
    app.worker.run_once()
    (job,) = app.db.query("SELECT * FROM jobs")
    assert job["state"] == JobState.RESULT_RECEIVED.value
    app.dispatcher.deliver(job["id"])  # the early sends failed; so does its own attempt
    row = jobs.job(app.db, job["id"])
    assert row["state"] == JobState.RESULT_RECEIVED.value
    assert "PACS not reachable" in row["reason"]
    outputs = jobs.outputs(app.db, job["id"])
    assert [o["state"] for o in outputs] == ["pending", "pending"]
    assert all(o["attempts"] == 1 and o["last_error"] for o in outputs)  # the early failures
    assert len(_events(app, "send_failed")) == 2
    checks = app.db.query("SELECT ok FROM node_checks WHERE kind = 'delivery' ORDER BY id")
    assert [c["ok"] for c in checks] == [0, 0, 0]  # two early associations, then its own

    received = storage_scp_on(port)  # the PACS comes back on that port
    try:
        app.dispatcher.deliver(job["id"])
    finally:
        received.server.shutdown()
    assert jobs.job(app.db, job["id"])["state"] == JobState.DELIVERED.value
    assert sorted(received.uids) == sorted(o["sop_instance_uid"] for o in outputs)
    assert app.dispatcher.early.pending_jobs() == set()
    app.db.close()


def test_a_later_result_refused_after_the_seg_was_stored_is_visible(
    tmp_path: Path, pacs: DemoPacs, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_reports_leak(monkeypatch, "1.2.840.10008.5.1.4.1.1.2")
    app = _lung_app(tmp_path, pacs.port)
    sources = _receive_ct(app, tmp_path)
    _drain(app)
    (job,) = app.db.query("SELECT * FROM jobs")
    assert job["state"] == JobState.FAILED.value
    assert "result sr refused and quarantined, never sent" in job["reason"]
    assert "its seg went to the PACS before (see the audit log)" in job["reason"]
    (kept,) = (app.data_dir / "quarantine" / str(job["id"])).glob("*.dcm")
    assert kept.name == "01-sr.dcm"
    assert not list((app.data_dir / "results").rglob("*.dcm"))  # nothing unrecorded left
    assert jobs.outputs(app.db, job["id"]) == []
    assert app.dispatcher.early.pending_jobs() == set()  # forgotten by the dispatcher
    _wait_for_event(app, "stored_before_failure")
    (event,) = _events(app, "stored_before_failure")
    assert event == "seg stored by DEMO_PACS before the job failed"
    app.dispatcher.stop(30)  # (never started) waits for the early sends: the database closes
    (stored,) = pacs.folder.glob("*.dcm")  # only the SEG, re-identified
    seg = dcmread(stored)
    assert seg.Modality == "SEG"
    assert seg.PatientID == sources[0].PatientID
    pseudonyms = {str(r["pseudonym"]) for r in app.db.query("SELECT pseudonym FROM pseudonyms")}
    assert not set(_uids(seg)) & pseudonyms
    app.db.close()


def _wait_for_event(app: Appliance, event: str) -> None:
    """The abandoned send's thread writes its audit entry when it ends."""
    deadline = time.monotonic() + 20
    while not _events(app, event) and time.monotonic() < deadline:
        time.sleep(0.02)


# --- EarlySends on its own, with real sends ----------------------------------------------


def _object(tmp_path: Path, uid: str) -> EarlyObject:
    from aifi_app.part10 import part10_bytes
    from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest

    ds = chest_radiograph(demo_patient(1), phantom_chest())
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    path = tmp_path / f"{uid}.dcm"
    path.write_bytes(part10_bytes(ds))
    return EarlyObject("sc", uid, path)


def _start(
    sends: EarlySends, job_id: int, tmp_path: Path, peer: Peer, timeout: float | None = None
) -> EarlyBatch:
    """One object of the job sent early to ``peer`` (``send_files``, its timeout or ours)."""
    extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}

    def send(paths: Sequence[Path], sent: Callable[[int], object]) -> list[SendOutcome]:
        return send_files(peer, paths, calling_ae_title="AIFI", on_data_sent=sent, **extra)

    return sends.start(
        job_id, [_object(tmp_path, f"2.25.{job_id}")], send, pacs=peer.ae_title, node="pacs"
    )


def test_take_waits_for_the_send_and_forgets_it(tmp_path: Path, pacs: DemoPacs) -> None:
    db = Database(tmp_path / "q.sqlite3")
    sends = EarlySends(db)
    objects = [_object(tmp_path, "2.25.1"), _object(tmp_path, "2.25.2")]
    peer = Peer("DEMO_PACS", "127.0.0.1", pacs.port)
    data_sent: list[int] = []

    def send(paths: Sequence[Path], sent: Callable[[int], object]) -> list[SendOutcome]:
        def noted(n: int) -> None:
            data_sent.append(n)
            sent(n)

        return send_files(peer, paths, calling_ae_title="AIFI", on_data_sent=noted)

    started = sends.start(7, objects, send, pacs="DEMO_PACS", node="pacs")
    assert started.data_sent.wait(30)  # set once the last one's data went
    assert sends.pending_jobs() == {7}
    (batch,) = sends.take(7, 30)
    assert batch is started and data_sent == [0, 1]
    assert [o.sop_instance_uid for o, _ in batch.stored()] == ["2.25.1", "2.25.2"]
    assert batch.error == "" and batch.started_at <= batch.finished_at
    assert sends.take(7, 30) == [] and sends.pending_jobs() == set()
    assert sorted(p.stem for p in pacs.folder.glob("*.dcm")) == ["2.25.1", "2.25.2"]
    db.close()


def test_no_association_is_an_error_in_words(tmp_path: Path) -> None:
    db = Database(tmp_path / "q.sqlite3")
    sends = EarlySends(db)
    peer = Peer("NOBODY", "127.0.0.1", free_port())
    _start(sends, 3, tmp_path, peer, timeout=5)
    (batch,) = sends.take(3, 30)
    assert batch.outcomes == [] and batch.stored() == []
    assert batch.error  # the association's failure, in words
    db.close()


@pytest.mark.parametrize("ended_first", [True, False])
def test_an_abandoned_send_records_what_was_stored(
    tmp_path: Path, pacs: DemoPacs, ended_first: bool
) -> None:
    db = Database(tmp_path / "q.sqlite3")
    sends = EarlySends(db)
    peer = Peer("DEMO_PACS", "127.0.0.1", pacs.port)
    batch = _start(sends, 5, tmp_path, peer)
    if ended_first:
        assert batch.done.wait(30)
    sends.abandon(5)  # the job failed: before or while its send ran
    assert batch.done.wait(30)
    assert sends.pending_jobs() == set()
    deadline = time.monotonic() + 20
    rows: list[dict[str, Any]] = []
    while not rows and time.monotonic() < deadline:
        rows = db.query("SELECT * FROM audit_events WHERE event = 'stored_before_failure'")
    (row,) = rows
    assert row["job_id"] == 5
    assert row["detail"] == "sc stored by DEMO_PACS before the job failed"
    sends.close(30)
    db.close()


def test_closed_it_waits_for_the_sends_and_records_nothing_after(
    tmp_path: Path, pacs: DemoPacs
) -> None:
    db = Database(tmp_path / "q.sqlite3")
    sends = EarlySends(db)
    peer = Peer("DEMO_PACS", "127.0.0.1", pacs.port)
    batch = _start(sends, 8, tmp_path, peer)
    sends.close(30)
    assert batch.done.is_set() and batch.stored()
    sends.abandon(8)  # after close: nothing written
    assert db.query("SELECT * FROM audit_events WHERE event = 'stored_before_failure'") == []
    db.close()


def test_an_abandoned_send_that_stored_nothing_records_nothing(tmp_path: Path) -> None:
    db = Database(tmp_path / "q.sqlite3")
    sends = EarlySends(db)
    peer = Peer("NOBODY", "127.0.0.1", free_port())
    batch = _start(sends, 6, tmp_path, peer, timeout=5)
    sends.abandon(6)
    assert batch.done.wait(30) and batch.error
    assert db.query("SELECT * FROM audit_events WHERE event = 'stored_before_failure'") == []
    db.close()


@pytest.mark.orthanc
@pytest.mark.dcmtk
@pytest.mark.dicom3tools
def test_an_sr_with_its_evidence_made_ahead_is_made_while_the_seg_is_flushed(
    tmp_path: Path,
    orthanc_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The SEG and the SR's evidence built ahead (here at once, as the child would while
    the model runs): the SR is made as soon as the SEG is handed over (its files flushed
    beside it, not waited for to be sent), and both reach the PACS once, as written,
    valid and re-identified; the SEG is on disk before the job records it."""
    from aifi_app.pipeline import processing, seg_ahead

    caplog.set_level(logging.INFO, logger="aifi_app.pipeline.processing")
    orthanc = orthanc_factory({"aifi": ("AIFI", "127.0.0.1", 104)})
    app = _lung_app(tmp_path, orthanc.dicom_port, orthanc.aet)
    assert app.processor.prepared is not None
    flushed: list[list[Path]] = []
    make_durable = part10.make_durable

    def noted(paths: list[Path]) -> None:
        make_durable(paths)
        flushed.append(paths)

    def built_now(request: seg_ahead.SegAheadRequest) -> bool:
        processor = app.processor
        seg_ahead.build_ahead(request, processor.original_for, processor.study_of_instance)
        return True

    monkeypatch.setattr(app.processor.prepared, "request_seg_ahead", built_now)
    monkeypatch.setattr(part10, "make_durable", noted)
    monkeypatch.setattr(processing, "make_durable", noted)
    sources = _receive_ct(app, tmp_path)
    _drain(app)
    (job,) = app.db.query("SELECT * FROM jobs")
    assert job["state"] == JobState.DELIVERED.value, job["reason"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("SR's evidence from the one made while the model ran" in m for m in messages)
    (made,) = [m for m in messages if "results made" in m]
    assert "seg on disk" in made and "sent" not in made  # not waited for
    outputs = jobs.outputs(app.db, job["id"])
    assert [o["kind"] for o in outputs] == ["sr", "seg"]
    # each made durable (the SEG on a thread of its own, beside the SR)
    assert sorted(f.name for paths in flushed for f in paths) == ["01-sr.dcm", "02-seg.dcm"]
    assert all(o["state"] == "delivered" and o["attempts"] == 1 for o in outputs)
    stored = _stored_as_written(app, orthanc, sources, outputs, tmp_path)
    app.db.close()
    for path, ds in stored:
        assert dciodvfy_errors(path) == [], ds.Modality
        if ds.Modality == "SR":
            assert "Lung" in dsrdump(path)
            (study,) = ds.CurrentRequestedProcedureEvidenceSequence
            images = study.ReferencedSeriesSequence[0].ReferencedSOPSequence
            assert len(images) == len(sources)
