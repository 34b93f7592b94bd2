"""TLS contexts for DICOM links (PS3.15 Annex B, the BCP 195 profiles): TLS 1.2 or newer.

Our side of a link is identified by one certificate and private key (the node's
``tls_certificate_file`` and ``tls_key_file``), used both by our listener and as the
client certificate of our outgoing associations. Peers are verified against a CA file
(or the system's trust store when none is given). A private key's passphrase, if it has
one, lives in the OS keyring under :data:`KEY_PASSPHRASE_SECRET`, never in a file.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from aifi_app import secrets

KEY_PASSPHRASE_SECRET = "tls-key-passphrase"  # noqa: S105 (a keyring entry's name)
"""Keyring entry (service ``aifi-appliance``) holding the private key's passphrase, if any."""


class TlsConfigError(ValueError):
    """A certificate, key or CA file cannot be used; the message names which and why."""


@dataclass(frozen=True)
class TlsIdentity:
    """Our certificate (chain) and private key, PEM files."""

    certificate_file: Path
    key_file: Path


def _passphrase() -> str:
    """Asked for only when the key is encrypted; '' (no passphrase) makes the load fail."""
    return secrets.get_secret(KEY_PASSPHRASE_SECRET) or ""


def _load_identity(context: ssl.SSLContext, identity: TlsIdentity) -> None:
    for what, path in (("certificate", identity.certificate_file), ("key", identity.key_file)):
        if not path.is_file():
            raise TlsConfigError(f"TLS {what} file {path} does not exist")
    try:
        context.load_cert_chain(identity.certificate_file, identity.key_file, _passphrase)
    except OSError as exc:  # ssl.SSLError; OpenSSL reports a wrong passphrase as ENOENT
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise TlsConfigError(
            f"TLS certificate {identity.certificate_file} and key {identity.key_file} cannot "
            f"be used ({reason}); a key with a passphrase needs it "
            f"in the OS keyring as {KEY_PASSPHRASE_SECRET!r}"
        ) from exc


def _load_ca(context: ssl.SSLContext, ca_file: Path | None) -> None:
    if ca_file is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        return
    if not ca_file.is_file():
        raise TlsConfigError(f"TLS CA file {ca_file} does not exist")
    try:
        context.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as exc:
        raise TlsConfigError(f"TLS CA file {ca_file} cannot be read ({exc.reason})") from exc


def _harden(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    return context


def server_context(
    identity: TlsIdentity, *, ca_file: Path | None, require_client_certificate: bool
) -> ssl.SSLContext:
    """The listener's context: our certificate; clients verified against ``ca_file``.

    With ``require_client_certificate`` a client without a certificate that ``ca_file``
    (the system store when None) verifies is refused during the handshake; without it a
    client certificate is optional but still verified when one is sent.
    """
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    _load_identity(context, identity)
    if require_client_certificate or ca_file is not None:
        _load_ca(context, ca_file)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_certificate else ssl.CERT_OPTIONAL
    return context


def client_context(
    *, ca_file: Path | None, identity: TlsIdentity | None, check_hostname: bool = True
) -> ssl.SSLContext:
    """An outgoing link's context: the peer's certificate verified (and its host name).

    ``identity``, when given, is sent as our client certificate.
    """
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    context.check_hostname = check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    _load_ca(context, ca_file)
    if identity is not None:
        _load_identity(context, identity)
    return context


def describe_tls_error(exc: BaseException) -> str:
    """Why a handshake failed, in words, from the error's reason code (never peer data)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").lower()
        if reason in ("wrong_version_number", "http_request", "unknown_protocol"):
            return "the client does not speak TLS (plain TCP to the TLS port)"
        if "peer_did_not_return_a_certificate" in reason:
            return "the client sent no certificate, and one is required"
        if "certificate_required" in reason:
            return "the peer requires our client certificate (none configured or not accepted)"
        if "alert" in reason:
            return f"the peer refused our certificate or the connection ({exc.reason})"
        return f"TLS error ({exc.reason or type(exc).__name__})"
    if isinstance(exc, TimeoutError):
        return "no TLS handshake within the network timeout"
    if isinstance(exc, ConnectionError):
        return f"connection closed during the TLS handshake ({type(exc).__name__})"
    return f"TLS handshake failed ({type(exc).__name__})"


def peer_certificate_subject(sock: ssl.SSLSocket) -> str:
    """The verified peer certificate's common name, or '' when the peer sent none."""
    cert = sock.getpeercert()
    if not cert:
        return ""
    subject = cast("tuple[tuple[tuple[str, str], ...], ...]", cert.get("subject", ()))
    for rdn in subject:
        for key, value in rdn:
            if key == "commonName":
                return value
    return ""
