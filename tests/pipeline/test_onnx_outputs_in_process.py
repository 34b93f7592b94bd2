"""Box and mask outputs of local ONNX models through the whole chain in-process: the
result objects are built, re-identified, valid (dciodvfy) and delivered, and the boxes are
kept in the job's result JSON as regions (for the GSPS/SR graphics built from them)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from pydicom import dcmread

from aifi_app.algorithms import lifecycle
from aifi_app.algorithms.signing import TrustPolicy
from aifi_app.config.settings import Route
from aifi_app.demo import DemoPacs
from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest
from aifi_app.service import Appliance
from tests.algorithms.test_onnx_outputs import BOXES, MASK
from tests.helpers.onnx_models import (
    constant_boxes_model,
    identity_heat_map_model,
    make_onnx_package,
)
from tests.helpers.tools import dciodvfy_errors
from tests.pipeline.test_chain_in_process import KEY, _drain, _receive, _settings


def _app(tmp_path: Path, pacs: DemoPacs, package: Path) -> Appliance:
    route = Route(name="test", algorithm="test-model", modalities=("DX",))
    settings = dataclasses.replace(_settings(tmp_path, pacs.port), routes=(route,))
    app = Appliance(settings, secret_for=lambda _: KEY)
    lifecycle.install(package, app.data_dir, app.db, TrustPolicy())
    return app


@pytest.mark.dicom3tools
def test_boxes_reach_the_pacs_as_sc_and_sr_and_regions(tmp_path: Path, pacs: DemoPacs) -> None:
    package = make_onnx_package(
        tmp_path / "package",
        constant_boxes_model([[2, 3, 10, 7, 0.9]]),
        output_name="boxes",
        output=BOXES,
        objects='["sc", "sr"]',
    )
    app = _app(tmp_path, pacs, package)
    ds = chest_radiograph(demo_patient(3), phantom_chest(64))
    _receive(app, ds, tmp_path)
    _drain(app)
    (job,) = app.db.query("SELECT * FROM jobs")
    assert job["state"] == "delivered", job["reason"]
    (region,) = json.loads(job["result_json"])["regions"]
    assert region["points"] == [[8.0, 12.0], [40.0, 28.0]]  # 64 / 16 = 4 both ways
    delivered = sorted(pacs.folder.glob("*.dcm"))
    assert sorted(str(dcmread(p).Modality) for p in delivered) == ["OT", "SR"]
    for path in delivered:
        assert dcmread(path).PatientID == ds.PatientID
        assert dciodvfy_errors(path) == []
    app.db.close()


@pytest.mark.dicom3tools
def test_heat_map_reaches_the_pacs_as_a_segmentation(tmp_path: Path, pacs: DemoPacs) -> None:
    package = make_onnx_package(
        tmp_path / "package",
        identity_heat_map_model(),
        output_name="heat",
        output=MASK,
        objects='["seg"]',
    )
    app = _app(tmp_path, pacs, package)
    ds = chest_radiograph(demo_patient(4), phantom_chest(64))
    _receive(app, ds, tmp_path)
    _drain(app)
    (job,) = app.db.query("SELECT * FROM jobs")
    assert job["state"] == "delivered", job["reason"]
    (path,) = pacs.folder.glob("*.dcm")
    seg = dcmread(path)
    assert seg.Modality == "SEG"
    assert (seg.Rows, seg.Columns) == (64, 64)
    assert seg.StudyInstanceUID == ds.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ds.SeriesInstanceUID
    assert dciodvfy_errors(path) == []
    app.db.close()
