"""The worker: its lanes (a small study is carried to its results while a large one is
in its model, and no two lanes ever do the same study's or job's step), and its stepping
(Python's garbage is collected once the appliance is idle after work, never in the
middle of it)."""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.uid import generate_uid

from aifi_app.algorithms.findings import AlgorithmResult
from aifi_app.config.loading import ConfigError, validate
from aifi_app.config.settings import (
    CompletionSettings,
    DeliverySettings,
    NodeSettings,
    RemoteNode,
    Settings,
    StorageSettings,
)
from aifi_app.demo import DemoPacs
from aifi_app.pipeline.job_claims import Claims
from aifi_app.pipeline.worker import Worker
from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest, write
from aifi_app.service import Appliance
from aifi_app.store import jobs
from aifi_app.store.states import JobState

KEY = b"k" * 32
DEADLINE_SECONDS = 60.0  # a deadline for a hung test, not a timing assertion


def _settings(tmp_path: Path, pacs_port: int, small_study_lane_images: int) -> Settings:
    return Settings(
        node=NodeSettings(port=0),
        remote_nodes=(RemoteNode("pacs", "DEMO_PACS", "127.0.0.1", pacs_port),),
        completion=CompletionSettings(
            idle_seconds=0.0, small_study_lane_images=small_study_lane_images
        ),
        delivery=DeliverySettings(pacs="pacs", retry_initial_seconds=0.01, retry_max_seconds=0.02),
        storage=StorageSettings(data_dir=str(tmp_path / "data")),
    )


def _study(patient: int, images: int) -> list[Dataset]:
    """A chest radiograph study of ``images`` images (one series each)."""
    first = chest_radiograph(demo_patient(patient), phantom_chest(seed=patient))
    study = [first]
    for n in range(1, images):
        ds = copy.deepcopy(first)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.InstanceNumber = n + 1
        study.append(ds)
    return study


def _receive(app: Appliance, study: Sequence[Dataset], tmp_path: Path) -> int:
    study_id = -1
    app.node.incoming.mkdir(parents=True, exist_ok=True)
    for ds in study:
        path = write(ds, tmp_path / "in")
        target = app.node.incoming / "x.dcm"
        target.write_bytes(path.read_bytes())
        study_id = app.node.accept_file(target, "MODALITY", str(ds.SOPInstanceUID))
    return study_id


def _job_state(app: Appliance, study_id: int) -> str | None:
    rows = app.db.query("SELECT state FROM jobs WHERE study_id = ?", (study_id,))
    return str(rows[0]["state"]) if rows else None


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "the worker lanes did not get there"
        time.sleep(0.01)


def test_the_small_study_lane_takes_only_small_studies(tmp_path: Path, pacs: DemoPacs) -> None:
    app = Appliance(_settings(tmp_path, pacs.port, 1), secret_for=lambda _: KEY)
    small = _receive(app, _study(1, 1), tmp_path)
    large = _receive(app, _study(2, 2), tmp_path)

    while app.small_study_worker.run_once():
        pass

    # both studies completed and routed (by either lane), only the small one carried on
    assert _job_state(app, small) == "result_received"
    assert _job_state(app, large) == "queued"
    while app.worker.run_once():
        pass
    assert _job_state(app, large) == "result_received"
    app.db.close()


def test_a_lane_that_routes_a_study_to_jobs_wakes_the_other(tmp_path: Path, pacs: DemoPacs) -> None:
    app = Appliance(_settings(tmp_path, pacs.port, 1), secret_for=lambda _: KEY)
    woken: list[str] = []
    app.worker.wake = lambda *_: woken.append("main")  # type: ignore[method-assign]
    large = _receive(app, _study(2, 2), tmp_path)
    woken.clear()

    app.small_study_worker.run_once()  # completes and routes it, leaves the job

    assert _job_state(app, large) == "queued"
    assert woken == ["main"]  # not left for the main lane's next look, up to a second
    app.db.close()


def test_the_small_study_lane_does_nothing_when_set_to_zero(tmp_path: Path, pacs: DemoPacs) -> None:
    app = Appliance(_settings(tmp_path, pacs.port, 0), secret_for=lambda _: KEY)
    study = _receive(app, _study(1, 1), tmp_path)

    assert not app.small_study_worker.run_once()

    assert jobs.study_state(app.db, study) == "receiving"
    while app.worker.run_once():
        pass
    assert _job_state(app, study) == "result_received"
    app.db.close()


def test_a_lane_skips_a_study_or_job_another_lane_holds(tmp_path: Path, pacs: DemoPacs) -> None:
    app = Appliance(_settings(tmp_path, pacs.port, 20), secret_for=lambda _: KEY)
    study = _receive(app, _study(1, 1), tmp_path)
    claims: Claims = app.worker._claims  # the lanes' shared claims

    with claims.hold("study", study) as mine:
        assert mine
        app.worker.run_once()
        assert jobs.study_state(app.db, study) == "complete"  # completed, not routed
        with claims.hold("study", study) as again:
            assert not again
    app.worker.route(study)  # what the next pass does first (without going on to the job)
    assert jobs.study_state(app.db, study) == "routed"
    (job_id,) = (int(r["id"]) for r in app.db.query("SELECT id FROM jobs"))

    with claims.hold("job", job_id) as mine:
        assert mine
        assert not app.small_study_worker.run_once()
        assert _job_state(app, study) == "queued"
    assert not claims.held("job", job_id)
    app.small_study_worker.run_once()
    assert _job_state(app, study) == "result_received"
    app.db.close()


