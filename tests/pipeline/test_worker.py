"""The worker's stepping: Python's garbage is collected once the appliance is idle after
work (no study arriving or waiting, every job finished), never in the middle of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from aifi_app.config.settings import (
    CompletionSettings,
    DeliverySettings,
    NodeSettings,
    RemoteNode,
    Settings,
    StorageSettings,
)
from aifi_app.demo import DemoPacs
from aifi_app.pipeline.worker import Worker
from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest, write
from aifi_app.service import Appliance
from aifi_app.store.states import JobState

KEY = b"w" * 32


def _app(tmp_path: Path, pacs: DemoPacs) -> Appliance:
    settings = Settings(
        node=NodeSettings(port=0),
        remote_nodes=(RemoteNode("pacs", "DEMO_PACS", "127.0.0.1", pacs.port),),
        completion=CompletionSettings(idle_seconds=0.0),
        delivery=DeliverySettings(pacs="pacs"),
        storage=StorageSettings(data_dir=str(tmp_path / "data")),
    )
    return Appliance(settings, secret_for=lambda _: KEY)


def _receive(app: Appliance, tmp_path: Path, n: int) -> None:
    ds = chest_radiograph(demo_patient(n), phantom_chest())
    path = write(ds, tmp_path / "in")
    target = app.node.incoming / "x.dcm"
    app.node.incoming.mkdir(parents=True, exist_ok=True)
    target.write_bytes(path.read_bytes())
    app.node.accept_file(target, "MODALITY", str(ds.SOPInstanceUID))


def test_garbage_is_collected_once_everything_is_done(
    tmp_path: Path, pacs: DemoPacs, monkeypatch: pytest.MonkeyPatch
) -> None:
    collected: list[int] = []
    monkeypatch.setattr(Worker, "_collect", lambda self: collected.append(1))
    app = _app(tmp_path, pacs)
    assert not app.worker.run_once()  # nothing done yet: nothing to collect
    assert collected == []
    _receive(app, tmp_path, 1)
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
    app = _app(tmp_path, pacs)
    _receive(app, tmp_path, 1)
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
    app = _app(tmp_path, pacs)
    app.worker._collect()  # the real one: returns, logs
    app.db.close()
