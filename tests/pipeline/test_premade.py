"""The pre-made files' index: headers read back from it are the headers written."""

from __future__ import annotations

from pydicom import Dataset
from pydicom.dataelem import DataElement

from aifi_app.pipeline.pre_pseudonymise import SELECTION_TAGS
from aifi_app.pipeline.premade import header_from_json
from aifi_app.sample_studies import chest_radiograph, ct_series, demo_patient, phantom_chest


def _selection(ds: Dataset) -> dict[str, object]:
    header = Dataset()
    for keyword in SELECTION_TAGS:
        if keyword in ds:
            header.add(ds[keyword])
    header.PatientName = "Doe^Jane"  # a PN value and
    header.add(DataElement(0x00181030, "LO", ""))  # an empty one
    return header.to_json_dict()


def test_headers_are_those_pydicom_reads_from_the_json() -> None:
    images = [
        *ct_series(demo_patient(3), 6, size=16),
        chest_radiograph(demo_patient(4), phantom_chest(32)),
    ]
    memo: dict[str, DataElement] = {}
    for ds in images:
        as_json = _selection(ds)
        got = header_from_json(as_json, memo)
        expected = Dataset.from_json(as_json)
        assert got == expected
        assert [(e.tag, e.VR, e.value) for e in got] == [(e.tag, e.VR, e.value) for e in expected]


def test_the_values_a_series_shares_are_made_once() -> None:
    memo: dict[str, DataElement] = {}
    headers = [header_from_json(_selection(ds), memo) for ds in ct_series(demo_patient(3), 6)]
    assert headers[0]["Modality"] is headers[5]["Modality"]  # one element for the series
    assert headers[0]["InstanceNumber"].value != headers[5]["InstanceNumber"].value
