from __future__ import annotations

from pydicom import Dataset

from aifi_app.store.job_inputs import JobInput, from_header


def test_header_values_with_free_text_cleaned() -> None:
    ds = Dataset()
    ds.Manufacturer = "SIEMENS"
    ds.ManufacturerModelName = "SOMATOM Force"
    ds.SliceThickness = "1.25"
    ds.ConvolutionKernel = ["Br40d", "3"]
    ds.ProtocolName = "CT THORAX Jansen^Piet 12345678"
    ds.SeriesDescription = "Thorax 1.0 Br40 PATID-998877"
    ds.BodyPartExamined = "CHEST"
    assert from_header(ds) == JobInput(
        manufacturer="SIEMENS",
        model="SOMATOM Force",
        slice_thickness=1.25,
        kernel="Br40d\\3",
        protocol="CT THORAX",
        series_description="Thorax 1.0",
        body_part="CHEST",
    )


def test_missing_or_odd_values() -> None:
    ds = Dataset()
    ds.SliceThickness = ""
    assert from_header(ds) == JobInput()
