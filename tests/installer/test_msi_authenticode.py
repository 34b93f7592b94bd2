"""Authenticode with osslsigncode: the runtime's signatures are verified before packing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.msi import installer_modules, make_pki, pe_file, sign_file

_, authenticode, _, _ = installer_modules()
pytestmark = pytest.mark.msitools


def _runtime(folder: Path, signers: dict[str, Path | None]) -> Path:
    folder.mkdir(parents=True)
    for name, pfx in signers.items():
        (folder / name).write_bytes(pe_file())
        if pfx is not None:
            sign_file(folder / name, pfx)
    (folder / "python313.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # not an executable
    return folder


def test_a_runtime_signed_by_the_psf_and_microsoft_verifies(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    psf, ms = pki.signer("Python Software Foundation"), pki.signer("Microsoft Corporation")
    runtime = _runtime(
        tmp_path / "rt", {"python.exe": psf, "python313.dll": psf, "vcruntime140.dll": ms}
    )
    verified = authenticode.verify_runtime(runtime, pki.ca_file)
    assert {(v.path.name, v.signer) for v in verified} == {
        ("python.exe", "Python Software Foundation"),
        ("python313.dll", "Python Software Foundation"),
        ("vcruntime140.dll", "Microsoft Corporation"),
    }


def test_an_unsigned_file_stops_the_build(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    psf = pki.signer("Python Software Foundation")
    runtime = _runtime(tmp_path / "rt", {"python.exe": psf, "_ssl.pyd": None})
    with pytest.raises(authenticode.SignatureError, match=r"_ssl\.pyd"):
        authenticode.verify_runtime(runtime, pki.ca_file)


def test_another_signer_is_refused(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    runtime = _runtime(tmp_path / "rt", {"python.exe": pki.signer("Mallory Ltd")})
    with pytest.raises(authenticode.SignatureError, match="Mallory Ltd"):
        authenticode.verify_runtime(runtime, pki.ca_file)


def test_an_untrusted_root_or_a_changed_file_is_refused(tmp_path: Path) -> None:
    pki, other = make_pki(tmp_path / "pki"), make_pki(tmp_path / "other", "Other Root")
    runtime = _runtime(tmp_path / "rt", {"python.exe": pki.signer("Python Software Foundation")})
    with pytest.raises(authenticode.SignatureError, match="verification failed"):
        authenticode.verify_runtime(runtime, other.ca_file)
    exe = runtime / "python.exe"
    data = bytearray(exe.read_bytes())
    data[0x400] ^= 0xFF  # a byte of code, inside the signed range
    exe.write_bytes(bytes(data))
    with pytest.raises(authenticode.SignatureError, match="verification failed"):
        authenticode.verify_runtime(runtime, pki.ca_file)


def test_a_folder_without_python_exe_is_not_a_runtime(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    runtime = _runtime(tmp_path / "rt", {"python313.dll": pki.signer("Python Software Foundation")})
    with pytest.raises(authenticode.SignatureError, match=r"no python\.exe"):
        authenticode.verify_runtime(runtime, pki.ca_file)
