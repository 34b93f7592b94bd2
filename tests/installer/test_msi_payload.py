"""The payload: version, the Windows lock, wheels and the runtime layout (no network)."""

from __future__ import annotations

import hashlib
import re
import tomllib
import zipfile
from pathlib import Path

import pytest

import aifi_app
from tests.helpers.msi import REPO, installer_modules

_, _, payload, _ = installer_modules()


def test_the_msi_version_is_the_projects() -> None:
    assert payload.project_version() == aifi_app.__version__
    assert payload.msi_version("0.1.0") == "0.1.0"
    assert payload.msi_version("2.3") == "2.3.0"
    for bad in ("0.2.0.dev1", "1.0rc1", "1.0+local", "256.0.0", "1.0.0.1"):
        with pytest.raises(payload.PayloadError):
            payload.msi_version(bad)


def test_the_lock_pins_every_dependency_for_windows_with_hashes() -> None:
    pins = payload.locked_requirements()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        assert re.sub(r"[-_.]+", "-", name).lower() in pins, name
    # Windows-only: a resolver that targeted Linux would have dropped it
    assert "pywin32-ctypes" in pins
    text = payload.LOCK.read_text()
    assert f"CPython {payload.RUNTIME_PYTHON}" in text
    blocks = re.findall(
        r"^[A-Za-z0-9_.-]+==\S+((?: \\\n\s+--hash=sha256:[0-9a-f]{64})+)", text, re.M
    )
    assert len(blocks) == len(pins)


def test_a_lock_line_without_a_hash_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("keyring==25.7.0\n")
    with pytest.raises(payload.PayloadError, match="no sha256"):
        payload.locked_requirements(lock)
    lock.write_text("keyring>=25\n")
    with pytest.raises(payload.PayloadError, match="not a pinned"):
        payload.locked_requirements(lock)


def _wheel(folder: Path, name: str, files: dict[str, bytes]) -> Path:
    path = folder / name
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, data in files.items():
            zf.writestr(arcname, data)
    return path


def test_a_cached_wheel_folder_is_checked_against_the_lock(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path, "demo_pkg-1.0-py3-none-any.whl", {"demo_pkg/__init__.py": b"x = 1\n"})
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    lock = tmp_path / "lock.txt"
    lock.write_text(f"demo-pkg==1.0 \\\n    --hash=sha256:{digest}\n")
    assert payload.wheels_for_lock(tmp_path, lock) == [wheel]
    lock.write_text(f"demo-pkg==1.0 \\\n    --hash=sha256:{'0' * 64}\n")
    with pytest.raises(payload.PayloadError, match=r"not in lock\.txt"):
        payload.wheels_for_lock(tmp_path, lock)
    lock.write_text(f"demo-pkg==2.0 \\\n    --hash=sha256:{digest}\n")
    with pytest.raises(payload.PayloadError, match="no wheel for demo-pkg"):
        payload.wheels_for_lock(tmp_path, lock)


def test_unpacking_merges_wheel_data_and_drops_scripts(tmp_path: Path) -> None:
    wheel = _wheel(
        tmp_path,
        "demo-1.0-cp313-cp313-win_amd64.whl",
        {
            "demo/__init__.py": b"",
            "demo-1.0.data/platlib/demo_ext.pyd": b"MZ",
            "demo-1.0.data/scripts/demo-tool": b"#!python\n",
            "demo-1.0.dist-info/METADATA": b"Name: demo\n",
        },
    )
    site = tmp_path / "site"
    payload.unpack_wheel(wheel, site)
    found = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    assert found == ["demo-1.0.dist-info/METADATA", "demo/__init__.py", "demo_ext.pyd"]
    evil = _wheel(tmp_path, "evil-1.0-py3-none-any.whl", {"../outside.py": b""})
    with pytest.raises(payload.PayloadError, match="unsafe path"):
        payload.unpack_wheel(evil, site)


def test_the_runtime_must_be_the_locked_python(tmp_path: Path) -> None:
    runtime_zip = _wheel(tmp_path, "python-3.12.9-embed-amd64.zip", {"python312.dll": b"MZ"})
    with pytest.raises(payload.PayloadError, match="python312"):
        payload.unpack_runtime(runtime_zip, tmp_path / "runtime")


def test_the_layout_has_the_launcher_the_runtime_path_and_site_packages(tmp_path: Path) -> None:
    stem = "python" + payload.RUNTIME_PYTHON.replace(".", "")
    runtime_zip = _wheel(
        tmp_path, "embed.zip", {f"{stem}.dll": b"MZ", "python.exe": b"MZ", f"{stem}._pth": b"x"}
    )
    wheel = _wheel(tmp_path, "demo-1.0-py3-none-any.whl", {"demo/__init__.py": b""})
    out = tmp_path / "payload"
    payload.layout(out, [wheel], runtime_zip)
    files = [str(p) for p in payload.payload_files(out)]
    assert files == [
        "aifi-app.cmd",
        "runtime/Lib/site-packages/demo/__init__.py",
        "runtime/python.exe",
        f"runtime/{stem}._pth",
        f"runtime/{stem}.dll",
    ]
    pth = (out / "runtime" / f"{stem}._pth").read_bytes().decode().split("\r\n")
    assert pth[:3] == [f"{stem}.zip", ".", "Lib\\site-packages"]
    assert "import site" in pth
    assert b'runtime\\python.exe" -m aifi_app %*' in (out / "aifi-app.cmd").read_bytes()
