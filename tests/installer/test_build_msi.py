"""The MSI as Windows Installer reads it: msiinfo's tables, msiextract's files, the signature."""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path, PurePosixPath

import pytest

import aifi_app
from tests.helpers.msi import Build, installer_modules, msi_table

_, _, payload_mod, wxs = installer_modules()
pytestmark = [pytest.mark.msitools, pytest.mark.slow]


@pytest.fixture(scope="module")
def build(msi_builds: dict[str, Build]) -> Build:
    return msi_builds["old"]


def test_summary_information(build: Build) -> None:
    info = subprocess.run(
        ["msiinfo", "suminfo", str(build.msi)], check=True, capture_output=True, text=True
    ).stdout
    assert f"Subject: AIFI Appliance {aifi_app.__version__}" in info
    assert "Author: AIFI Appliance developers" in info
    assert "Template: x64;1033" in info  # 64-bit package
    assert "Version: 500" in info  # Windows Installer 5


def test_property_table(build: Build) -> None:
    props = {r["Property"]: r["Value"] for r in msi_table(build.msi, "Property")}
    assert props["UpgradeCode"] == wxs.UPGRADE_CODE
    assert props["ALLUSERS"] == "1"  # per machine
    assert props["ProductVersion"] == build.version == aifi_app.__version__
    assert props["ProductName"] == "AIFI Appliance"
    assert props["REMOVE_DATA"] == "0"
    secure = props["SecureCustomProperties"].split(";")
    assert {"DICOM_PORT", "AE_TITLE", "INSTALL_SERVICE", "REMOVE_DATA"} <= set(secure)


def test_upgrade_rows_make_every_build_replace_the_installed_one(build: Build) -> None:
    rows = msi_table(build.msi, "Upgrade")
    assert {r["UpgradeCode"] for r in rows} == {wxs.UPGRADE_CODE}
    older = next(r for r in rows if r["ActionProperty"] == "WIX_UPGRADE_DETECTED")
    newer = next(r for r in rows if r["ActionProperty"] == "WIX_DOWNGRADE_DETECTED")
    assert (older["VersionMin"], older["VersionMax"]) == ("", build.version)
    assert int(newer["Attributes"]) & 0x2  # OnlyDetect: a newer one blocks (LaunchCondition)
    actions = {r["Action"]: r for r in msi_table(build.msi, "InstallExecuteSequence")}
    assert "RemoveExistingProducts" in actions


def test_start_menu_shortcut(build: Build) -> None:
    (row,) = msi_table(build.msi, "Shortcut")
    assert row["Directory_"] == "ProgramMenuFolder"
    assert row["Name"] == "AIFI Appliance"
    assert row["Target"] == "[INSTALLDIR]runtime\\pythonw.exe"
    assert row["Arguments"] == "-m aifi_app gui"


def _installed_paths(msi: Path) -> dict[str, PurePosixPath]:
    """File key -> path under the install folder, from File, Component and Directory."""
    dirs = {r["Directory"]: r for r in msi_table(msi, "Directory")}
    comps = {r["Component"]: r for r in msi_table(msi, "Component")}

    def dir_path(key: str) -> PurePosixPath:
        if key == "INSTALLDIR":
            return PurePosixPath(".")
        row = dirs[key]
        name = row["DefaultDir"].split(":")[-1].split("|")[-1]
        return dir_path(row["Directory_Parent"]) / name

    paths = {}
    for row in msi_table(msi, "File"):
        name = row["FileName"].split("|")[-1]
        paths[row["File"]] = dir_path(comps[row["Component_"]]["Directory_"]) / name
    return paths


def test_a_file_row_for_every_payload_file(build: Build) -> None:
    files = payload_mod.payload_files(build.payload)
    paths = _installed_paths(build.msi)
    # the service host is python.exe once more under its own name
    assert sorted(paths.values()) == sorted([*files, wxs.SERVICE_HOST])
    assert any(str(p).startswith("runtime/Lib/site-packages/win32ctypes/") for p in files)
    assert any(str(p).startswith("runtime/Lib/site-packages/aifi_app/") for p in files)
    sizes = {r["File"]: int(r["FileSize"]) for r in msi_table(build.msi, "File")}
    for key, rel in paths.items():
        source = build.payload / (rel if rel != wxs.SERVICE_HOST else "runtime/python.exe")
        assert sizes[key] == source.stat().st_size, rel


