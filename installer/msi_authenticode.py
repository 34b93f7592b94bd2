"""Authenticode: verify the runtime's signatures before packing it, sign the MSI.

Both with ``osslsigncode`` (Debian package osslsigncode), which implements the part of
Microsoft's ``signtool`` that a Linux build machine needs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# who signs a python.org Windows build: the PSF its own binaries, Microsoft the VC runtime
RUNTIME_SIGNERS = ("Python Software Foundation", "Microsoft Corporation")
SIGNED_SUFFIXES = (".exe", ".dll", ".pyd")
DEFAULT_CA_FILE = Path("/etc/ssl/certs/ca-certificates.crt")


class SignatureError(RuntimeError):
    """A file is unsigned, wrongly signed, or its signature does not verify."""


@dataclass(frozen=True)
class Verified:
    path: Path
    signer: str


def _osslsigncode() -> str:
    tool = shutil.which("osslsigncode")
    if tool is None:
        raise SignatureError("osslsigncode is not installed (Debian package osslsigncode)")
    return tool


def verify_file(path: Path, ca_file: Path, signers: Iterable[str]) -> Verified:
    """Verify ``path``'s Authenticode signature against ``ca_file``; the signer's
    organisation must be one of ``signers``. Offline: no CRL is fetched."""
    proc = subprocess.run(
        [_osslsigncode(), "verify", "-ignore-cdp", "-CAfile", str(ca_file), "-in", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "Signature verification: ok" not in out:
        last = [ln for ln in out.splitlines() if ln.strip()][-3:]
        raise SignatureError(f"{path.name}: Authenticode verification failed: {' | '.join(last)}")
    # the leaf certificate is the first "Signer's certificate" block's subject
    match = re.search(r"Signer's certificate:.*?Subject:[ \t]*([^\n]+)", out, re.DOTALL)
    subject = match.group(1) if match else ""
    org = re.search(r"/O=([^/\n]+)", subject)
    organisation = org.group(1).strip() if org else ""
    allowed = tuple(signers)
    if organisation not in allowed:
        raise SignatureError(
            f"{path.name}: signed by {organisation or subject or 'an unknown signer'!r}, "
            f"not by {' or '.join(allowed)}"
        )
    return Verified(path, organisation)


def verify_runtime(
    runtime: Path, ca_file: Path = DEFAULT_CA_FILE, signers: Iterable[str] = RUNTIME_SIGNERS
) -> list[Verified]:
    """Verify every executable file (.exe, .dll, .pyd) of an unpacked runtime."""
    files = sorted(p for p in runtime.rglob("*") if p.suffix.lower() in SIGNED_SUFFIXES)
    if not any(p.name.lower() == "python.exe" for p in files):
        raise SignatureError(f"{runtime}: no python.exe: not a Windows CPython runtime")
    allowed = tuple(signers)
    return [verify_file(p, ca_file, allowed) for p in files]


def sign(
    unsigned: Path,
    signed: Path,
    pkcs12: Path,
    password: str | None = None,
    timestamp_url: str | None = None,
    description: str = "AIFI Appliance",
) -> None:
    """Sign an MSI (or PE) with a code-signing certificate in a PKCS#12 file."""
    cmd = [_osslsigncode(), "sign", "-pkcs12", str(pkcs12), "-h", "sha256", "-n", description]
    if password is not None:
        cmd += ["-readpass", "-"]
    if timestamp_url:
        cmd += ["-ts", timestamp_url]
    cmd += ["-in", str(unsigned), "-out", str(signed)]
    proc = subprocess.run(cmd, input=password or "", capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SignatureError(f"signing failed: {(proc.stdout + proc.stderr).strip()[-400:]}")
