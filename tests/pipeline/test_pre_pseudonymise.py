"""Pseudonymising while a study arrives: the job's work folder is the same, byte for byte,
as pseudonymising everything at completion; only the selected series is used; late and
resent instances, studies without a route and crashes lose nothing and leak nothing."""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import queue
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import ImplicitVRLittleEndian, generate_uid

from aifi_app.config.settings import (
    CompletionSettings,
    NodeSettings,
    Route,
    Settings,
    StorageSettings,
)
from aifi_app.pipeline import pre_pseudonymise, premade, processing, spare_inodes
from aifi_app.pipeline.deferred_writeback import DEFERRED_BYTES, DeferredWriteback
from aifi_app.pipeline.low_priority_child import IOPRIO_SET_SYSCALL
from aifi_app.pipeline.parallel_pseudonymise import pseudonymise_all
from aifi_app.pipeline.pre_pseudonymise import SELECTION_TAGS, PrePseudonymiser
from aifi_app.pipeline.spare_inodes import SpareInodes
from aifi_app.pseudonymise import BurnedInPolicy, ProfileOption, Pseudonymiser
from aifi_app.pseudonymise.element_memo import ElementMemo
from aifi_app.sample_studies import ct_series, demo_patient, write
from aifi_app.service import Appliance
from aifi_app.store import jobs
from aifi_app.store.disk_space import DiskFloor
from aifi_app.store.states import JobState
from tests.helpers.phi_corpus import write_dx

KEY = b"p" * 32
ROUTE = Route(name="ct-lung", algorithm="ct-lung-volume", modalities=("CT",), body_parts=("CHEST",))


def _settings(tmp_path: Path, routes: tuple[Route, ...] = (ROUTE,)) -> Settings:
    return Settings(
        node=NodeSettings(port=0),
        completion=CompletionSettings(idle_seconds=3600.0),  # completes when we say so
        storage=StorageSettings(data_dir=str(tmp_path / "data")),
        routes=routes,
    )


def _app(
    tmp_path: Path, routes: tuple[Route, ...] = (ROUTE,), goes_on: bool = False
) -> tuple[Appliance, PrePseudonymiser]:
    """The appliance and its pre-pseudonymiser, the loop run by the test; ``goes_on``:
    the loop takes what it makes and goes on past ``receiving``, as in the child."""
    app = Appliance(_settings(tmp_path, routes), secret_for=lambda _: KEY)
    pre = PrePseudonymiser(
        app.db,
        app.data_dir,
        lambda: app.settings,
        app.catalog.enabled,
        KEY,
        in_child=False,
        goes_on=goes_on,
    )
    app.processor.prepared = pre
    return app, pre


def _study(thin: int = 22, thick: int = 0) -> list[Dataset]:
    """A chest CT: a 1 mm series of ``thin`` slices and a 5 mm one of ``thick``."""
    patient = demo_patient(7)
    images = list(ct_series(patient, thin))
    if thick:
        series_uid = generate_uid()
        for ds in ct_series(patient, thick):
            ds.StudyInstanceUID = images[0].StudyInstanceUID
            ds.SeriesInstanceUID = series_uid
            ds.SliceThickness = 5.0
            images.append(ds)
    return images


def _receive(app: Appliance, ds: Dataset, tmp_path: Path) -> int:
    path = write(ds, tmp_path / "in")
    app.node.incoming.mkdir(parents=True, exist_ok=True)
    target = app.node.incoming / "x.dcm"
    target.write_bytes(path.read_bytes())
    return app.node.accept_file(target, "MODALITY", str(ds.SOPInstanceUID))


def _premake(pre: PrePseudonymiser) -> None:
    while pre.run_once():
        pass


def _complete_and_pseudonymise(app: Appliance, study_id: int) -> int:
    """Complete the study, route it and run its job's pseudonymisation; the job id."""
    assert jobs.process_now(app.db, study_id, "test")
    for due in jobs.due_studies(app.db):
        jobs.mark_complete(app.db, due)
    for complete in jobs.complete_studies(app.db):
        app.worker.route(complete)
    (job_id,) = jobs.jobs_in_state(app.db, JobState.QUEUED)
    app.processor.pseudonymise(job_id)
    return job_id


def _reference(
    app: Appliance, job_id: int, folder: Path
) -> tuple[list[Path], set[tuple[str, str, str]]]:
    """The job's images pseudonymised all at once, as the step did before pre-making."""
    ctx = app.processor.context(job_id)
    pseudonymiser = app.processor.pseudonymiser(ctx, [])
    paths = app.processor.select_images(ctx)
    mappings = pseudonymise_all(
        KEY, pseudonymiser.options, pseudonymiser.burned_in, folder, paths, processes=1
    )
    return sorted(folder.glob("*.dcm")), set(mappings)


