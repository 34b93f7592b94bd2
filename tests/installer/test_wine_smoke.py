"""Install, upgrade and remove the MSI with Wine's msiexec, in a fresh Wine prefix.

What Wine shows: Windows Installer's own work (files, registry, shortcut, the major
upgrade, the remembered silent-install values, the data folder kept or removed). What it
cannot show: the application itself, which needs the real python.org runtime (the test
payload carries a signed stand-in that does not run), the Windows service, and the
all-users Start menu (Wine puts the shortcut in the user's). The release checklist in
installer/README.md leaves those to a Windows machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.msi import Build, installer_modules, msi_table

_, _, payload_mod, wxs = installer_modules()
pytestmark = [pytest.mark.msitools, pytest.mark.wine, pytest.mark.slow]
KEY = "HKLM\\" + wxs.REGISTRY_KEY


class Wine:
    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.env = {**os.environ, "WINEPREFIX": str(prefix), "WINEDEBUG": "-all",
                    "WINEDLLOVERRIDES": "mscoree,mshtml="}  # fmt: skip
        self.wine = shutil.which("wine") or "wine"
        self.run("wineboot", "-i")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.wine, *args], env=self.env, capture_output=True, text=True, timeout=600
        )
        if check:
            assert proc.returncode == 0, f"{args}: rc {proc.returncode} {proc.stderr[-800:]}"
        return proc

    def msiexec(self, *args: str) -> None:
        self.run("msiexec", *args, "/qn")

    def reg(self, key: str = KEY) -> dict[str, str] | None:
        proc = self.run("reg", "query", key, check=False)
        if proc.returncode != 0:
            return None
        values = {}
        for line in proc.stdout.splitlines():
            parts = line.strip().split(None, 2)
            if len(parts) >= 2 and parts[1].startswith("REG_"):
                values[parts[0]] = parts[2] if len(parts) == 3 else ""
        return values

    @property
    def install_dir(self) -> Path:
        return self.prefix / "drive_c" / "Program Files" / "AIFI Appliance"

    @property
    def data_dir(self) -> Path:
        return self.prefix / "drive_c" / "ProgramData" / "AIFI Appliance"

    def shortcuts(self) -> list[Path]:
        return sorted(self.prefix.glob("drive_c/**/Start Menu/Programs/AIFI Appliance.lnk"))


def _product_code(msi: Path) -> str:
    props = {r["Property"]: r["Value"] for r in msi_table(msi, "Property")}
    return props["ProductCode"]


def _uninstall_key(msi: Path) -> str:
    return "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\" + _product_code(msi)


def test_install_upgrade_uninstall_under_wine(msi_builds: dict[str, Build], tmp_path: Path) -> None:
    old, new = msi_builds["old"], msi_builds["new"]
    wine = Wine(tmp_path / "prefix")

    # 1. silent install with the DICOM port and AE title
    wine.msiexec("/i", str(old.msi), "DICOM_PORT=104", "AE_TITLE=AIFI_RAD")
    installed = sorted(
        p.relative_to(wine.install_dir) for p in wine.install_dir.rglob("*") if p.is_file()
    )
    expected = sorted(Path(p) for p in payload_mod.payload_files(old.payload))
    assert installed == expected  # every payload file; no service host without INSTALL_SERVICE
    assert (wine.install_dir / "runtime" / "python.exe").read_bytes() == (
        old.payload / "runtime" / "python.exe"
    ).read_bytes()
    values = wine.reg()
    assert values is not None
    assert values["DicomPort"] == "104" and values["AeTitle"] == "AIFI_RAD"
    assert values["Version"] == old.version
    assert values["InstallDir"].rstrip("\\").endswith("Program Files\\AIFI Appliance")
    assert wine.reg(_uninstall_key(old.msi)) is not None  # in Programs and Features
    assert len(wine.shortcuts()) == 1
    # the appliance's data, made by the application at run time
    wine.data_dir.mkdir(parents=True, exist_ok=True)
    (wine.data_dir / "appliance.sqlite3").write_bytes(b"data")

    # 2. a newer version, silently and without the properties: a major upgrade
    wine.msiexec("/i", str(new.msi))
    values = wine.reg()
    assert values is not None and values["Version"] == new.version
    assert values["DicomPort"] == "104" and values["AeTitle"] == "AIFI_RAD"  # remembered
    assert wine.reg(_uninstall_key(old.msi)) is None  # the old product is gone
    assert wine.reg(_uninstall_key(new.msi)) is not None
    assert (wine.install_dir / "aifi-app.cmd").is_file()
    assert len(wine.shortcuts()) == 1
    assert (wine.data_dir / "appliance.sqlite3").read_bytes() == b"data"  # kept

    # 3. uninstall: program files, registry and shortcut go, the data stays
    wine.msiexec("/x", str(new.msi))
    assert not any(p.is_file() for p in wine.install_dir.rglob("*"))
    assert wine.reg() is None
    assert wine.reg(_uninstall_key(new.msi)) is None
    assert wine.shortcuts() == []
    assert (wine.data_dir / "appliance.sqlite3").read_bytes() == b"data"

    # 4. uninstall with REMOVE_DATA=1: the data folder goes too
    wine.msiexec("/i", str(new.msi))
    wine.msiexec("/x", str(new.msi), "REMOVE_DATA=1")
    assert not wine.data_dir.exists()
    assert wine.reg() is None
