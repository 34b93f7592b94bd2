"""Secrets in the OS keyring (Windows Credential Locker, Secret Service on Linux).

The installation secret keys every pseudonym: whoever holds it can link pseudonyms to
patients, so it never goes into the settings file, the database or a log.

keyring is imported when a secret is first read or written, not with this module: the
DICOM node's modules import this one, and the receiver processes forked from the fork
server (which imports those modules for them) never read a secret (keyring and what it
imports: 44 modules, 1.9 MB).
"""

from __future__ import annotations

import base64
import logging
import secrets as _random

log = logging.getLogger(__name__)

SERVICE = "aifi-appliance"
_PLAINTEXT_BACKENDS = ("PlaintextKeyring", "EncryptedKeyring", "Keyring")


class KeyringUnavailableError(RuntimeError):
    """No usable OS keyring: the appliance will not keep secrets anywhere else."""


def _check_backend() -> None:
    import keyring
    from keyring.backends import fail

    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        raise KeyringUnavailableError(
            "no OS keyring is available (Windows Credential Locker, or the Secret Service "
            "on Linux, e.g. gnome-keyring); the appliance does not store secrets in plain "
            "files. Start a keyring service, or choose a backend with PYTHON_KEYRING_BACKEND."
        )
    if type(backend).__name__ in _PLAINTEXT_BACKENDS and type(backend).__module__.startswith(
        "keyrings.alt"
    ):
        log.warning("keyring backend %s keeps secrets in a file: for tests only", backend)


def get_secret(name: str) -> str | None:
    """The secret stored under ``name``, or None."""
    import keyring.errors

    _check_backend()
    try:
        value: str | None = keyring.get_password(SERVICE, name)
    except keyring.errors.KeyringError as exc:
        raise KeyringUnavailableError(f"the OS keyring could not be read: {exc}") from exc
    return value


def set_secret(name: str, value: str) -> None:
    import keyring.errors

    _check_backend()
    try:
        keyring.set_password(SERVICE, name, value)
    except keyring.errors.KeyringError as exc:
        raise KeyringUnavailableError(f"the OS keyring could not be written: {exc}") from exc


def installation_secret(installation_id: str) -> bytes:
    """The 32-byte pseudonymisation key of this installation, made on first use."""
    name = f"pseudonymisation-key/{installation_id}"
    stored = get_secret(name)
    if stored is None:
        stored = base64.b64encode(_random.token_bytes(32)).decode("ascii")
        set_secret(name, stored)
        if get_secret(name) != stored:
            raise KeyringUnavailableError("the OS keyring did not keep the installation secret")
        log.info("created a new pseudonymisation key in the OS keyring")
    return base64.b64decode(stored)


def node_token_name(node_name: str) -> str:
    """Where the bearer token of remote node ``node_name`` is kept in the keyring."""
    return f"remote-node-token/{node_name}"


def node_token(node_name: str) -> str | None:
    """The bearer token of a remote node (DICOMweb or HTTP vendor), or None if it has none."""
    return get_secret(node_token_name(node_name))


def set_node_token(node_name: str, token: str) -> None:
    set_secret(node_token_name(node_name), token)
