"""Testing the routing rules on studies in the queue: a chest X-ray would go to the
pneumonia model; a CT matches no route (and says why); a disabled algorithm says so."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aifi_app.config.settings import (
    CompletionSettings,
    NodeSettings,
    Settings,
    StorageSettings,
)
from aifi_app.dicom_node.storage_scu import Peer, send_files
from aifi_app.pipeline.rule_check import check_rules
from aifi_app.sample_studies import chest_radiograph, ct_series, demo_patient, phantom_chest, write
from aifi_app.service import Appliance
from aifi_app.store import algorithm_state

SENDER = "MODALITY"


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[Appliance]:
    settings = Settings(
        node=NodeSettings(port=0, allowed_calling_ae_titles=(SENDER,)),
        completion=CompletionSettings(idle_seconds=600.0),  # stays receiving: nothing runs
        storage=StorageSettings(data_dir=str(tmp_path / "data")),
    )
    app = Appliance(settings, secret_for=lambda _: b"k" * 32)
    app.start()
    yield app
    app.stop()


def _study_ids(app: Appliance, count: int) -> list[int]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = app.db.query("SELECT id FROM studies ORDER BY id")
        if len(rows) >= count:
            return [int(r["id"]) for r in rows]
        time.sleep(0.05)
    raise AssertionError("the studies did not arrive")


def _check(app: Appliance, study_id: int):  # type: ignore[no-untyped-def]
    return check_rules(
        app.db,
        app.data_dir,
        study_id,
        app.settings.routes,
        app.catalog.enabled(),
        app.catalog.known_ids(),
    )


def test_rules_on_queued_studies(appliance: Appliance, tmp_path: Path) -> None:
    paths = [write(chest_radiograph(demo_patient(1), phantom_chest()), tmp_path / "dx")]
    paths += [write(ds, tmp_path / "ct") for ds in ct_series(demo_patient(2), 3)]
    send_files(Peer("AIFI", "127.0.0.1", appliance.node.port), paths, calling_ae_title=SENDER)
    chest, ct = _study_ids(appliance, 2)

    (verdict,) = _check(appliance, chest)
    assert verdict.chosen and verdict.algorithm == "pneumonia-cxr"
    assert "1 image(s) would go to pneumonia-cxr" in verdict.words

    (verdict,) = _check(appliance, ct)
    assert not verdict.chosen and "CT" in verdict.words

    algorithm_state.set_enabled(appliance.db, "pneumonia-cxr", False, actor="test")
    appliance.catalog.refresh()
    (verdict,) = _check(appliance, chest)
    assert not verdict.chosen and verdict.words == "algorithm pneumonia-cxr is disabled"
    with pytest.raises(KeyError):
        _check(appliance, 999)
