"""The appliance's start order: the node listens first; the pre-pseudonymiser and the
worker (which load for about a second) start once the node has been quiet."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from aifi_app import service
from aifi_app.config.settings import (
    CompletionSettings,
    NodeSettings,
    Route,
    Settings,
    StorageSettings,
)
from aifi_app.pipeline import worker
from aifi_app.service import Appliance


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        node=NodeSettings(port=0, allowed_calling_ae_titles=("MODALITY",)),
        completion=CompletionSettings(idle_seconds=0.0),
        storage=StorageSettings(data_dir=str(tmp_path / "data")),
    )


def _wait(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_worker_waits_while_an_association_is_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "START_QUIET_SECONDS", 1.0)  # (a busy test machine)
    app = Appliance(_settings(tmp_path), secret_for=lambda _: b"k" * 32)
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    app.start()
    try:
        # a modality that calls the moment the port accepts
        assoc = ae.associate("127.0.0.1", app.node.port, ae_title=app.settings.node.ae_title)
        assert assoc.is_established
        try:
            # held for several times the quiet time: the worker still waits
            for _ in range(3):
                assert assoc.send_c_echo().Status == 0
                time.sleep(0.5)
                assert not app.worker_started
                assert app.worker._thread is None
        finally:
            assoc.release()
        _wait(lambda: app.worker_started)
        assert app.worker._thread is not None and app.worker._thread.is_alive()
    finally:
        app.stop()
    assert not app.worker_started
    assert app.worker._thread is not None and not app.worker._thread.is_alive()


def test_worker_starts_on_its_own_when_nobody_calls(tmp_path: Path) -> None:
    app = Appliance(_settings(tmp_path), secret_for=lambda _: b"k" * 32)
    app.start()
    try:
        _wait(lambda: app.worker_started)
    finally:
        app.stop()


def test_stop_before_the_worker_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "START_QUIET_SECONDS", 60.0)
    monkeypatch.setattr(service, "START_AT_LATEST_SECONDS", 120.0)
    app = Appliance(_settings(tmp_path), secret_for=lambda _: b"k" * 32)
    app.start()
    app.stop()  # returns without waiting for the quiet time
    assert not app.worker_started
    assert app.worker._thread is None and app.pre_pseudonymiser._thread is None


def test_a_pause_inside_an_association_does_not_split_its_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The idle timer (0.05 s here) runs out between two slices of one association; the
    study still completes once, with both, when the association ends."""
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    from aifi_app.sample_studies import ct_series, demo_patient, write

    settings = dataclasses.replace(
        _settings(tmp_path), completion=CompletionSettings(idle_seconds=0.05)
    )
    # only the association's end can complete it here, not the hold's own limit
    monkeypatch.setattr(worker, "OPEN_ASSOCIATION_HOLD_SECONDS", 1000.0)
    app = Appliance(settings, secret_for=lambda _: b"k" * 32)
    slices = [write(ds, tmp_path / "in") for ds in ct_series(demo_patient(1), 2)]
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    app.node.start()
    try:
        assoc = ae.associate("127.0.0.1", app.node.port, ae_title=settings.node.ae_title)
        assert assoc.is_established
        try:
            assert assoc.send_c_store(slices[0]).Status == 0
            time.sleep(0.3)  # longer than the idle time: the sender pauses
            app.worker.run_once()
            assert _states(app) == ["receiving"]
            assert assoc.send_c_store(slices[1]).Status == 0
        finally:
            assoc.release()
        _wait(lambda: not app.node.in_transfer.held())
        _wait(lambda: app.worker.run_once() and _states(app) != ["receiving"])
        studies = app.db.query("SELECT episode, instance_count, state FROM studies")
        assert [(s["episode"], s["instance_count"]) for s in studies] == [(1, 2)]
    finally:
        app.node.stop()


def _states(app: Appliance) -> list[str]:
    return [str(r["state"]) for r in app.db.query("SELECT state FROM studies ORDER BY id")]


def test_the_idle_times_come_from_the_routes(tmp_path: Path) -> None:
    routes = (
        Route(name="cxr", algorithm="a", modalities=("CR", "DX"), idle_seconds=4.0),
        Route(name="ct", algorithm="b", modalities=("CT",)),
    )
    settings = dataclasses.replace(
        _settings(tmp_path), routes=routes, completion=CompletionSettings(idle_seconds=20.0)
    )
    app = Appliance(settings, secret_for=lambda _: b"k" * 32)
    try:
        assert app.idle_times("DX") == 4.0
        assert app.idle_times("CT") == 20.0  # its route has no idle time of its own
    finally:
        app.db.close()
