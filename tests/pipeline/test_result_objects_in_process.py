"""SR with regions, GSPS and KOS through the whole in-process chain into a real Orthanc:
stored under the original study, valid (dciodvfy, dsrdump), and the GSPS draws on the
original image where the algorithm marked its region.

The algorithm is a small ONNX detection model (real inference with onnxruntime) that
reports one box on the 16 x 16 model input; the local runner scales it back to the
source image's pixels."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread

from aifi_app.algorithms import lifecycle
from aifi_app.algorithms.signing import TrustPolicy
from aifi_app.config.settings import RemoteNode, Route, Settings
from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest
from aifi_app.service import Appliance
from aifi_app.store import jobs
from aifi_app.store.states import JobState
from tests.helpers.onnx_models import constant_boxes_model, make_onnx_package
from tests.helpers.tools import dciodvfy_errors, dsrdump
from tests.pipeline.test_chain_in_process import KEY, _drain, _receive, _settings

pytestmark = [pytest.mark.orthanc, pytest.mark.dcmtk, pytest.mark.dicom3tools]

OPACITY_BOXES = """[output]
kind = "boxes"
code = { value = "128309007", scheme = "SCT", meaning = "Radiographic opacity" }
label = "Opacity"
score_threshold = 0.5
positive_label = "Opacity suspected"
negative_label = "No opacity detected"
"""
OBJECTS = '["sc", "sr", "gsps", "ko"]'


def test_sr_gsps_and_kos_land_under_the_original_study(tmp_path: Path, orthanc_factory) -> None:
    orthanc = orthanc_factory({"aifi": ("AIFI", "127.0.0.1", 104)})
    settings: Settings = dataclasses.replace(
        _settings(tmp_path, orthanc.dicom_port),
        remote_nodes=(RemoteNode("pacs", orthanc.aet, "127.0.0.1", orthanc.dicom_port),),
        routes=(Route(name="boxes", algorithm="boxes-cxr", modalities=("CR", "DX")),),
    )
    app = Appliance(settings, secret_for=lambda _: KEY)
    package = make_onnx_package(
        tmp_path / "pkg",
        constant_boxes_model([[4, 8, 8, 12, 0.77]]),  # fractions 0.25, 0.5, 0.5, 0.75
        output_name="boxes",
        output=OPACITY_BOXES,
        objects=OBJECTS,
        package_id="boxes-cxr",
    )
    lifecycle.install(package, app.data_dir, app.db, TrustPolicy())
    original = chest_radiograph(demo_patient(7), phantom_chest())
    _receive(app, original, tmp_path)
    _drain(app)
    (job,) = app.db.query("SELECT * FROM jobs")
    assert job["state"] == JobState.DELIVERED.value, job["reason"]
    kinds = sorted(o["kind"] for o in jobs.outputs(app.db, job["id"]))
    assert kinds == ["gsps", "ko", "sc", "sr"]
    app.db.close()

    found = orthanc.wait_for_instances(str(original.StudyInstanceUID), 4)
    stored: dict[str, Dataset] = {}
    for instance in found:
        data = orthanc.file(instance["ID"])
        ds = dcmread(io.BytesIO(data))
        assert ds.PatientID == original.PatientID
        assert ds.AccessionNumber == original.AccessionNumber
        path = tmp_path / f"{instance['ID']}.dcm"
        path.write_bytes(data)
        assert dciodvfy_errors(path) == [], f"dciodvfy errors in {ds.SOPClassUID.name}"
        stored[ds.SOPClassUID.name] = ds
    assert set(stored) == {
        "Secondary Capture Image Storage",
        "Comprehensive SR Storage",
        "Grayscale Softcopy Presentation State Storage",
        "Key Object Selection Document Storage",
    }

    gsps = stored["Grayscale Softcopy Presentation State Storage"]
    (series,) = gsps.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == original.SeriesInstanceUID
    outline = next(a for a in gsps.GraphicAnnotationSequence if "GraphicObjectSequence" in a)
    assert outline.ReferencedImageSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    corners = np.reshape(outline.GraphicObjectSequence[0].GraphicData, (-1, 2))
    columns, rows = int(original.Columns), int(original.Rows)
    expected = [(0.25, 0.5), (0.5, 0.5), (0.5, 0.75), (0.25, 0.75), (0.25, 0.5)]
    assert np.allclose(corners, [(c * columns, r * rows) for c, r in expected])

    paths = {}
    for name in ("Comprehensive SR Storage", "Key Object Selection Document Storage"):
        paths[name] = tmp_path / f"{name}.dcm"
        stored[name].save_as(paths[name], enforce_file_format=True)
    report = dsrdump(paths["Comprehensive SR Storage"])
    assert "SCOORD" in report and "Radiographic opacity" in report
    assert "Of Interest" in dsrdump(paths["Key Object Selection Document Storage"])
    kos = stored["Key Object Selection Document Storage"]
    referenced = {str(e.value) for e in kos.iterall() if e.keyword == "ReferencedSOPInstanceUID"}
    assert referenced == {str(original.SOPInstanceUID)}
