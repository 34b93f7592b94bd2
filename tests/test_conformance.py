"""The conformance statement in docs/ is what `aifi-app conformance` makes from the code."""

from __future__ import annotations

from pathlib import Path

from aifi_app.cli import main
from aifi_app.conformance import conformance_statement
from aifi_app.dicom_node.transfer_syntaxes import ACCEPTED_TRANSFER_SYNTAXES, STORAGE_SOP_CLASSES
from aifi_app.results.catalog import RESULT_OBJECTS

DOC = Path(__file__).resolve().parents[1] / "docs" / "conformance-statement.md"


def test_docs_hold_the_generated_statement() -> None:
    assert DOC.read_text(encoding="utf-8") == conformance_statement(), (
        "docs/conformance-statement.md is out of date: run "
        "`aifi-app conformance --output docs/conformance-statement.md`"
    )


def test_statement_lists_what_the_node_accepts_and_makes(tmp_path: Path) -> None:
    text = conformance_statement()
    for uid in (*ACCEPTED_TRANSFER_SYNTAXES, *STORAGE_SOP_CLASSES):
        assert f"`{uid}`" in text
    for entry in RESULT_OBJECTS:
        assert f"| `{entry.kind}` | {entry.sop_class_name} | `{entry.sop_class_uid}` |" in text
    for message in ("ORU^R01^ORU_R01", "OMG^O19^OMG_O19"):
        assert message in text
    out = tmp_path / "statement.md"
    assert main(["conformance", "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == text
