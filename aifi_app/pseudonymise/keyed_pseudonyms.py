"""Keyed (HMAC-SHA256) pseudonyms: stable per installation secret, unlinkable without it.

Every function here is deterministic in (secret, input) and reveals nothing about the input
to anyone without the secret. UIDs are keyed on the UID itself, exactly as the brief for
re-identification requires (HMAC-SHA256(secret, UID)); the other kinds put their kind name
and a NUL byte in front of the value, so that equal strings of different kinds (a Patient ID
equal to an Accession Number) still get unrelated pseudonyms.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

UID_ROOT: Final = "2.25."
"""UUID-derived UID root (PS3.5 B.2): 2.25.<decimal of a 128-bit integer>, at most 44 chars."""

TEXT_PREFIX: Final = "AIFI"
LONG_TEXT_LENGTH: Final = 21
"""Length of a text pseudonym where the VR allows it: "AIFI-" and 16 base32 characters."""

MIN_OFFSET_DAYS: Final = 365
MAX_OFFSET_DAYS: Final = 3650


def _digest(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()


def uid_pseudonym(secret: bytes, original_uid: str) -> str:
    """Return ``2.25.<int>``, int being the first 16 bytes of HMAC-SHA256(secret, UID).

    Promises a valid UID of at most 44 characters, the same for the same (secret, UID).
    """
    number = int.from_bytes(_digest(secret, original_uid.encode("utf-8"))[:16], "big")
    return f"{UID_ROOT}{number}"


def text_pseudonym(secret: bytes, kind: str, original: str, max_length: int = 64) -> str:
    """Return an ASCII pseudonym for ``original`` of the given ``kind``, fitting ``max_length``.

    With room for it (LO, 64 characters) the form is "AIFI-" + 16 base32 characters (80 bits);
    for SH (16 characters) it is "AIFI" + 12 base32 characters (60 bits). The characters are
    A-Z, 2-7 and "-", valid in every text VR and every DICOM character set.
    """
    encoded = base64.b32encode(_digest(secret, kind.encode("ascii") + b"\0" + original.encode()))
    letters = encoded.decode("ascii")
    if max_length >= LONG_TEXT_LENGTH:
        return f"{TEXT_PREFIX}-{letters[:16]}"
    return f"{TEXT_PREFIX}{letters[: max_length - len(TEXT_PREFIX)]}"


def date_offset_days(secret: bytes, patient_key: str) -> int:
    """Return the patient's date shift in days, in [365, 3650], stable for (secret, patient)."""
    digest = _digest(secret, b"date_offset\0" + patient_key.encode("utf-8"))
    span = MAX_OFFSET_DAYS - MIN_OFFSET_DAYS + 1
    return MIN_OFFSET_DAYS + int.from_bytes(digest[:8], "big") % span