def test_a_job_another_lane_moved_on_is_not_done_again(tmp_path: Path, pacs: DemoPacs) -> None:
    app = Appliance(_settings(tmp_path, pacs.port, 20), secret_for=lambda _: KEY)
    study = _receive(app, _study(1, 1), tmp_path)
    while app.worker.run_once():
        pass
    assert _job_state(app, study) == "result_received"
    (job_id,) = (int(r["id"]) for r in app.db.query("SELECT id FROM jobs"))
    steps: list[int] = []

    # the other lane listed the job as queued before this one carried it on
    taken = app.small_study_worker._take(job_id, JobState.QUEUED, steps.append, None)

    assert not taken
    assert steps == []
    app.db.close()


def test_a_small_study_does_not_wait_behind_a_large_one_in_its_model(
    tmp_path: Path, pacs: DemoPacs, monkeypatch: Any
) -> None:
    app = Appliance(_settings(tmp_path, pacs.port, 1), secret_for=lambda _: KEY)
    in_model = threading.Event()
    release = threading.Event()
    runners = app.processor._runners
    real_get = runners.get

    class HeldForLargeStudies:
        """The real model, its first run (the large study's) held as a slow CT model's
        would be."""

        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def run(self, images: Sequence[Dataset]) -> AlgorithmResult:
            if not in_model.is_set():
                in_model.set()
                assert release.wait(DEADLINE_SECONDS)
            result: AlgorithmResult = self._inner.run(images)
            return result

    monkeypatch.setattr(runners, "get", lambda package: HeldForLargeStudies(real_get(package)))
    large = _receive(app, _study(2, 2), tmp_path)
    app.worker.start()
    app.small_study_worker.start()
    try:
        assert in_model.wait(DEADLINE_SECONDS)
        small = _receive(app, _study(1, 1), tmp_path)
        app.small_study_worker.wake()
        _wait_for(lambda: _job_state(app, small) == "result_received")
        assert _job_state(app, large) == "submitted"  # still in its model
        release.set()
        _wait_for(lambda: _job_state(app, large) == "result_received")
    finally:
        release.set()
        app.small_study_worker.stop()
        app.worker.stop()
    app.db.close()


def test_settings_reject_a_negative_lane_size() -> None:
    bad = dataclasses.replace(Settings(), completion=CompletionSettings(small_study_lane_images=-1))
    try:
        validate(bad)
    except ConfigError as exc:
        assert "small_study_lane_images" in str(exc)
    else:
        raise AssertionError("a negative lane size was accepted")


def _gc_app(tmp_path: Path, pacs: DemoPacs) -> Appliance:
    return Appliance(_settings(tmp_path, pacs.port, 20), secret_for=lambda _: KEY)


def _receive_one(app: Appliance, tmp_path: Path, n: int) -> None:
    _receive(app, _study(n, 1), tmp_path)


def test_garbage_is_collected_once_everything_is_done(
    tmp_path: Path, pacs: DemoPacs, monkeypatch: pytest.MonkeyPatch
) -> None:
    collected: list[int] = []
    monkeypatch.setattr(Worker, "_collect", lambda self: collected.append(1))
    app = _gc_app(tmp_path, pacs)
    assert not app.worker.run_once()  # nothing done yet: nothing to collect
    assert collected == []
    _receive_one(app, tmp_path, 1)
    assert app.worker.run_once()  # completed, routed, pseudonymised, the model run
    (job,) = app.db.query("SELECT id, state FROM jobs")
    assert job["state"] == JobState.RESULT_RECEIVED
    assert not app.worker.run_once()  # its results wait for delivery: not idle
    assert collected == []
    app.dispatcher.run_once()
    assert app.db.query("SELECT state FROM jobs")[0]["state"] == JobState.DELIVERED
    assert not app.worker.run_once()
    assert collected == [1]
    assert not app.worker.run_once()  # once after each spell of work
    assert collected == [1]
    app.db.close()


def test_no_collection_while_a_study_arrives(
    tmp_path: Path, pacs: DemoPacs, monkeypatch: pytest.MonkeyPatch
) -> None:
    collected: list[int] = []
    monkeypatch.setattr(Worker, "_collect", lambda self: collected.append(1))
    app = _gc_app(tmp_path, pacs)
    _receive_one(app, tmp_path, 1)
    assert app.worker.run_once()
    app.dispatcher.run_once()
    app.worker._in_transfer = lambda: {999}  # an association is open
    assert not app.worker.run_once()
    assert collected == []
    app.worker._in_transfer = frozenset
    assert not app.worker.run_once()
    assert collected == [1]
    app.db.close()


def test_a_collection_runs(tmp_path: Path, pacs: DemoPacs) -> None:
    app = _gc_app(tmp_path, pacs)
    app.worker._collect()  # the real one: returns, logs
    app.db.close()
