"""Vendor signatures on algorithm packages (Ed25519 over the exact bytes of the manifest).

The manifest lists every file of the package with its SHA-256, so signing the manifest
signs the package. The signature lies next to it as ``manifest.sig`` (base64). The
appliance trusts the vendor public keys in ``algorithms.trusted_vendor_keys`` and, with
``algorithms.signed_packages_only``, refuses any package none of them signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # cryptography is imported when a signature or key is first seen
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

SIGNATURE = "manifest.sig"


class SignatureError(ValueError):
    """A key or signature is malformed; the message says which."""


@dataclass(frozen=True)
class TrustPolicy:
    """Which vendor keys are trusted, and whether unsigned packages are refused."""

    trusted_keys: tuple[str, ...] = ()
    """Raw 32-byte Ed25519 public keys, base64."""
    signed_only: bool = False


def public_key_text(key: Ed25519PublicKey) -> str:
    """The form a public key takes in the settings file (base64 of its 32 raw bytes)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")


def fingerprint(key_text: str) -> str:
    """A short, stable name for a public key (first 16 hex digits of its SHA-256)."""
    return hashlib.sha256(base64.b64decode(key_text)).hexdigest()[:16]


def parse_public_key(text: str) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"{text[:12]}...: not a base64 Ed25519 public key (32 bytes)") from exc


def sign_manifest(package_root: Path, private_key: Ed25519PrivateKey) -> Path:
    """Write ``manifest.sig`` for the package's current manifest (vendor side)."""
    from aifi_app.algorithms.package import MANIFEST

    signature = private_key.sign((package_root / MANIFEST).read_bytes())
    target = package_root / SIGNATURE
    target.write_text(base64.b64encode(signature).decode("ascii") + "\n", encoding="ascii")
    return target


def verify_signature(
    manifest: Path, data: bytes, trust: TrustPolicy, where: str, *, builtin: bool = False
) -> str | None:
    """The fingerprint of the trusted key that signed ``data``; None when unsigned and
    that is allowed. Raises ``PackageError`` for a bad signature, an untrusted signer, or
    an unsigned package where only signed ones are accepted."""
    from cryptography.exceptions import InvalidSignature

    from aifi_app.algorithms.package import PackageError

    sig_path = manifest.parent / SIGNATURE
    if not sig_path.is_file():
        if trust.signed_only and not builtin:
            raise PackageError(
                f"{where}: not signed, and this appliance accepts signed packages only"
                " (algorithms.signed_packages_only)"
            )
        return None
    try:
        signature = base64.b64decode(sig_path.read_text("ascii").strip(), validate=True)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise PackageError(f"{where}: {SIGNATURE} is not a base64 signature") from exc
    for text in trust.trusted_keys:
        try:
            parse_public_key(text).verify(signature, data)
        except (InvalidSignature, SignatureError):
            continue
        return fingerprint(text)
    if not trust.trusted_keys:
        raise PackageError(
            f"{where}: signed, but no vendor key is trusted (algorithms.trusted_vendor_keys)"
        )
    raise PackageError(
        f"{where}: the signature does not verify with any trusted vendor key"
        " (altered after signing, or signed by an unknown vendor)"
    )