def _same_files(got: list[Path], expected: list[Path]) -> None:
    assert [p.name for p in got] == [p.name for p in expected]
    for a, b in zip(got, expected, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def _pseudonyms(app: Appliance) -> set[tuple[str, str, str]]:
    return {
        (r["kind"], r["original"], r["pseudonym"])
        for r in app.db.query("SELECT kind, original, pseudonym FROM pseudonyms")
    }


def _linked(app: Appliance, job_id: int) -> int:
    """How many of the job's work files are pre-made files (the same inode)."""
    made = {p.stat().st_ino for p in (app.data_dir / premade.PREMADE_DIR).rglob("*.dcm")}
    return sum(p.stat().st_ino in made for p in app.processor.work_dir(job_id).glob("*.dcm"))


def test_premade_files_make_the_same_work_folder_as_pseudonymising_at_completion(
    tmp_path: Path,
) -> None:
    app, pre = _app(tmp_path)
    images = _study(thin=22)
    study_id = 0
    for ds in images:
        study_id = _receive(app, ds, tmp_path)
    _premake(pre)
    made = list((app.data_dir / premade.PREMADE_DIR).rglob("*.dcm"))
    assert len(made) == len(images)
    job_id = _complete_and_pseudonymise(app, study_id)
    assert jobs.job(app.db, job_id)["state"] == JobState.PSEUDONYMISED
    assert _linked(app, job_id) == len(images)  # none pseudonymised again
    expected, mappings = _reference(app, job_id, tmp_path / "reference")
    _same_files(sorted(app.processor.work_dir(job_id).glob("*.dcm")), expected)
    assert mappings <= _pseudonyms(app)
    pre.run_once()  # the job has its files: the cache goes
    assert not (app.data_dir / premade.PREMADE_DIR / str(study_id)).exists()
    assert pre.index({study_id}).stats() == (0, 0)
    app.db.close()


def test_only_the_selected_series_goes_into_the_work_folder(tmp_path: Path) -> None:
    app, pre = _app(tmp_path)
    images = _study(thin=21, thick=23)
    study_id = 0
    for ds in images:
        study_id = _receive(app, ds, tmp_path)
    _premake(pre)
    assert len(list((app.data_dir / premade.PREMADE_DIR).rglob("*.dcm"))) == 44
    job_id = _complete_and_pseudonymise(app, study_id)
    work = sorted(app.processor.work_dir(job_id).glob("*.dcm"))
    assert len(work) == 21  # ct-lung-volume takes the thinnest series
    expected, _ = _reference(app, job_id, tmp_path / "reference")
    _same_files(work, expected)
    app.db.close()


def test_a_series_no_route_takes_is_read_once_and_not_indexed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the first instance of a series no route takes is read (for its plans); its
    other instances get no index entry, and the job reads what it lacks itself: its work
    folder is the same as pseudonymising everything at completion."""
    app, pre = _app(tmp_path)
    images = _study(thin=21, thick=23)
    for ds in images[21:]:
        ds.BodyPartExamined = "ABDOMEN"  # the CT route needs a chest: that series goes nowhere
    study_id = 0
    for ds in images:
        study_id = _receive(app, ds, tmp_path)
    read: list[Path] = []
    real_read_header = pre_pseudonymise.read_header

    def counting(path: Path, tags: Any) -> Dataset:
        read.append(path)
        return real_read_header(path, tags)

    monkeypatch.setattr(pre_pseudonymise, "read_header", counting)
    _premake(pre)
    assert len(read) == 21 + 1
    assert len(list((app.data_dir / premade.PREMADE_DIR).rglob("*.dcm"))) == 21
    rows = app.db.query("SELECT id, received_at FROM instances ORDER BY id")
    index = pre.index({study_id})
    has_header = [index.header(int(r["id"]), float(r["received_at"])) is not None for r in rows]
    assert has_header == [True] * 21 + [True] + [False] * 22
    monkeypatch.undo()
    job_id = _complete_and_pseudonymise(app, study_id)
    work = sorted(app.processor.work_dir(job_id).glob("*.dcm"))
    assert len(work) == 21
    assert _linked(app, job_id) == 21
    expected, _ = _reference(app, job_id, tmp_path / "reference")
    _same_files(work, expected)
    app.db.close()


def test_late_and_resent_instances_are_pseudonymised_at_completion(tmp_path: Path) -> None:
    app, pre = _app(tmp_path)
    images = _study(thin=24)
    study_id = 0
    for ds in images[:-1]:
        study_id = _receive(app, ds, tmp_path)
    _premake(pre)
    _receive(app, images[-1], tmp_path)  # arrives after the last pass
    images[3].ContentTime = "101010"  # a changed copy of an instance, sent again
    _receive(app, images[3], tmp_path)
    job_id = _complete_and_pseudonymise(app, study_id)
    assert _linked(app, job_id) == len(images) - 2
    expected, mappings = _reference(app, job_id, tmp_path / "reference")
    _same_files(sorted(app.processor.work_dir(job_id).glob("*.dcm")), expected)
    assert mappings <= _pseudonyms(app)
    app.db.close()


def test_a_batch_in_flight_stops_when_the_study_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The study completes while a batch is being made: the batch stops after the file
    it is making (its job need not wait for the rest of it) and the job makes the others;
    the work folder is the same, byte for byte."""
    app, pre = _app(tmp_path)
    images = _study(thin=20)
    study_id = 0
    for ds in images:
        study_id = _receive(app, ds, tmp_path)
    made: list[Path] = []
    real = pre_pseudonymise.pseudonymise_file

    def then_complete(
        pseudonymiser: Pseudonymiser, source: Path, target: Path, memo: ElementMemo
    ) -> bool:
        made.append(target)
        if len(made) == 5:  # the last instance arrived meanwhile; the study completes
            assert jobs.process_now(app.db, study_id, "test")
            assert jobs.mark_complete(app.db, study_id)
        return real(pseudonymiser, source, target, memo=memo)

    monkeypatch.setattr(pre_pseudonymise, "pseudonymise_file", then_complete)
    monkeypatch.setattr(pre_pseudonymise, "RECHECK_SECONDS", 0.0)  # asks before every file
    assert pre.run_once()
    assert len(made) == 5 < len(images)
    assert pre.index({study_id}).stats()[0] == 5
    assert not premade.busy_file(app.data_dir, study_id).exists()
    app.worker.route(study_id)
    (job_id,) = jobs.jobs_in_state(app.db, JobState.QUEUED)
    app.processor.pseudonymise(job_id)
    assert _linked(app, job_id) == 5
    expected, mappings = _reference(app, job_id, tmp_path / "reference")
    _same_files(sorted(app.processor.work_dir(job_id).glob("*.dcm")), expected)
    assert mappings <= _pseudonyms(app)
    app.db.close()


def _record_writeback(pre: PrePseudonymiser, limit: int = DEFERRED_BYTES) -> list[Path]:
    """The files the loop hands to the disk's writeback, in order (instead of handing)."""
    started: list[Path] = []
    pre._work.writeback = DeferredWriteback(limit, start=started.append)
    return started


def _made_files(app: Appliance) -> list[Path]:
    """The pre-made files, in the order they were made (instance ids grow)."""
    found = (app.data_dir / premade.PREMADE_DIR).rglob("*.dcm")
    return sorted(found, key=lambda p: int(p.stem))


def test_files_made_while_the_study_arrives_are_written_back_once_it_pauses(
    tmp_path: Path,
) -> None:
    """While instances keep arriving nothing made goes to the disk (the node's flushes come
    first); a pass that finds nothing new, after one that found nothing either (no
    instance for a poll interval), hands every file to writeback, oldest first."""
    app, pre = _app(tmp_path)
    started = _record_writeback(pre)
    images = _study(thin=30)
    study_id = 0
    for ds in images[:20]:
        study_id = _receive(app, ds, tmp_path)
    assert pre.run_once()  # one batch (24 at most) of the 20
    for ds in images[20:]:  # more arrive meanwhile
        _receive(app, ds, tmp_path)
    assert pre.run_once()
    assert len(_made_files(app)) == len(images)
    assert started == []
    assert not pre.run_once()  # caught up: nothing new this once
    assert started == []
    assert not pre.run_once()  # nothing new for a second pass: the arrival paused
    assert started == _made_files(app)
    assert pre._work.writeback.pending == (0, 0)
    job_id = _complete_and_pseudonymise(app, study_id)
    assert _linked(app, job_id) == len(images)
    expected, _ = _reference(app, job_id, tmp_path / "reference")
    _same_files(sorted(app.processor.work_dir(job_id).glob("*.dcm")), expected)
    app.db.close()


def test_files_are_written_back_when_their_study_completes(tmp_path: Path) -> None:
    app, pre = _app(tmp_path)
    started = _record_writeback(pre)
    study_id = 0
    for ds in _study(thin=10):
        study_id = _receive(app, ds, tmp_path)
    assert jobs.process_now(app.db, study_id, "test")
    real = pre._work._next_batch

    def then_complete() -> list[Any]:
        batch = real()  # read while receiving; the study completes as it is made
        assert jobs.mark_complete(app.db, study_id)
        return batch

    pre._work._next_batch = then_complete  # type: ignore[method-assign]
    assert pre.run_once()
    assert started == _made_files(app)  # its job comes: to the disk at once
    app.db.close()


def test_beyond_the_limit_the_oldest_files_are_written_back_while_arriving(
    tmp_path: Path,
) -> None:
    app, pre = _app(tmp_path)
    for ds in _study(thin=6):
        _receive(app, ds, tmp_path)
    started = _record_writeback(pre, limit=1)
    assert pre.run_once()
    made = _made_files(app)
    assert started == made  # each beyond the limit: none waits
    limit = 3 * max(p.stat().st_size for p in made)  # room for three of six
    started = _record_writeback(pre, limit=limit)
    for ds in _study(thin=6):  # another study (same patient, new UIDs)
        _receive(app, ds, tmp_path)
    assert pre.run_once()
    again = [p for p in _made_files(app) if p not in made]
    assert len(again) == 6
    assert 3 <= len(started) < 6
    assert started == again[: len(started)]  # the oldest went
    files, waiting = pre._work.writeback.pending
    assert files == 6 - len(started)
    assert waiting == sum(p.stat().st_size for p in again[len(started) :]) <= limit
    app.db.close()


def test_a_help_request_first_writes_back_what_waits(tmp_path: Path) -> None:
    """A job asks for help: what was made while studies arrived goes to the disk first,
    and what the loop makes for the job goes at once."""
    app, pre = _app(tmp_path)
    started = _record_writeback(pre)
    for ds in _study(thin=4):
        _receive(app, ds, tmp_path)
    assert pre.run_once()
    waiting = _made_files(app)
    assert started == [] and len(waiting) == 4
    study_id = 0
    for ds in ct_series(demo_patient(9), 5):  # another study, completed before it was made
        study_id = _receive(app, ds, tmp_path)
    job_id, key = _helped_job(app, study_id)
    instances = app.processor._instances(app.processor.context(job_id))
    request = _help_request(study_id, key, instances)
    pre._work.help(request)
    assert started == waiting  # the job's own files are written back at once, not here
    helped = premade.PremadeIndex.load_file(
        app.data_dir, study_id, premade.help_index(app.data_dir, study_id, "job1-1")
    ).lookup(instances, key)
    assert len(helped) == len(instances)
    assert pre._work.writeback.pending == (0, 0)
    app.db.close()


def test_a_study_that_gets_no_route_leaves_no_cache(tmp_path: Path) -> None:
    mr_only = Route(name="mr", algorithm="ct-lung-volume", modalities=("MR",))
    app, pre = _app(tmp_path, routes=(ROUTE, mr_only))
    study_id = 0
    for ds in _study(thin=20):
        ds.BodyPartExamined = "ABDOMEN"  # the CT route needs a chest
        study_id = _receive(app, ds, tmp_path)
    _premake(pre)
    assert not list((app.data_dir / premade.PREMADE_DIR).rglob("*.dcm"))
    assert pre.index({study_id}).stats() == (0, 0)  # looked at: nothing to make
    assert jobs.process_now(app.db, study_id, "test")
    app.worker.run_once()
    assert app.db.query("SELECT state FROM studies")[0]["state"] == "no_match"
    pre.run_once()
    assert not (app.data_dir / premade.PREMADE_DIR / str(study_id)).exists()
    app.db.close()


@pytest.mark.parametrize("goes_on", [False, True])
def test_a_burned_in_refusal_is_left_to_the_job(tmp_path: Path, goes_on: bool) -> None:
    """The loop refuses an image (burned-in text): no file; the job meets the same
    refusal (also where the loop took the image and the job waits for it)."""
    app, pre = _app(tmp_path, goes_on=goes_on)
    images = _study(thin=21)
    images[5].BurnedInAnnotation = "YES"
    study_id = 0
    for ds in images:
        study_id = _receive(app, ds, tmp_path)
    _premake(pre)
    assert pre.index({study_id}).stats()[0] == len(images) - 1  # the refused one: no file
    job_id = _complete_and_pseudonymise(app, study_id)
    job = jobs.job(app.db, job_id)
    assert job["state"] == JobState.REJECTED
    assert "burned" in job["reason"].lower()
    assert not app.processor.work_dir(job_id).exists()
    app.db.close()


@pytest.mark.parametrize("goes_on", [False, True])
def test_cache_names_and_logs_hold_no_patient_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, goes_on: bool
) -> None:
    """Also the claims, their owners' badges, the spare files and a stopped batch's
    index (the child's loop)."""
    caplog.set_level(logging.DEBUG)
    app, pre = _app(tmp_path, goes_on=goes_on)
    if goes_on:
        pre._work.spares = SpareInodes(app.data_dir / premade.PREMADE_DIR / "spare", keep=8)
        pre._work.spares.fill()
    images = _study(thin=20)
    study_id = 0
    for ds in images:
        study_id = _receive(app, ds, tmp_path)
    if goes_on:
        pre._config = pre._current_config()
        pre._work.run_once(lambda: True)  # stopped at its first instance
    _premake(pre)
    _complete_and_pseudonymise(app, study_id)
    for path in (app.data_dir / premade.PREMADE_DIR).rglob("*"):
        for part in path.relative_to(app.data_dir / premade.PREMADE_DIR).parts:
            stem = part.removesuffix(".dcm").removesuffix(".json").removeprefix("index-")
            stem = stem.removeprefix("owner-")  # a claim's owner: the loop, or a job
            named = stem in ("claims", "spare", "pre") or re.fullmatch(r"job\d+-\d+", stem)
            numbered = re.fullmatch(r"\d+(-\d+)?", stem)  # spares, stopped batches
            assert named or numbered or (len(stem) == 16 and int(stem, 16) >= 0), part
    first = images[0]
    secrets_ = [
        str(first.PatientName),
        str(first.PatientID),
        str(first.StudyInstanceUID),
        str(first.SeriesInstanceUID),
        str(first.AccessionNumber),
    ]
    for record in caplog.records:
        text = record.getMessage()
        assert not any(s in text for s in secrets_), text
    app.db.close()


