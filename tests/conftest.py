"""Shared fixtures: real Orthanc and DCMTK where they are installed, reference data paths."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from aifi_app.demo import DemoPacs

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
PNEUMONIAMNIST = SHARED_DATA / "pneumoniamnist" / "pneumoniamnist_28.npz"


def _missing(tool: str) -> bool:
    if tool.startswith("/"):
        return not Path(tool).is_file()
    return shutil.which(tool, path="/usr/bin:/usr/sbin") is None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skips = {
        "orthanc": ("Orthanc", "Orthanc is not installed (apt install orthanc)"),
        "dcmtk": ("storescu", "DCMTK is not installed (apt install dcmtk)"),
        "dicom3tools": ("dciodvfy", "dicom3tools is not installed (apt install dicom3tools)"),
        "dicomweb": (
            "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
            "Orthanc's DICOMweb plugin is not installed (apt install orthanc-dicomweb)",
        ),
        "msitools": ("wixl", "msitools is not installed (apt install msitools wixl osslsigncode)"),
        "wine": ("wine", "Wine is not installed (apt install wine wine64)"),
    }
    # CI sets AIFI_REQUIRE_TOOLS=1: there a missing tool fails the run instead of skipping
    required = os.environ.get("AIFI_REQUIRE_TOOLS") == "1"
    for item in items:
        for marker, (tool, why) in skips.items():
            if marker in item.keywords and _missing(tool):
                if required:
                    raise pytest.UsageError(f"{why}; AIFI_REQUIRE_TOOLS=1 forbids skipping")
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[object]:
    from tests.helpers.orthanc import Orthanc

    started: list[Orthanc] = []

    def make(
        modalities: dict[str, tuple[str, str, int]], plugins: list[str] | None = None
    ) -> Orthanc:
        server = Orthanc(tmp_path / f"orthanc{len(started)}", modalities, plugins).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[DemoPacs]:
    """The demo PACS (a pynetdicom Storage SCP) for in-process chain tests; stopped after."""
    server = DemoPacs(tmp_path / "pacs")
    yield server
    server.stop()
