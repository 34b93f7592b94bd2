"""``aifi-app demo``: the README's first command, on the built-in defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from aifi_app.demo import run_demo
from tests.conftest import PNEUMONIAMNIST


@pytest.mark.slow
def test_demo_runs_the_whole_chain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = PNEUMONIAMNIST if PNEUMONIAMNIST.exists() else None
    assert run_demo(studies=3, images=images, data_dir=tmp_path / "demo", pacs=None) == 0
    out = capsys.readouterr().out
    assert "demo succeeded" in out
    assert "no_match" in out and "modality CT" in out
    pacs = [dcmread(p) for p in (tmp_path / "demo" / "demo-pacs").glob("*.dcm")]
    assert len(pacs) == 6  # an SC and an SR for each of the three chest X-rays
    assert sorted(str(ds.SOPClassUID) for ds in pacs) == sorted(
        [SecondaryCaptureImageStorage, ComprehensiveSRStorage] * 3
    )
    assert {str(ds.PatientID) for ds in pacs} == {"DEMO00001", "DEMO00002", "DEMO00003"}
