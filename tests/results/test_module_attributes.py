"""highdicom's module-attribute table read one module at a time: the same lists as
highdicom's whole table, the same SEG and SR evidence bytes, only the modules asked for
parsed, and highdicom left as it is where it loaded its table or the file is laid out
otherwise."""

from __future__ import annotations

import datetime
import functools
import json
import sys
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from highdicom import _standard_utils
from pydicom.dataset import Dataset

from aifi_app.algorithms.findings import AlgorithmIdentity, CodedConcept
from aifi_app.part10 import part10_bytes
from aifi_app.results import module_attributes
from aifi_app.results.segmentation import build_segmentation_headers
from aifi_app.results.sr_evidence import sources_evidence

FILE = resources.files("highdicom").joinpath("_standard/module_attribute_map.json")
LUNG = CodedConcept("39607008", "SCT", "Lung")
CREATED = datetime.datetime(2026, 11, 29, 9, 15, 30, 123456)
SEG_UIDS: dict[str, Any] = {
    "series_instance_uid": "2.25.300000000000000000000000000000000001",
    "sop_instance_uid": "2.25.300000000000000000000000000000000002",
    "series_number": 9003,
    "instance_number": 1,
    "software_version": "0.3.0",
    "created": CREATED,
    "dimension_organization_uid": "2.25.300000000000000000000000000000000003",
}


def _holders() -> list[ModuleType]:
    """highdicom's modules that hold ``get_module_attribute_map`` by name."""
    return [
        module
        for name, module in list(sys.modules.items())
        if (name == "highdicom" or name.startswith("highdicom."))
        and hasattr(module, "get_module_attribute_map")
    ]


def _highdicoms_own() -> Callable[[], Any]:
    current = _standard_utils.get_module_attribute_map
    own: Callable[[], Any] = getattr(current, "original", current)
    return own


def _give_highdicom(function: Callable[[], Any], monkey: pytest.MonkeyPatch) -> None:
    current = _standard_utils.get_module_attribute_map
    for module in _holders():
        if module.get_module_attribute_map is current:
            monkey.setattr(module, "get_module_attribute_map", function)


@pytest.fixture
def whole() -> Iterator[None]:
    """highdicom with its own table, loaded whole (restored after the test)."""
    monkey = pytest.MonkeyPatch()
    _give_highdicom(_highdicoms_own(), monkey)
    assert module_attributes.installed() is None
    yield
    monkey.undo()


@pytest.fixture
def per_module() -> Iterator[module_attributes.ModuleAttributes]:
    """highdicom given the table read per module, fresh (restored after the test): as
    in a process that has not loaded highdicom's table (this one may have)."""
    monkey = pytest.MonkeyPatch()
    own = _highdicoms_own()
    _give_highdicom(functools.lru_cache(1)(own.__wrapped__), monkey)  # type: ignore[attr-defined]
    assert module_attributes.install()
    table = module_attributes.installed()
    assert table is not None
    yield table
    monkey.undo()


def test_every_module_is_highdicoms_list() -> None:
    whole_table = json.loads(FILE.read_bytes())
    index = module_attributes.index_of(FILE)
    assert index is not None
    table = module_attributes.ModuleAttributes(FILE, index)
    assert list(table) == list(whole_table)
    assert len(table) == len(whole_table) > 400
    for key, attributes in whole_table.items():
        assert key in table
        assert table[key] == attributes, key
    assert "no-such-module" not in table
    with pytest.raises(KeyError):
        table["no-such-module"]


def test_the_index_does_not_depend_on_where_the_blocks_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = module_attributes.index_of(FILE)
    for block in (4096, 4099, 1 << 20):  # key lines cut by a block's end, many times
        monkeypatch.setattr(module_attributes, "_BLOCK", block)
        assert module_attributes.index_of(FILE) == index


def test_a_file_laid_out_otherwise_is_not_indexed(tmp_path: Path) -> None:
    whole_table = json.loads(FILE.read_bytes())
    compact = tmp_path / "compact.json"
    compact.write_text(json.dumps(whole_table))  # one line: no module per line
    assert module_attributes.index_of(compact) is None
    empty = tmp_path / "empty.json"
    empty.write_text("{}\n")
    assert module_attributes.index_of(empty) is None
    laid_out = tmp_path / "two.json"
    laid_out.write_text(json.dumps({"a": [{"keyword": "X"}], "b": [1]}, indent=2))
    index = module_attributes.index_of(laid_out)
    assert index is not None
    table = module_attributes.ModuleAttributes(laid_out, index)
    assert dict(table) == {"a": [{"keyword": "X"}], "b": [1]}


def test_a_module_that_is_not_a_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.json"
    path.write_text('{\n  "a": [\n    1\n  ] 7,\n  "b": [\n    2\n  ]\n}\n')
    index = module_attributes.index_of(path)
    assert index is not None
    table = module_attributes.ModuleAttributes(path, index)
    assert json.dumps(table["b"]) == "[2]"
    with pytest.raises(ValueError, match="not a list"):
        table["a"]


def _seg_and_evidence(sources: list[Dataset], algorithm: AlgorithmIdentity) -> tuple[bytes, bytes]:
    seg = build_segmentation_headers(sources, LUNG, "Lung", algorithm, **SEG_UIDS)
    return part10_bytes(seg), sources_evidence(sources, lambda ds: ds).items


def test_the_seg_and_evidence_are_those_of_highdicoms_whole_table(
    ct_series: list[Dataset],
    algorithm: AlgorithmIdentity,
    whole: None,
) -> None:
    theirs = _seg_and_evidence(ct_series, algorithm)
    monkey = pytest.MonkeyPatch()
    own = _highdicoms_own()
    _give_highdicom(functools.lru_cache(1)(own.__wrapped__), monkey)  # type: ignore[attr-defined]
    try:
        assert module_attributes.install()
        table = module_attributes.installed()
        assert table is not None
        ours = _seg_and_evidence(ct_series, algorithm)
    finally:
        monkey.undo()
    assert ours == theirs  # byte for byte
    # only what the CT's SEG and evidence ask for was parsed: a few dozen of 436 modules
    assert "segmentation-multi-frame-functional-groups" in table.parsed()
    assert "patient" in table.parsed()  # copied from the first source
    assert len(table.parsed()) < 50 < len(table)


def test_every_holder_of_highdicoms_function_gets_the_table(
    per_module: module_attributes.ModuleAttributes,
) -> None:
    import highdicom.base
    import highdicom.image

    for module in (_standard_utils, highdicom.base, highdicom.image):
        assert module.get_module_attribute_map() is per_module
    assert _standard_utils.get_module_attribute_map.cache_info().currsize == 1
    assert module_attributes.install()  # again: the same table
    assert module_attributes.installed() is per_module


def test_a_process_that_loaded_highdicoms_table_keeps_it(whole: None) -> None:
    loaded = _standard_utils.get_module_attribute_map()
    assert isinstance(loaded, dict)
    assert not module_attributes.install()
    assert module_attributes.installed() is None
    assert _standard_utils.get_module_attribute_map() is loaded
