"""Deterministic UIDs for the objects the appliance creates.

A result object's UIDs are derived (HMAC with the installation secret) from what it is the
result of, so that rebuilding it after a crash gives the same UIDs and a resend is
idempotent at the PACS: the study never holds two copies of one result.
"""

from __future__ import annotations

import hashlib
import hmac


def derived_uid(secret: bytes, *parts: str) -> str:
    """A ``2.25.<integer>`` UID (PS3.5 B.2) from the keyed hash of ``parts``."""
    digest = hmac.new(secret, "\x1f".join(("result-uid", *parts)).encode(), hashlib.sha256)
    return f"2.25.{int.from_bytes(digest.digest()[:16], 'big')}"
