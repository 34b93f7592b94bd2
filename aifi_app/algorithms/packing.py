"""Making algorithm packages (vendor or hospital side): an Ed25519 key pair, a package
archive whose manifest lists every file with its SHA-256, and its signature, so that
nobody edits hashes by hand.

``pack`` never changes the source folder: it copies the package's files into a staging
folder, rewrites the manifest's ``[files]`` table there, checks the result exactly as the
appliance will (schema, hashes, signature), signs it and writes a ``.zip``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from aifi_app.algorithms.package import (
    MANIFEST,
    AlgorithmPackage,
    PackageError,
    load_package,
    read_manifest,
    sha256_file,
)
from aifi_app.algorithms.signing import (
    SIGNATURE,
    SignatureError,
    TrustPolicy,
    public_key_text,
    sign_manifest,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_LEFT_OUT = ("__pycache__",)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def generate_key(private_path: Path) -> str:
    """A new Ed25519 key pair: the private key as PEM in ``private_path`` (readable by its
    owner only; keep it safe), the public key as ``<private_path>.pub`` in the form
    ``algorithms.trusted_vendor_keys`` takes. Returns the public key text."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    if private_path.exists():
        raise SignatureError(f"{private_path} exists; not overwriting a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = public_key_text(key.public_key())
    Path(f"{private_path}.pub").write_text(public + "\n", encoding="ascii")
    return public


def load_private_key(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SignatureError(f"{path}: not a readable, unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path}: not an Ed25519 private key")
    return key


def package_files(folder: Path) -> tuple[list[str], list[str]]:
    """The files a package made from ``folder`` holds, and those left out (hidden files
    and caches), as POSIX paths relative to ``folder``."""
    kept: list[str] = []
    left_out: list[str] = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name in (MANIFEST, SIGNATURE):
            continue
        relative = path.relative_to(folder)
        hidden = any(part.startswith(".") or part in _LEFT_OUT for part in relative.parts)
        (left_out if hidden else kept).append(relative.as_posix())
    return kept, left_out


def with_files_table(manifest_text: str, hashes: dict[str, str]) -> str:
    """The manifest with its ``[files]`` table replaced by ``hashes`` (added if absent)."""
    table = "[files]\n" + "".join(f"{json.dumps(n)} = {json.dumps(h)}\n" for n, h in hashes.items())
    lines = manifest_text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == "[files]"), None)
    if start is None:
        return manifest_text.rstrip("\n") + "\n\n" + table
    end = start + 1
    while end < len(lines) and not re.match(r"\s*\[", lines[end]):
        end += 1
    return "".join([*lines[:start], table, "\n", *lines[end:]]).replace("\n\n\n", "\n\n")


def _stage(folder: Path, staging: Path) -> list[str]:
    read_manifest(folder)  # the manifest is there and is TOML
    kept, left_out = package_files(folder)
    staging.mkdir(parents=True)
    for name in kept:
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / name, target)
    hashes = {name: sha256_file(staging / name) for name in kept}
    text = (folder / MANIFEST).read_text("utf-8")
    (staging / MANIFEST).write_text(with_files_table(text, hashes), "utf-8")
    return left_out


def pack(
    folder: Path, output: Path | None = None, key: Ed25519PrivateKey | None = None
) -> tuple[Path, AlgorithmPackage, list[str]]:
    """Write the package archive for ``folder`` (``<id>-<version>.zip`` next to it unless
    ``output`` is given), with the ``[files]`` table computed and, with ``key``, signed.

    Returns the archive, the package as the appliance reads it, and the files left out.
    Raises :class:`PackageError` in words when the manifest is not valid.
    """
    with tempfile.TemporaryDirectory(prefix="aifi-pack-") as tmp:
        staging = Path(tmp) / folder.name
        left_out = _stage(folder, staging)
        trust = TrustPolicy()
        if key is not None:
            sign_manifest(staging, key)
            trust = TrustPolicy(trusted_keys=(public_key_text(key.public_key()),), signed_only=True)
        package = load_package(staging, trust)
        ident = package.identity
        target = output or folder.parent / f"{ident.algorithm_id}-{ident.version}.zip"
        partial = target.with_name(target.name + ".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(p for p in staging.rglob("*") if p.is_file()):
                info = zipfile.ZipInfo(path.relative_to(staging).as_posix(), _ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
        partial.replace(target)
    return target, package, left_out


def sign_folder(folder: Path, key: Ed25519PrivateKey) -> AlgorithmPackage:
    """Sign a package folder in place (its ``[files]`` must already be right)."""
    load_package(folder)  # hashes and schema first: never sign a broken package
    sign_manifest(folder, key)
    trust = TrustPolicy(trusted_keys=(public_key_text(key.public_key()),), signed_only=True)
    return load_package(folder, trust)


__all__ = [
    "PackageError",
    "generate_key",
    "load_private_key",
    "pack",
    "package_files",
    "sign_folder",
    "with_files_table",
]
