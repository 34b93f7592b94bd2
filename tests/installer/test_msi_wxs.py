"""The generated WiX source: one component per file, stable identifiers, the fixed codes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

from tests.helpers.msi import installer_modules

_, _, _, wxs = installer_modules()
NS = {"w": wxs.WIX_NS}
FILES = [PurePosixPath(p) for p in ("aifi-app.cmd", "runtime/python.exe", "runtime/Lib/a b.py")]


def _doc(with_service: bool, version: str = "1.2.3") -> ET.Element:
    opts = wxs.WxsOptions(version=version, payload=Path("payload"), with_service=with_service)
    return ET.fromstring(wxs.generate(opts, FILES))


def test_one_component_and_file_per_payload_file() -> None:
    doc = _doc(with_service=False)
    files = doc.findall(".//w:File", NS)
    assert sorted(f.get("Source") for f in files) == sorted(f"payload/{p}" for p in FILES)
    for f in files:
        component = next(c for c in doc.iter(f"{{{wxs.WIX_NS}}}Component") if f in list(c))
        assert f.get("KeyPath") == "yes" and component.get("Win64") == "yes"
    refs = {r.get("Id") for r in doc.findall(".//w:Feature/w:ComponentRef", NS)}
    assert refs == {c.get("Id") for c in doc.iter(f"{{{wxs.WIX_NS}}}Component")}
    assert not doc.findall(".//w:ServiceInstall", NS)  # no runtime, no service


def test_identifiers_and_guids_stay_the_same_across_versions() -> None:
    def ids(doc: ET.Element) -> dict[str, str | None]:
        return {c.get("Id") or "": c.get("Guid") for c in doc.iter(f"{{{wxs.WIX_NS}}}Component")}

    old, new = _doc(True, "1.2.3"), _doc(True, "1.3.0")
    assert ids(old) == ids(new)
    product = new.find("w:Product", NS)
    assert product is not None
    assert product.get("UpgradeCode") == wxs.UPGRADE_CODE and product.get("Id") == "*"
    assert product.get("Version") == "1.3.0"
    assert all(len(i) <= 72 for i in ids(new))  # MSI identifier limit


def test_the_service_and_the_post_build_queries() -> None:
    doc = _doc(with_service=True)
    (service,) = doc.findall(".//w:ServiceInstall", NS)
    assert service.get("Name") == wxs.SERVICE_NAME and service.get("Start") == "auto"
    queries = wxs.post_build_queries(with_service=True)
    assert any('INSTALL_SERVICE="1"' in q and "UPDATE Component" in q for q in queries)
    assert len(wxs.post_build_queries(with_service=False)) == 1