def test_pre_making_in_the_low_priority_child_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app, _ = _app(tmp_path)
    pre = PrePseudonymiser(
        app.db, app.data_dir, lambda: app.settings, app.catalog.enabled, KEY, in_child=True
    )
    app.processor.prepared = pre
    pre.start()
    try:
        images = _study(thin=20)
        study_id = 0
        for ds in images:
            study_id = _receive(app, ds, tmp_path)
        pre.wake()
        for _ in range(600):  # the child starts (an interpreter, pydicom) and makes them
            if pre.index({study_id}).stats()[0] == len(images):
                break
            time.sleep(0.1)
        assert pre._child is not None
        child = pre._child.pid or 0
        if sys.platform.startswith("linux"):
            # its low-priority thread at the lowest CPU priority, preempted at once by
            # any other task (SCHED_IDLE); its own thread as it started (the loop's
            # control, and the work for a job while no study arrives)
            threads = [int(t) for t in os.listdir(f"/proc/{child}/task")]
            low = [t for t in threads if os.getpriority(os.PRIO_PROCESS, t) == 19]
            assert low and child not in low
            assert os.getpriority(os.PRIO_PROCESS, child) == os.getpriority(os.PRIO_PROCESS, 0)
            if platform.machine() in IOPRIO_SET_SYSCALL:
                assert os.sched_getscheduler(low[0]) == os.SCHED_IDLE
                assert os.sched_getscheduler(child) == os.SCHED_OTHER
        elif hasattr(os, "getpriority"):  # elsewhere the whole child at the lowest
            assert os.getpriority(os.PRIO_PROCESS, child) == 19
        job_id = _complete_and_pseudonymise(app, study_id)
        # (the files may be gone already: the process removes a done job's cache)
        (line,) = [r.getMessage() for r in caplog.records if "pseudonymised now" in r.getMessage()]
        assert line.startswith(f"job {job_id}: {len(images)} image(s) linked"), line
        expected, _ = _reference(app, job_id, tmp_path / "reference")
        _same_files(sorted(app.processor.work_dir(job_id).glob("*.dcm")), expected)
    finally:
        pre.stop()
        app.db.close()


