"""The appliance's start order: the node listens first; the pre-pseudonymiser and the
worker (which load for about a second) start once the node has been quiet."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from aifi_app import service
from aifi_app.config.settings import CompletionSettings, NodeSettings, Settings, StorageSettings
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
