"""Vendor tooling: key pair, pack (hashes computed into the manifest, checked, signed) and
sign; a packed and signed package installs where only signed packages are accepted."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from aifi_app.algorithms import lifecycle, packing
from aifi_app.algorithms.package import PackageError, load_package
from aifi_app.algorithms.signing import SignatureError, TrustPolicy
from aifi_app.service import open_database
from tests.helpers.packages import BUILTIN


def _vendor_folder(tmp_path: Path) -> Path:
    """A vendor's working folder: the built-in model under another id, no [files] table,
    and an editor's hidden file lying around."""
    folder = tmp_path / "src" / "vendor-cxr"
    shutil.copytree(BUILTIN, folder)
    manifest = folder / "manifest.toml"
    text = manifest.read_text().replace('id = "pneumonia-cxr"', 'id = "vendor-cxr"')
    text = re.sub(r"\[files\]\n(?:\"[^\n]*\n)*", "", text)
    manifest.write_text(text)
    (folder / ".DS_Store").write_bytes(b"\0")
    return folder


def test_keygen_writes_a_private_key_for_its_owner_only(tmp_path: Path) -> None:
    public = packing.generate_key(tmp_path / "keys" / "vendor.pem")
    assert stat.S_IMODE(os.stat(tmp_path / "keys" / "vendor.pem").st_mode) == 0o600
    assert (tmp_path / "keys" / "vendor.pem.pub").read_text().strip() == public
    with pytest.raises(SignatureError, match="not overwriting"):
        packing.generate_key(tmp_path / "keys" / "vendor.pem")


def test_packed_and_signed_package_installs_signed_only(tmp_path: Path) -> None:
    folder = _vendor_folder(tmp_path)
    before = (folder / "manifest.toml").read_text()
    public = packing.generate_key(tmp_path / "vendor.pem")
    key = packing.load_private_key(tmp_path / "vendor.pem")
    archive, package, left_out = packing.pack(folder, key=key)
    assert archive == tmp_path / "src" / "vendor-cxr-1.0.0.zip"
    assert left_out == [".DS_Store"]
    assert package.signed_by is not None
    assert (folder / "manifest.toml").read_text() == before  # the source is left alone
    names = set(zipfile.ZipFile(archive).namelist())
    assert names == {"manifest.toml", "manifest.sig", "model.onnx", "MODEL_CARD.md", "metrics.json"}
    db = open_database(tmp_path / "data")
    strict = TrustPolicy(trusted_keys=(public,), signed_only=True)
    installed, previous = lifecycle.install(archive, tmp_path / "data", db, strict)
    assert (installed.identity.algorithm_id, installed.signed_by, previous) == (
        "vendor-cxr",
        package.signed_by,
        None,
    )
    db.close()


def test_unsigned_pack_is_refused_where_only_signed_ones_are_accepted(tmp_path: Path) -> None:
    archive, package, _ = packing.pack(_vendor_folder(tmp_path), tmp_path / "out.zip")
    assert package.signed_by is None
    db = open_database(tmp_path / "data")
    with pytest.raises(PackageError, match="accepts signed packages only"):
        lifecycle.install(archive, tmp_path / "data", db, TrustPolicy(signed_only=True))
    db.close()


def test_pack_refuses_a_manifest_that_breaks_the_schema(tmp_path: Path) -> None:
    folder = _vendor_folder(tmp_path)
    manifest = folder / "manifest.toml"
    manifest.write_text(manifest.read_text().replace('scope = "image"', 'scope = "slab"'))
    with pytest.raises(PackageError, match=r"input\.selection\.scope: 'slab' is not one of"):
        packing.pack(folder, tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


def test_sign_in_place_then_an_altered_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    shutil.copytree(BUILTIN, folder)
    public = packing.generate_key(tmp_path / "vendor.pem")
    package = packing.sign_folder(folder, packing.load_private_key(tmp_path / "vendor.pem"))
    strict = TrustPolicy(trusted_keys=(public,), signed_only=True)
    assert load_package(folder, strict).signed_by == package.signed_by
    (folder / "metrics.json").write_text("{}")
    with pytest.raises(PackageError, match="does not match its SHA-256"):
        load_package(folder, strict)


def test_with_files_table_replaces_only_that_table() -> None:
    text = 'id = "x"\n\n[files]\n"old" = "00"\n\n[input]\nmodalities = ["DX"]\n'
    new = packing.with_files_table(text, {"a b.onnx": "ab" * 32})
    assert new == (
        f'id = "x"\n\n[files]\n"a b.onnx" = "{"ab" * 32}"\n\n[input]\nmodalities = ["DX"]\n'
    )


def test_cli_keygen_pack_install(tmp_path: Path) -> None:
    aifi = [sys.executable, "-m", "aifi_app", "algorithms"]
    key = tmp_path / "vendor.pem"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*aifi, *args], capture_output=True, text=True, timeout=120)

    made = run("keygen", str(key))
    assert made.returncode == 0, made.stderr
    public = (tmp_path / "vendor.pem.pub").read_text().strip()
    assert f'trusted_vendor_keys = ["{public}"]' in made.stdout
    packed = run(
        "pack",
        str(_vendor_folder(tmp_path)),
        "--key",
        str(key),
        "--output",
        str(tmp_path / "v.zip"),
    )
    assert packed.returncode == 0, packed.stderr
    assert "vendor-cxr 1.0.0 (signed by" in packed.stdout
    config = tmp_path / "aifi.toml"
    config.write_text(
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\n\n[algorithms]\n'
        f'trusted_vendor_keys = ["{public}"]\nsigned_packages_only = true\n'
    )
    installed = run("install", "--config", str(config), str(tmp_path / "v.zip"))
    assert installed.returncode == 0, installed.stderr
    assert "vendor-cxr installed 1.0.0" in installed.stdout