def _help_request(
    study_id: int, key: str, instances: list[premade.SourceInstance]
) -> pre_pseudonymise.HelpRequest:
    """A job's request that the child make ``instances`` (the Basic Profile's options)."""
    return pre_pseudonymise.HelpRequest(
        study_id,
        "job1-1",
        key,
        frozenset(),
        BurnedInPolicy.REFUSE,
        tuple((i.instance_id, str(i.path), i.received_at) for i in instances),
    )


def _helped_job(app: Appliance, study_id: int) -> tuple[int, str]:
    """Complete and route the study (nothing pre-made), queue its job; (job id, options key)."""
    assert jobs.process_now(app.db, study_id, "test")
    assert jobs.mark_complete(app.db, study_id)
    app.worker.route(study_id)
    (job_id,) = jobs.jobs_in_state(app.db, JobState.QUEUED)
    ctx = app.processor.context(job_id)
    pseudonymiser = app.processor.pseudonymiser(ctx, [])
    return job_id, premade.options_key(KEY, pseudonymiser.options, pseudonymiser.burned_in)


def test_a_help_request_makes_what_the_job_has_not_claimed(tmp_path: Path) -> None:
    """The loop makes a help request's instances in order, skipping those the job took,
    and indexes them; the job's claims of the others fail: the loop holds them."""
    app, pre = _app(tmp_path)
    study_id = 0
    for ds in _study(thin=10):
        study_id = _receive(app, ds, tmp_path)
    job_id, key = _helped_job(app, study_id)
    ctx = app.processor.context(job_id)
    instances = app.processor._instances(ctx)
    request = _help_request(study_id, key, instances)
    pre.run_once()  # reads the settings: pre-making is on
    for instance in instances[-3:]:  # the job took the last three, from the end
        assert premade.take(app.data_dir, study_id, key, instance.instance_id, "job1-1") is None
    pre._work.help(request)
    index = premade.PremadeIndex.load_file(
        app.data_dir, study_id, premade.help_index(app.data_dir, study_id, "job1-1")
    )
    assert set(index.lookup(instances, key)) == {i.instance_id for i in instances[:7]}
    first = instances[0].instance_id
    assert premade.take(app.data_dir, study_id, key, first, "job1-1") == premade.PRE_OWNER
    assert not premade.busy_file(app.data_dir, study_id).exists()
    app.db.close()


