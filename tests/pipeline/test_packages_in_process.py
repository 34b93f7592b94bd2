"""Packages in the running chain (in-process): installed, disabled and input rules, picked
up by the worker without a restart."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread

from aifi_app.algorithms import lifecycle
from aifi_app.algorithms.signing import TrustPolicy
from aifi_app.config.settings import Route, Settings
from aifi_app.demo import DemoPacs
from aifi_app.pipeline import parallel_pseudonymise
from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest
from aifi_app.service import Appliance
from aifi_app.store import algorithm_state
from tests.algorithms.test_lung_volume import phantom_series, phantom_volume
from tests.helpers.packages import make_package
from tests.helpers.tools import dciodvfy_errors
from tests.pipeline.test_chain_in_process import KEY, _drain, _receive, _settings

VENDOR_ROUTE = Route(name="vendor", algorithm="vendor-cxr", modalities=("CR", "DX"))


def _app(tmp_path: Path, pacs: DemoPacs) -> Appliance:
    settings: Settings = dataclasses.replace(_settings(tmp_path, pacs.port), routes=(VENDOR_ROUTE,))
    return Appliance(settings, secret_for=lambda _: KEY)


def test_package_installed_while_running_takes_the_next_study(
    tmp_path: Path, pacs: DemoPacs
) -> None:
    app = _app(tmp_path, pacs)
    _receive(app, chest_radiograph(demo_patient(1), phantom_chest()), tmp_path)
    _drain(app)
    (first,) = app.db.query("SELECT state, reason FROM jobs")
    assert first["state"] == "rejected"
    assert "vendor-cxr is not installed" in first["reason"]

    lifecycle.install(make_package(tmp_path / "pkg"), app.data_dir, app.db, TrustPolicy())
    _receive(app, chest_radiograph(demo_patient(2), phantom_chest()), tmp_path)
    _drain(app)
    second = app.db.query("SELECT state, reason, result_json FROM jobs ORDER BY id")[1]
    assert second["state"] == "delivered", second["reason"]
    assert '"version": "2.0.0"' in second["result_json"]
    assert len(list(pacs.folder.glob("*.dcm"))) == 2
    app.db.close()


def test_disabled_package_rejects_with_reason(tmp_path: Path, pacs: DemoPacs) -> None:
    app = _app(tmp_path, pacs)
    lifecycle.install(make_package(tmp_path / "pkg"), app.data_dir, app.db, TrustPolicy())
    algorithm_state.set_enabled(app.db, "vendor-cxr", False, actor="test")
    _receive(app, chest_radiograph(demo_patient(3), phantom_chest()), tmp_path)
    _drain(app)
    (job,) = app.db.query("SELECT state, reason FROM jobs")
    assert job["state"] == "rejected"
    assert "disabled" in job["reason"]
    app.db.close()


def test_input_rule_rejects_job_with_reason(tmp_path: Path, pacs: DemoPacs) -> None:
    app = _app(tmp_path, pacs)
    package = make_package(
        tmp_path / "pkg",
        replace={'modalities = ["CR", "DX"]': 'modalities = ["CR", "DX"]\nviews = ["PA"]'},
    )
    lifecycle.install(package, app.data_dir, app.db, TrustPolicy())
    ds = chest_radiograph(demo_patient(4), phantom_chest())
    ds.ViewPosition = "LL"
    _receive(app, ds, tmp_path)
    _drain(app)
    (job,) = app.db.query("SELECT state, reason FROM jobs")
    assert job["state"] == "rejected"
    assert job["reason"] == "view LL, algorithm needs PA"
    app.db.close()


LUNG_ROUTE = Route(name="ct lung", algorithm="ct-lung-volume", modalities=("CT",))


def _lung_app(tmp_path: Path, pacs: DemoPacs) -> Appliance:
    settings = dataclasses.replace(_settings(tmp_path, pacs.port), routes=(LUNG_ROUTE,))
    return Appliance(settings, secret_for=lambda _: KEY)


@pytest.mark.dicom3tools
@pytest.mark.parametrize("in_processes", [False, True])
def test_ct_lung_volume_reports_a_measurement(
    tmp_path: Path, pacs: DemoPacs, monkeypatch: pytest.MonkeyPatch, in_processes: bool
) -> None:
    """The whole chain; the CT pseudonymised in this thread, or in worker processes as a
    large CT is (its 24 slices count as large here)."""
    if in_processes:
        monkeypatch.setattr(parallel_pseudonymise, "PARALLEL_FROM_IMAGES", 2)
        monkeypatch.setattr(parallel_pseudonymise, "MIN_CPUS_FOR_PROCESSES", 1)
    app = _lung_app(tmp_path, pacs)
    hu, lungs = phantom_volume()
    sources = list(phantom_series(hu))
    for ds in sources:
        _receive(app, ds, tmp_path)
    _drain(app)
    (job,) = app.db.query("SELECT state, reason FROM jobs")
    assert job["state"] == "delivered", job["reason"]
    delivered = sorted(pacs.folder.glob("*.dcm"))
    for path in delivered:  # the re-identified SR and SEG as the PACS got them
        assert dciodvfy_errors(path) == [], path.name
    by_modality = {d.Modality: d for d in (dcmread(p) for p in delivered)}
    assert set(by_modality) == {"SR", "SEG"}
    sr, seg = by_modality["SR"], by_modality["SEG"]
    # the SR's volume is of the SEG's lung segment (TID 1411), not of 24 listed images
    images = [item for item in _walk(sr) if item.get("ValueType") == "IMAGE"]
    assert [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in images] == [
        seg.SOPInstanceUID
    ]
    evidence = {
        instance.ReferencedSOPInstanceUID
        for series in sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
        for instance in series.ReferencedSOPSequence
    }
    assert evidence == {seg.SOPInstanceUID} | {str(s.SOPInstanceUID) for s in sources}
    # the segmentation lies in the original study and frame of reference, on its slices
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert int(seg.pixel_array.astype(bool).sum()) == int(lungs.sum())
    referenced = {
        f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        for f in seg.PerFrameFunctionalGroupsSequence
    }
    assert referenced <= {str(s.SOPInstanceUID) for s in sources}
    expected = round(float(lungs.sum()) * 6.0 * 6.0 * 5.0 / 1000, 1)
    values = [
        float(item.MeasuredValueSequence[0].NumericValue)
        for item in _walk(sr)
        if "MeasuredValueSequence" in item
    ]
    assert values == [pytest.approx(expected)]
    assert sr.PatientID == demo_patient(7).patient_id
    app.db.close()


def test_ct_too_thick_is_rejected_with_reason(tmp_path: Path, pacs: DemoPacs) -> None:
    app = _lung_app(tmp_path, pacs)
    hu, _ = phantom_volume()
    for ds in phantom_series(hu, thickness=6.0):
        _receive(app, ds, tmp_path)
    _drain(app)
    (job,) = app.db.query("SELECT state, reason FROM jobs")
    assert job["state"] == "rejected"
    assert job["reason"] == "slice thickness 6 mm, algorithm needs at most 5 mm"
    app.db.close()


def _walk(ds: Dataset) -> Iterator[Dataset]:
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _walk(item)