def test_extract_round_trip(build: Build, tmp_path: Path) -> None:
    subprocess.run(
        ["msiextract", "-C", str(tmp_path), str(build.msi)], check=True, capture_output=True
    )
    extracted = tmp_path / "AIFI Appliance"
    service_host = extracted.joinpath(*wxs.SERVICE_HOST.parts)
    assert filecmp.cmp(service_host, build.payload / "runtime" / "python.exe", shallow=False)
    service_host.unlink()
    got = sorted(p.relative_to(extracted) for p in extracted.rglob("*") if p.is_file())
    want = sorted(p.relative_to(build.payload) for p in build.payload.rglob("*") if p.is_file())
    assert got == want
    _, mismatch, errors = filecmp.cmpfiles(extracted, build.payload, want, shallow=False)
    assert (mismatch, errors) == ([], [])


def test_silent_install_values_are_written_and_remembered(build: Build) -> None:
    values = {r["Name"]: r for r in msi_table(build.msi, "Registry")}
    assert values["DicomPort"]["Value"] == "[DICOM_PORT]"
    assert values["AeTitle"]["Value"] == "[AE_TITLE]"
    assert {r["Key"] for r in values.values()} == {wxs.REGISTRY_KEY}
    assert {r["Root"] for r in values.values()} == {"2"}  # HKLM
    searches = {r["Signature_"]: r for r in msi_table(build.msi, "RegLocator")}
    assert searches["FindDicomPort"]["Name"] == "DicomPort"
    assert int(searches["FindDicomPort"]["Type"]) & 0x10  # msidbLocatorType64bit
    sequence = {r["Action"]: r for r in msi_table(build.msi, "InstallExecuteSequence")}
    assert int(sequence["AppSearch"]["Sequence"]) < int(sequence["RestoreDicomPort"]["Sequence"])
    assert int(sequence["RestoreDicomPort"]["Sequence"]) < int(sequence["CostFinalize"]["Sequence"])
    assert sequence["RestoreDicomPort"]["Condition"] == "NOT DICOM_PORT AND SAVED_DICOM_PORT"


def test_program_data_is_removed_only_on_request(build: Build) -> None:
    sequence = {r["Action"]: r for r in msi_table(build.msi, "InstallExecuteSequence")}
    remove = sequence["RemoveProgramData"]
    assert remove["Condition"] == wxs.REMOVE_DATA_CONDITION
    assert "NOT UPGRADINGPRODUCTCODE" in remove["Condition"]
    assert (
        int(sequence["InstallInitialize"]["Sequence"])
        < int(remove["Sequence"])
        < int(sequence["InstallFinalize"]["Sequence"])
    )
    (action,) = [
        r for r in msi_table(build.msi, "CustomAction") if r["Action"] == "RemoveProgramData"
    ]
    assert int(action["Type"]) & 0x400  # deferred
    assert "[CommonAppDataFolder]AIFI Appliance" in action["Target"]


def test_the_optional_service(build: Build) -> None:
    (service,) = msi_table(build.msi, "ServiceInstall")
    assert service["Name"] == wxs.SERVICE_NAME
    assert service["Arguments"] == "-m aifi_app.windows_service"
    assert service["StartName"] == "LocalSystem"
    comps = {r["Component"]: r for r in msi_table(build.msi, "Component")}
    assert comps[service["Component_"]]["Condition"] == 'INSTALL_SERVICE="1"'
    (control,) = msi_table(build.msi, "ServiceControl")
    assert int(control["Event"]) & 0x20 and int(control["Event"]) & 0x80  # stop, delete


def test_the_msi_is_signed_and_the_runtime_was_verified(build: Build) -> None:
    proc = subprocess.run(
        ["osslsigncode", "verify", "-ignore-cdp", "-CAfile", str(build.ca_file),
         "-in", str(build.msi)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-500:]
    assert "AIFI Test Signer" in proc.stdout
    assert "6 files signed by ['Microsoft Corporation', 'Python Software Foundation']" in build.log


def test_a_newer_build_keeps_the_codes_that_must_stay(msi_builds: dict[str, Build]) -> None:
    old, new = msi_builds["old"], msi_builds["new"]
    p_old = {r["Property"]: r["Value"] for r in msi_table(old.msi, "Property")}
    p_new = {r["Property"]: r["Value"] for r in msi_table(new.msi, "Property")}
    assert p_new["ProductVersion"] == "0.99.1"
    assert p_new["UpgradeCode"] == p_old["UpgradeCode"]
    assert p_new["ProductCode"] != p_old["ProductCode"]
    c_old = {r["Component"]: r["ComponentId"] for r in msi_table(old.msi, "Component")}
    c_new = {r["Component"]: r["ComponentId"] for r in msi_table(new.msi, "Component")}
    assert c_old == c_new  # same paths, same component GUIDs
