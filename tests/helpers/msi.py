"""MSI test helpers: a test code-signing PKI, a signed stand-in runtime, msiinfo tables.

The real runtime is python.org's Windows embeddable zip, which this machine cannot
download; the build is tested with a *stand-in* zip of the same shape whose executables
are Windows PE launchers from pip's vendored distlib, Authenticode-signed here by a test
CA under the names that sign the real one. It exercises the verification and the layout;
it does not run.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import io
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parent.parent.parent
INSTALLER = REPO / "installer"
MSI_TOOLS = ("wixl", "msiinfo", "msiextract", "msibuild", "osslsigncode")


@dataclass
class Build:
    """One MSI built by the tests (tests/installer/conftest.py)."""

    msi: Path
    version: str
    payload: Path
    ca_file: Path
    log: str


def installer_modules():  # type: ignore[no-untyped-def]
    """installer/'s modules (a folder of scripts, not a package)."""
    if str(INSTALLER) not in sys.path:
        sys.path.insert(0, str(INSTALLER))
    import build_msi
    import msi_authenticode
    import msi_payload
    import msi_wxs

    return build_msi, msi_authenticode, msi_payload, msi_wxs


def _name(common: str, org: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        ]
    )


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class TestPki:
    ca_file: Path  # PEM of the test root, the trusted root for verification
    folder: Path
    _ca_key: rsa.RSAPrivateKey
    _ca_cert: x509.Certificate

    def signer(self, org: str, password: str = "test") -> Path:
        """A PKCS#12 code-signing certificate for ``org``, issued by the test root."""
        key = _key()
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(org, org))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
            .sign(self._ca_key, hashes.SHA256())
        )
        pfx = self.folder / f"{org.replace(' ', '_')}.pfx"
        pfx.write_bytes(
            pkcs12.serialize_key_and_certificates(
                org.encode(),
                key,
                cert,
                [self._ca_cert],
                serialization.BestAvailableEncryption(password.encode()),
            )
        )
        return pfx


def make_pki(folder: Path, root_name: str = "AIFI Test Root") -> TestPki:
    folder.mkdir(parents=True, exist_ok=True)
    key = _key()
    now = dt.datetime.now(dt.UTC)
    name = _name(root_name, root_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=60))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    ca_file = folder / f"{root_name.replace(' ', '_')}.pem"
    ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TestPki(ca_file, folder, key, cert)


def pe_file(kind: str = "t64") -> bytes:
    """A small Windows x64 PE executable (pip's vendored distlib launcher)."""
    return (importlib.resources.files("pip._vendor.distlib") / f"{kind}.exe").read_bytes()


def sign_file(path: Path, pfx: Path, password: str = "test") -> None:
    signed = path.with_name(path.name + ".signed")
    subprocess.run(
        ["osslsigncode", "sign", "-pkcs12", str(pfx), "-pass", password, "-h", "sha256",
         "-in", str(path), "-out", str(signed)],
        check=True, capture_output=True,
    )  # fmt: skip
    signed.replace(path)


def stand_in_runtime(folder: Path, pki: TestPki, stem: str = "python313") -> Path:
    """An embeddable-zip look-alike whose PE files are signed like python.org's."""
    psf = pki.signer("Python Software Foundation")
    microsoft = pki.signer("Microsoft Corporation")
    files = folder / "runtime-files"
    if files.exists():
        shutil.rmtree(files)
    files.mkdir(parents=True)
    for name, kind, pfx in [
        ("python.exe", "t64", psf),
        ("pythonw.exe", "w64", psf),
        (f"{stem}.dll", "t64", psf),
        ("python3.dll", "t64", psf),
        ("_socket.pyd", "t64", psf),
        ("vcruntime140.dll", "w64", microsoft),
    ]:
        (files / name).write_bytes(pe_file(kind))
        sign_file(files / name, pfx)
    stdlib = io.BytesIO()
    with zipfile.ZipFile(stdlib, "w") as zf:
        zf.writestr("os.pyc", b"stand-in")
    (files / f"{stem}.zip").write_bytes(stdlib.getvalue())
    (files / f"{stem}._pth").write_text(f"{stem}.zip\n.\n\n#import site\n")
    runtime_zip = folder / f"{stem}-stand-in-embed-amd64.zip"
    with zipfile.ZipFile(runtime_zip, "w") as zf:
        for path in sorted(files.iterdir()):
            zf.write(path, path.name)
    return runtime_zip


def msi_table(msi: Path, table: str) -> list[dict[str, str]]:
    """Rows of one MSI table, as ``msiinfo export`` gives them (column names as keys)."""
    out = subprocess.run(
        ["msiinfo", "export", str(msi), table], check=True, capture_output=True, text=True
    ).stdout
    lines = out.split("\r\n") if "\r\n" in out else out.split("\n")
    columns = lines[0].split("\t")
    return [dict(zip(columns, ln.split("\t"), strict=False)) for ln in lines[3:] if ln]