def test_the_pre_pseudonymising_process_makes_a_study_whose_job_waits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A study that completed and got its job before the process started: the process
    (it goes on past ``receiving`` while a job of the study waits) makes it; the job
    links every image, and the work folder is the same, byte for byte."""
    caplog.set_level(logging.INFO)
    app, _ = _app(tmp_path)
    images = _study(thin=20)
    study_id = 0
    for ds in images:
        study_id = _receive(app, ds, tmp_path)
    job_id, key = _helped_job(app, study_id)
    pre = PrePseudonymiser(
        app.db, app.data_dir, lambda: app.settings, app.catalog.enabled, KEY, in_child=True
    )
    app.processor.prepared = pre
    pre.start()
    try:
        assert pre.shares_claims()
        pre.wake()
        for _ in range(600):
            if pre.index({study_id}).stats()[0] == len(images):
                break
            time.sleep(0.1)
        instance = app.processor._instances(app.processor.context(job_id))[0]
        holder = premade.take(app.data_dir, study_id, key, instance.instance_id, "job1-1")
        assert holder == premade.PRE_OWNER  # taken before it was made
        app.processor.pseudonymise(job_id)
        assert jobs.job(app.db, job_id)["state"] == JobState.PSEUDONYMISED
        # (the process removes the cache of a study whose job is done, so the files are
        # not there to compare with any more: the step's own account)
        (line,) = [r.getMessage() for r in caplog.records if "pseudonymised now" in r.getMessage()]
        assert line.startswith(f"job {job_id}: {len(images)} image(s) linked"), line
        expected, mappings = _reference(app, job_id, tmp_path / "reference")
        _same_files(sorted(app.processor.work_dir(job_id).glob("*.dcm")), expected)
        assert mappings <= _pseudonyms(app)
    finally:
        pre.stop()
        app.db.close()
    assert not pre.shares_claims()  # stopped: a job makes all itself


def test_the_loop_goes_on_with_a_study_after_it_completes_until_its_job_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``goes_on`` a batch in flight does not stop when its study completes, and
    the next batches come while its job waits; once the job is pseudonymised the loop
    leaves the study. Without it, nothing of a completed study is made."""
    monkeypatch.setattr(pre_pseudonymise, "BATCH", 4)
    for goes_on in (False, True):
        app, pre = _app(tmp_path / str(goes_on), goes_on=goes_on)
        study_id = 0
        for ds in _study(thin=20):
            study_id = _receive(app, ds, tmp_path)
        assert pre.run_once()  # 4 made while it arrives
        job_id, _ = _helped_job(app, study_id)
        assert pre.run_once() is goes_on  # 4 more after it completed, or none
        assert pre.index({study_id}).stats()[0] == (8 if goes_on else 4)
        app.processor.pseudonymise(job_id)  # the job makes the other 12
        assert _linked(app, job_id) == (8 if goes_on else 4)
        assert not pre.run_once()  # its job is done: nothing more made, the cache goes
        assert not (app.data_dir / premade.PREMADE_DIR / str(study_id)).exists()
        expected, _ = _reference(app, job_id, tmp_path / str(goes_on) / "reference")
        _same_files(sorted(app.processor.work_dir(job_id).glob("*.dcm")), expected)
        app.db.close()


