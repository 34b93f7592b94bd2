"""The pre-made files' index: headers read back from it are the headers written."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.jsonrep import JSON_VALUE_KEYS
from pydicom.multival import MultiValue

from aifi_app.pipeline import premade
from aifi_app.pipeline.pre_pseudonymise import SELECTION_TAGS
from aifi_app.pipeline.premade import header_from_json
from aifi_app.sample_studies import chest_radiograph, ct_series, demo_patient, phantom_chest
from tests.helpers.phi_corpus import phi_header


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


def _described(element: DataElement) -> tuple[object, ...]:
    value = element.value
    items = list(value) if isinstance(value, MultiValue) else [value]
    return (
        element.tag,
        element.VR,
        str(value),
        type(value).__name__,
        [(type(v).__name__, str(v)) for v in items],
    )


def test_elements_made_directly_are_those_from_json_makes() -> None:
    # every top-level element of the PHI corpus (seven character sets, every text VR,
    # numbers, multiple values) and of the bench CT, and JSON values written by others
    headers = [phi_header(n) for n in range(1, 4)] + list(ct_series(demo_patient(3), 3, size=16))
    mappings = [
        (tag, mapping)
        for ds in headers
        for tag, mapping in ds.to_json_dict(1024, lambda _: "").items()
    ]
    mappings += [
        ("00180050", {"vr": "DS", "Value": ["1.25"]}),  # a number as a string
        ("00200013", {"vr": "IS", "Value": [7.0]}),  # an integer as a float
        ("00280030", {"vr": "DS", "Value": [0.5, 1]}),
        ("00280010", {"vr": "US", "Value": [512]}),
        ("00080008", {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY"]}),
        ("00200032", {"vr": "DS", "Value": [-125, None, 3.5]}),  # an empty value: from_json
        ("00081030", {"vr": "LO"}),  # no value: from_json
    ]
    direct = 0
    for tag, mapping in mappings:
        got = premade._element_from_json(tag, mapping)
        keys = [k for k in JSON_VALUE_KEYS if k in mapping]
        value_key = keys[0] if keys else None
        expected = DataElement.from_json(
            Dataset, tag, mapping["vr"], mapping[value_key] if value_key else [""], value_key
        )
        assert _described(got) == _described(expected), tag
        direct += mapping["vr"] in premade._PLAIN_JSON_VRS
    assert direct > 40  # most were made directly


def test_an_instance_is_taken_once_per_options_key_and_the_holder_is_known(
    tmp_path: Path,
) -> None:
    first = premade.take(tmp_path, 7, "k1", 3, premade.PRE_OWNER)
    assert first is None  # the first to ask has it
    assert premade.take(tmp_path, 7, "k1", 3, "job1-5") == premade.PRE_OWNER
    assert premade.take(tmp_path, 7, "k1", 4, "job1-5") is None
    assert premade.take(tmp_path, 7, "k1", 4, premade.PRE_OWNER) == "job1-5"
    assert premade.take(tmp_path, 7, "k2", 3, "job2-1") is None  # another key: its own
    assert premade.take(tmp_path, 8, "k1", 3, "job3-1") is None  # another study too
    premade.remove_study(tmp_path, 7)  # removed with the study's cache
    assert premade.take(tmp_path, 7, "k1", 3, "job1-6") is None


def test_the_index_read_again_gives_what_was_written_since(tmp_path: Path) -> None:
    index = premade.PremadeIndex(tmp_path)
    index.read_new(7)  # no folder yet
    assert not index.known(1, "k")
    premade.study_dir(tmp_path, 7).mkdir(parents=True)
    made = {"k": {"outcome": premade.MADE, "size": 3, "mappings": []}}
    premade.write_index(tmp_path, 7, [{"id": 1, "received_at": 1.0, "header": None, "made": made}])
    index.read_new(7)
    assert index.known(1, "k") and not index.known(1, "other") and not index.known(2, "k")
    refused = {"k": {"outcome": premade.REFUSED, "size": 0, "mappings": []}}
    premade.write_index(
        tmp_path, 7, [{"id": 2, "received_at": 1.0, "header": None, "made": refused}]
    )
    index.read_new(7)
    assert index.known(2, "k")  # known, but not usable
    source = premade.SourceInstance(2, 7, tmp_path / "x.dcm", 1.0)
    assert index.lookup([source], "k") == {}


def test_a_claim_is_a_hard_link_to_its_owners_badge(tmp_path: Path) -> None:
    """No inode a claim (each costs ~1 ms of CPU on a journal-less ext4): the claims of
    one owner are links of one file, which names the owner."""
    for instance_id in range(1, 6):
        assert premade.take(tmp_path, 7, "k1", instance_id, premade.PRE_OWNER) is None
    folder = premade.study_dir(tmp_path, 7) / "claims" / "k1"
    claims = [folder / str(n) for n in range(1, 6)]
    assert len({c.stat().st_ino for c in claims}) == 1
    assert claims[0].stat().st_nlink == 6  # the badge and five claims
    assert premade.holder(claims[3]) == premade.PRE_OWNER
    assert premade.take(tmp_path, 7, "k1", 6, "job4-2") is None
    assert premade.take(tmp_path, 7, "k1", 6, premade.PRE_OWNER) == "job4-2"


def test_where_hard_links_fail_a_claim_is_a_symbolic_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise PermissionError(1, "hard links not allowed here")

    monkeypatch.setattr(premade.os, "link", refuse)
    assert premade.take(tmp_path, 7, "k1", 1, premade.PRE_OWNER) is None
    claim = premade.study_dir(tmp_path, 7) / "claims" / "k1" / "1"
    assert claim.is_symlink()
    assert premade.take(tmp_path, 7, "k1", 1, "job1-5") == premade.PRE_OWNER


def test_the_holder_of_an_empty_claim_is_not_known(tmp_path: Path) -> None:
    folder = premade.study_dir(tmp_path, 7) / "claims" / "k1"
    folder.mkdir(parents=True)
    (folder / "3").touch()  # the claim where no links can be made (Windows)
    assert premade.take(tmp_path, 7, "k1", 3, "job1-5") == ""
