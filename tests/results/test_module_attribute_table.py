"""highdicom's module-attribute table read a module at a time: the same answers as the
whole table, and highdicom's own functions answer from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from highdicom import _standard_utils, base, image

from aifi_app.results import module_attribute_table
from aifi_app.results.module_attribute_table import (
    ModuleAttributeTable,
    TableFormatError,
    member_spans,
)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


def _highdicom_file() -> Path:
    table = module_attribute_table.install()
    assert table is not None
    return table.path


def _never(name: str) -> dict[str, list[dict[str, object]]]:
    raise AssertionError(f"the {name} table was loaded whole")


def test_every_module_is_the_list_the_whole_file_gives() -> None:
    path = _highdicom_file()
    whole = json.loads(path.read_bytes())
    table = ModuleAttributeTable(path, lambda: _never("real"))
    assert list(table) == list(whole)  # the same keys, in the file's order
    assert len(table) == len(whole) > 400
    for key, attributes in whole.items():
        assert table[key] == attributes
    assert not table.loaded_whole()


def test_a_module_is_parsed_when_first_asked_for_and_kept() -> None:
    table = ModuleAttributeTable(_highdicom_file(), lambda: _never("real"))
    assert "patient" in table
    assert "no-such-module" not in table
    assert table.parsed() == []  # finding where they lie parses none of them
    first = table["patient"]
    assert table["patient"] is first
    assert table.parsed() == ["patient"]
    with pytest.raises(KeyError):
        table["no-such-module"]


def test_highdicom_answers_from_the_lean_table() -> None:
    installed = module_attribute_table.install()
    assert installed is not None
    assert module_attribute_table.install() is installed  # once per process
    for module in (_standard_utils, base, image):
        assert module.get_module_attribute_map() is installed
    whole = json.loads(installed.path.read_bytes())
    # the answers highdicom's results depend on, as the whole table gives them
    assert _standard_utils.is_attribute_in_iod("ContentDate", SEGMENTATION)
    assert not _standard_utils.is_attribute_in_iod("NumberOfFrames", CT_IMAGE)
    assert _standard_utils.is_attribute_in_iod("NumberOfFrames", SEGMENTATION)
    assert _standard_utils.does_iod_have_pixel_data(CT_IMAGE)
    assert not _standard_utils.does_iod_have_pixel_data(COMPREHENSIVE_3D_SR)
    tree = _standard_utils.construct_module_tree("segmentation-image")
    assert set(tree["attributes"]) == {
        a["keyword"] for a in whole["segmentation-image"] if not a["path"]
    }
    # only the modules asked for are parsed (those of three IODs, not all 436)
    assert len(installed.parsed()) < len(whole) // 4


@pytest.mark.parametrize(
    "text",
    [
        '{"a": [1, {"x": "é"}], "b": []}',  # one line, and a character of two bytes
        '{\r\n  "a" : [ 1 ] ,\r\n  "bb": [[], {"k": "]"}]\r\n}\r\n',
    ],
)
def test_spans_are_found_in_any_json_layout(tmp_path: Path, text: str) -> None:
    path = tmp_path / "table.json"
    path.write_bytes(text.encode())
    whole = json.loads(text)
    table = ModuleAttributeTable(path, lambda: _never("test"))
    assert dict(table) == whole


def test_spans_are_found_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module_attribute_table, "CHUNK_BYTES", 7)
    members = {f"module-{n}": [{"keyword": "K" * n, "path": [], "type": "1"}] for n in range(40)}
    path = tmp_path / "table.json"
    path.write_text(json.dumps(members, indent=2))
    spans = member_spans(path)
    raw = path.read_bytes()
    assert {key: json.loads(raw[start:end]) for key, (start, end) in spans.items()} == members


@pytest.mark.parametrize(
    "text",
    ['[{"a": []}]', '{"a": [1, 2]', '{"a": 1}', '{"a" [1]}', '{"a": [], "b": [] "c": []}', ""],
)
def test_a_file_of_another_form_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "table.json"
    path.write_text(text)
    with pytest.raises(TableFormatError):
        member_spans(path)


def test_a_file_of_another_form_is_loaded_whole(tmp_path: Path) -> None:
    path = tmp_path / "table.json"
    path.write_text('[{"a": []}]')
    whole = {"a": [{"keyword": "PatientID", "path": [], "type": "2"}]}
    table = ModuleAttributeTable(path, lambda: whole)
    assert table["a"] == whole["a"]
    assert "a" in table
    assert list(table) == ["a"]
    assert table.loaded_whole()