def test_the_job_and_the_loop_meet_and_nothing_is_made_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The job takes the images left from the last, the loop from the first (here one
    batch of the loop runs after the job's third image); the job links what the loop
    took and made, each image is made once, and the work folder is the same."""
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(pre_pseudonymise, "BATCH", 4)
    app, pre = _app(tmp_path, goes_on=True)
    study_id = 0
    for ds in _study(thin=20):
        study_id = _receive(app, ds, tmp_path)
    assert pre.run_once()  # the first 4, made while it arrived
    job_id, _ = _helped_job(app, study_id)
    real_take = premade.take
    won: dict[int, str] = {}  # instance -> who took it
    job_asked: list[int] = []
    made: list[Path] = []
    real_file = pre_pseudonymise.pseudonymise_file

    def counted(*args: Any, **kwargs: Any) -> bool:
        made.append(args[2])
        return bool(real_file(*args, **kwargs))

    def take(data_dir: Path, study: int, k: str, instance_id: int, owner: str) -> str | None:
        holder = real_take(data_dir, study, k, instance_id, owner)
        if holder is None:
            assert instance_id not in won  # nothing is taken twice
            won[instance_id] = owner
        if owner != premade.PRE_OWNER:
            job_asked.append(instance_id)
            if len(job_asked) == 3:
                assert pre.run_once()  # the loop's next batch: 4 more, from the first left
        return holder

    monkeypatch.setattr(premade, "take", take)
    monkeypatch.setattr(pre_pseudonymise, "pseudonymise_file", counted)
    woken: list[bool] = []
    monkeypatch.setattr(pre, "wake", lambda: woken.append(not job_asked))
    app.processor.pseudonymise(job_id)
    assert woken == [True]  # the loop told at the job's start, before its first claim
    assert jobs.job(app.db, job_id)["state"] == JobState.PSEUDONYMISED
    (line,) = [r.getMessage() for r in caplog.records if "pseudonymised now" in r.getMessage()]
    assert "4 image(s) linked" in line and "16 pseudonymised now (4 of them" in line
    assert _linked(app, job_id) == 8
    assert len(made) == 4  # the loop's second batch; the job made the other 12 itself
    assert sorted(o == premade.PRE_OWNER for o in won.values()) == [False] * 12 + [True] * 4
    assert job_asked[:3] == sorted(job_asked, reverse=True)[:3]  # from the last
    expected, mappings = _reference(app, job_id, tmp_path / "reference")
    _same_files(sorted(app.processor.work_dir(job_id).glob("*.dcm")), expected)
    assert mappings <= _pseudonyms(app)
    app.db.close()


@pytest.mark.parametrize("holder", [premade.PRE_OWNER, "job99-1"])
def test_images_taken_but_not_made_are_made_by_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, holder: str
) -> None:
    """Images the loop took but never indexed (its process died) are made by the job
    once it has waited :data:`processing.HELP_WAIT_SECONDS`; images an earlier attempt
    of a job took are made at once, without waiting for the loop."""
    monkeypatch.setattr(processing, "HELP_WAIT_SECONDS", 0.1)
    app, pre = _app(tmp_path, goes_on=True)
    study_id = 0
    for ds in _study(thin=20):
        study_id = _receive(app, ds, tmp_path)
    job_id, key = _helped_job(app, study_id)
    instances = app.processor._instances(app.processor.context(job_id))
    for instance in instances[:5]:
        assert premade.take(app.data_dir, study_id, key, instance.instance_id, holder) is None
    waited: list[int] = []
    real = pre.made_by_loop

    def recorded(k: str, taken: Any, timeout: float) -> dict[int, premade.Premade]:
        waited.append(len(taken))
        return real(k, taken, timeout)

    monkeypatch.setattr(pre, "made_by_loop", recorded)
    app.processor.pseudonymise(job_id)
    assert jobs.job(app.db, job_id)["state"] == JobState.PSEUDONYMISED
    assert waited == ([5] if holder == premade.PRE_OWNER else [])
    assert _linked(app, job_id) == 0
    expected, mappings = _reference(app, job_id, tmp_path / "reference")
    _same_files(sorted(app.processor.work_dir(job_id).glob("*.dcm")), expected)
    assert mappings <= _pseudonyms(app)
    app.db.close()


_CRASHING_RUN = """
import sys
from pathlib import Path
sys.path[:0] = {paths!r}
from tests.pipeline.test_pre_pseudonymise import _app, _complete_and_pseudonymise, _premake
app, pre = _app(Path({tmp!r}))
_premake(pre)
_complete_and_pseudonymise(app, {study_id})
"""


@pytest.mark.parametrize(
    "point", ["prepseudo.before_recorded", "processing.after_pseudonymised_files"]
)
def test_a_crash_loses_nothing_and_the_work_folder_is_the_same(tmp_path: Path, point: str) -> None:
    app, pre = _app(tmp_path)
    images = _study(thin=20)
    study_id = 0
    for ds in images:
        study_id = _receive(app, ds, tmp_path)
    app.db.close()
    script = textwrap.dedent(_CRASHING_RUN).format(
        paths=sys.path, tmp=str(tmp_path), study_id=study_id
    )
    env = {**os.environ, "AIFI_FAILPOINTS": point}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=Path.cwd(), capture_output=True, timeout=120
    )
    assert done.returncode == -9, done.stderr.decode()[-2000:]  # killed at the point
    app, pre = _app(tmp_path)
    assert list((app.data_dir / premade.PREMADE_DIR).rglob("*.dcm"))  # made before the crash
    pre.purge()  # as every start does: whatever an earlier run made is not used
    assert not (app.data_dir / premade.PREMADE_DIR).exists()
    queued = jobs.jobs_in_state(app.db, JobState.QUEUED)
    if queued:  # the job's step is done again, from the received files
        (job_id,) = queued
        app.processor.pseudonymise(job_id)
    else:
        _premake(pre)
        job_id = _complete_and_pseudonymise(app, study_id)
    assert jobs.job(app.db, job_id)["state"] == JobState.PSEUDONYMISED
    expected, mappings = _reference(app, job_id, tmp_path / "reference")
    _same_files(sorted(app.processor.work_dir(job_id).glob("*.dcm")), expected)
    assert mappings <= _pseudonyms(app)
    app.db.close()


@pytest.mark.parametrize("case", ["switched off", "disk short", "near the floor"])
def test_nothing_is_made_when_switched_off_or_the_disk_is_short(tmp_path: Path, case: str) -> None:
    app, _ = _app(tmp_path)
    if case == "switched off":
        app.settings = dataclasses.replace(
            app.settings,
            completion=dataclasses.replace(
                app.settings.completion, pseudonymise_while_receiving=False
            ),
        )
    pre = PrePseudonymiser(
        app.db,
        app.data_dir,
        lambda: app.settings,
        app.catalog.enabled,
        KEY,
        disk_short=lambda: "free disk space is below the floor" if case == "disk short" else None,
        # a floor of all the volume minus less than the reserve: the cache stays away
        disk_floor=lambda: DiskFloor(min_free_percent=100 if case == "near the floor" else 0),
        in_child=False,
    )
    app.processor.prepared = pre
    images = _study(thin=20)
    study_id = 0
    for ds in images:
        study_id = _receive(app, ds, tmp_path)
    assert not pre.run_once()
    assert not (app.data_dir / premade.PREMADE_DIR).exists()
    job_id = _complete_and_pseudonymise(app, study_id)  # the job does it all, as before
    expected, _ = _reference(app, job_id, tmp_path / "reference")
    _same_files(sorted(app.processor.work_dir(job_id).glob("*.dcm")), expected)
    app.db.close()


def test_the_selection_headers_are_those_dcmread_reads(tmp_path: Path) -> None:
    """The child's selection tags (kept in the index for the job's selection) are what
    ``dcmread`` reads, for plain files, the PHI corpus (character sets, private blocks,
    sequences), an implicit VR file and one that is not DICOM (None)."""
    paths = [str(p) for p in write_dx(tmp_path / "dx", 6, rows=64, columns=64)]
    paths += [str(write(ds, tmp_path / "ct")) for ds in _study(thin=3)]
    implicit = _study(thin=1)[0]
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    paths.append(str(tmp_path / "implicit.dcm"))
    implicit.save_as(paths[-1], enforce_file_format=True)
    (tmp_path / "not.dcm").write_bytes(b"not DICOM")
    paths.append(str(tmp_path / "not.dcm"))
    got = [pre_pseudonymise.selection_header(p) for p in paths]
    assert got[-1] is None
    for path, header in zip(paths[:-1], got[:-1], strict=True):
        expected = dcmread(path, stop_before_pixels=True, specific_tags=SELECTION_TAGS)
        assert header is not None
        assert header.to_json_dict() == expected.to_json_dict(), path


def test_the_index_json_of_a_header_is_what_pydicom_writes(tmp_path: Path) -> None:
    """The selection headers as DICOM JSON for the index, each distinct element made
    once (the series' shared ones are the same value), equal to ``to_json_dict`` for a
    CT series, the PHI corpus (character sets, person names, private blocks) and an
    implicit VR file read by ``dcmread``."""
    paths = [str(p) for p in write_dx(tmp_path / "dx", 4, rows=64, columns=64)]
    paths += [str(write(ds, tmp_path / "ct")) for ds in _study(thin=4)]
    implicit = _study(thin=1)[0]
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    paths.append(str(tmp_path / "implicit.dcm"))
    implicit.save_as(paths[-1], enforce_file_format=True)
    made = [pre_pseudonymise.header_json(h) for h in map(pre_pseudonymise.selection_header, paths)]
    read_again = map(pre_pseudonymise.selection_header, paths)
    expected = [h.to_json_dict() for h in read_again if h is not None]
    assert made == expected
    modality = "00080060"
    assert made[4][modality] is made[7][modality]  # the CT series': made once
    assert made[4]["00200013"] != made[5]["00200013"]  # instance numbers differ


def test_a_completed_studys_files_wait_while_another_study_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop goes on with a completed study for its job: its files go to the disk at
    once, unless another study arrives (the node's flushes first); then they wait until
    that one completes."""
    monkeypatch.setattr(pre_pseudonymise, "BATCH", 4)
    app, pre = _app(tmp_path, goes_on=True)
    started = _record_writeback(pre)
    study_id = 0
    for ds in _study(thin=12):
        study_id = _receive(app, ds, tmp_path)
    _helped_job(app, study_id)  # completed before anything was made; its job waits
    assert pre.run_once()
    first = _made_files(app)
    assert len(first) == 4 and started == first  # no other study: at once
    other = 0
    for ds in ct_series(demo_patient(9), 2):  # another study starts arriving
        other = _receive(app, ds, tmp_path)
    assert pre.run_once()  # the completed one's next 4: they wait
    assert len(_made_files(app)) == 8 and started == first
    assert jobs.process_now(app.db, other, "test")
    assert jobs.mark_complete(app.db, other)
    assert pre.run_once()  # no study arrives: all go, the waiting ones first
    made = _made_files(app)
    assert len(made) == 12 and started[:8] == made[:8] and sorted(started) == sorted(made)
    app.db.close()


def test_the_child_loads_the_seg_builder_only_when_no_study_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its warm-up (highdicom and its tables: ~1 s of CPU, ~100 MB read) waits while a
    study is receiving: the node's receiving would share the cores and caches with it."""
    import queue
    import threading

    from aifi_app.pipeline import seg_ahead

    app, _ = _app(tmp_path)
    study_id = _receive(app, _study(thin=2)[0], tmp_path)  # receiving until completed
    warmed = threading.Event()
    monkeypatch.setattr(pre_pseudonymise, "WARM_UP_IDLE", 0.05)
    monkeypatch.setattr(pre_pseudonymise, "IDLE_SECONDS", 0.05)  # its looks between
    monkeypatch.setattr(pre_pseudonymise, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(seg_ahead, "warm_up", warmed.set)
    inbox: queue.Queue[object] = queue.Queue()
    config = pre_pseudonymise.plan_config(app.settings, dict(app.catalog.enabled()), None)
    assert config.builds_segs
    inbox.put(dataclasses.replace(config, active=False))  # nothing to pre-make
    child = threading.Thread(
        target=pre_pseudonymise.run_child,
        args=(str(app.db.path), str(app.data_dir), KEY, inbox, os.getppid()),
        daemon=True,
    )
    child.start()
    assert not warmed.wait(1.0)  # 20 times its idle time, the study still arriving
    assert jobs.process_now(app.db, study_id, "test")
    for due in jobs.due_studies(app.db):
        jobs.mark_complete(app.db, due)
    assert warmed.wait(10)  # loaded once nothing arrives
    inbox.put(None)
    child.join(10)
    assert not child.is_alive()
    app.db.close()


def test_the_loop_makes_its_files_in_spare_files_made_while_nothing_arrives(
    tmp_path: Path,
) -> None:
    """The child's loop makes empty files when it has nothing to do and no study arrives
    (not while one does), and each file it makes takes one: the job's work folder is the
    same, byte for byte; once none is left the files are created as before."""
    app, pre = _app(tmp_path, goes_on=True)
    spares = SpareInodes(app.data_dir / premade.PREMADE_DIR / spare_inodes.SPARE_DIR, keep=12)
    pre._work.spares = spares
    other = _study(thin=1)[0]
    other.BodyPartExamined = "ABDOMEN"  # no route: nothing to make
    other_id = _receive(app, other, tmp_path)
    _premake(pre)  # looked at, nothing made
    assert not pre._work.make_spares()  # a study arrives: none made
    assert spares.ready == 0
    assert jobs.process_now(app.db, other_id, "test")
    app.worker.run_once()  # completed and routed: nothing arrives any more
    assert not pre.run_once()
    while pre._work.make_spares():  # up to the limit, a chunk at a time
        pass
    assert spares.ready == 12
    inodes = {p.stat().st_ino for p in spares.folder.iterdir()}
    images = _study(thin=20)
    study_id = 0
    for ds in images:
        study_id = _receive(app, ds, tmp_path)
    _premake(pre)
    assert spares.ready == 0  # 12 of the 20 made took one
    assert len([p for p in _made_files(app) if p.stat().st_ino in inodes]) == 12
    job_id = _complete_and_pseudonymise(app, study_id)
    assert _linked(app, job_id) == len(images)
    expected, _ = _reference(app, job_id, tmp_path / "reference")
    _same_files(sorted(app.processor.work_dir(job_id).glob("*.dcm")), expected)
    app.db.close()


def test_a_pass_told_to_stop_leaves_the_rest_to_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child's passes while a study arrives run at the lowest priority and stop once
    no study arrives any more (``stop``): the files made so far are indexed, the rest of
    the batch is made by the next pass (at the child's own priority, for the job), and
    the work folder is the same, byte for byte."""
    monkeypatch.setattr(pre_pseudonymise, "BATCH", 20)
    app, pre = _app(tmp_path, goes_on=True)
    images = _study(thin=20)
    study_id = 0
    for ds in images:
        study_id = _receive(app, ds, tmp_path)
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 3  # three files made, then the arrival ends

    pre._config = pre._current_config()
    assert pre._work.run_once(stop)
    assert pre.index({study_id}).stats()[0] == 3
    assert pre.run_once()  # the other 17, taken from where the first pass stopped
    assert pre.index({study_id}).stats()[0] == 20
    assert not pre.run_once()  # nothing left, nothing made twice
    job_id = _complete_and_pseudonymise(app, study_id)
    assert _linked(app, job_id) == len(images)
    expected, _ = _reference(app, job_id, tmp_path / "reference")
    _same_files(sorted(app.processor.work_dir(job_id).glob("*.dcm")), expected)
    app.db.close()


def test_the_child_makes_at_the_lowest_priority_only_while_a_study_arrives(
    tmp_path: Path,
) -> None:
    """``run_child``: its passes while a study arrives are handed to the lowest
    priority (``low``); once the study completed, those for its waiting job run in the
    child's own thread; the job links all the images."""
    app, _ = _app(tmp_path)
    config = pre_pseudonymise.plan_config(app.settings, app.catalog.enabled(), None)
    inbox: queue.Queue[object] = queue.Queue()
    inbox.put(config)
    handed: list[tuple[str, bool]] = []

    def low(call: Any) -> Any:
        name = getattr(getattr(call, "func", call), "__name__", "?")
        handed.append((name, pre_pseudonymise.study_arriving(app.db)))
        return call()

    child = threading.Thread(
        target=pre_pseudonymise.run_child,
        args=(str(app.db.path), str(app.data_dir), KEY, inbox, os.getppid(), low),
        daemon=True,
    )
    child.start()
    try:
        images = _study(thin=20)
        study_id = _receive(app, images[0], tmp_path)
        inbox.put("wake")
        index = PrePseudonymiser(
            app.db, app.data_dir, lambda: app.settings, app.catalog.enabled, KEY, in_child=False
        )
        _wait_for(lambda: index.index({study_id}).stats()[0] == 1)
        assert ("_passes_while_arriving", True) in handed  # arriving: at the lowest priority
        for ds in images[1:]:
            _receive(app, ds, tmp_path)
        job_id, _ = _helped_job(app, study_id)  # complete: the rest for its job
        handed.clear()
        inbox.put("wake")
        _wait_for(lambda: index.index({study_id}).stats()[0] == len(images))
        assert not [h for h in handed if "pass" in h[0]]  # in the child's own thread
    finally:
        inbox.put(None)
        child.join(10)
    assert not child.is_alive()
    app.processor.pseudonymise(job_id)
    assert _linked(app, job_id) == len(images)
    expected, _ = _reference(app, job_id, tmp_path / "reference")
    _same_files(sorted(app.processor.work_dir(job_id).glob("*.dcm")), expected)
    app.db.close()


def _wait_for(condition: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_batches_stopped_at_their_first_instance_keep_what_they_indexed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two option sets for one series: a pass that made the first instance for one set
    and stopped, then a pass that made nothing, then one that made the rest: each index
    file is its own (none replaced), so every file made is known, for both sets."""
    monkeypatch.setattr(pre_pseudonymise, "BATCH", 3)
    app, pre = _app(tmp_path, goes_on=True)
    study_id = 0
    for ds in _study(thin=3):
        study_id = _receive(app, ds, tmp_path)
    plans = [
        pre_pseudonymise.Plan(
            premade.options_key(KEY, options, BurnedInPolicy.REFUSE),
            options,
            BurnedInPolicy.REFUSE,
        )
        for options in (frozenset(), frozenset({ProfileOption.RETAIN_PATIENT_CHARACTERISTICS}))
    ]
    monkeypatch.setattr(pre._work, "plans", lambda *_: plans)
    pre._config = pre._current_config()
    asked = []

    def stop_from_the_second() -> bool:
        asked.append(1)
        return len(asked) > 1

    assert pre._work.run_once(stop_from_the_second)  # the first instance, first set only
    assert pre._work.run_once(lambda: True)  # nothing
    assert pre._work.run_once()  # the rest
    index = pre.index({study_id})
    sources = [
        premade.SourceInstance(int(r["id"]), study_id, app.data_dir / r["path"], r["received_at"])
        for r in app.db.query("SELECT id, path, received_at FROM instances ORDER BY id")
    ]
    for plan in plans:
        assert len(index.lookup(sources, plan.key)) == 3, plan.options
    names = sorted(p.name for p in premade.study_dir(app.data_dir, study_id).glob("index-*"))
    assert len(names) == 3  # one of its own each
    app.db.close()


def test_a_completed_studys_batches_for_its_job_are_small(tmp_path: Path) -> None:
    """While a study arrives a batch takes up to BATCH instances; once it completed (its
    job links what a batch made when the batch's index is written) up to JOB_BATCH."""
    app, pre = _app(tmp_path, goes_on=True)
    images = _study(thin=20)
    study_id = 0
    for ds in images:
        study_id = _receive(app, ds, tmp_path)
    job_id, _ = _helped_job(app, study_id)  # completed before anything was made
    assert pre.run_once()
    assert pre.index({study_id}).stats()[0] == pre_pseudonymise.JOB_BATCH
    _premake(pre)
    assert pre.index({study_id}).stats()[0] == len(images)
    app.processor.pseudonymise(job_id)
    assert _linked(app, job_id) == len(images)
    expected, _ = _reference(app, job_id, tmp_path / "reference")
    _same_files(sorted(app.processor.work_dir(job_id).glob("*.dcm")), expected)
    app.db.close()
