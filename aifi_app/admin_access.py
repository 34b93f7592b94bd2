"""Who may change the configuration: the administrator passphrase and the unlocked session.

MBB'ers use the queue (retry, cancel, process now) without signing in. Changing nodes or
algorithms needs the application manager's passphrase. Only a salted scrypt hash of it is
kept, in the OS keyring (:mod:`aifi_app.secrets`), never the passphrase and never in a
file or the database. It is set with ``aifi-app admin set-passphrase``.

:class:`AdminSession` is the check the desktop client asks (it holds no Qt): an unlock
with the right passphrase lasts until it is locked or until nobody touched the
application for ``idle_seconds``. Every unlock, refused unlock and lock goes into the
audit log with who and when.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _random
import time
from collections.abc import Callable

from aifi_app import secrets
from aifi_app.store import audit
from aifi_app.store.database import Database

SECRET_NAME = "admin-passphrase-hash"  # noqa: S105 - the keyring entry's name, not a secret
MIN_LENGTH = 10
IDLE_LOCK_SECONDS = 300.0
"""An unlocked session locks itself after this long without keyboard or mouse use."""

# scrypt cost: 2**14 x 8 x 1 takes about 50 ms and 16 MiB here (RFC 7914's interactive level)
_N, _R, _P = 2**14, 8, 1

Read = Callable[[], str | None]
Write = Callable[[str], None]


class PassphraseError(ValueError):
    """The passphrase cannot be used (too short)."""


class NoPassphraseError(RuntimeError):
    """No administrator passphrase was set up on this machine."""


def hash_passphrase(passphrase: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64), with a fresh 16-byte salt."""
    salt = _random.token_bytes(16)
    digest = hashlib.scrypt(passphrase.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_passphrase(passphrase: str, stored: str) -> bool:
    """Whether ``passphrase`` matches a :func:`hash_passphrase` value (constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            passphrase.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


def _read_keyring() -> str | None:
    return secrets.get_secret(SECRET_NAME)


def _write_keyring(value: str) -> None:
    secrets.set_secret(SECRET_NAME, value)


def set_passphrase(
    passphrase: str,
    *,
    db: Database | None = None,
    actor: str = "cli",
    write: Write = _write_keyring,
) -> None:
    """Store the hash of a new administrator passphrase (audited when ``db`` is given)."""
    if len(passphrase) < MIN_LENGTH:
        raise PassphraseError(f"the passphrase needs at least {MIN_LENGTH} characters")
    write(hash_passphrase(passphrase))
    if db is not None:
        with db.transaction() as conn:
            audit.record(
                conn, "access", "admin_passphrase_set", detail="passphrase changed", actor=actor
            )


def passphrase_is_set(read: Read = _read_keyring) -> bool:
    return bool(read())


class AdminSession:
    """The application manager's unlock, as the GUI asks it. Not thread-bound: the GUI
    runs :meth:`unlock` (scrypt, ~50 ms) on a worker thread."""

    def __init__(
        self,
        db: Database,
        *,
        idle_seconds: float = IDLE_LOCK_SECONDS,
        read: Read = _read_keyring,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._idle = idle_seconds
        self._read = read
        self._clock = clock
        self._unlocked_by: str | None = None
        self._last_use = 0.0

    def unlock(self, passphrase: str, actor: str) -> bool:
        """True and unlocked when the passphrase is right; audited either way."""
        stored = self._read()
        if not stored:
            raise NoPassphraseError(
                "no administrator passphrase is set up: run 'aifi-app admin set-passphrase'"
            )
        ok = verify_passphrase(passphrase, stored)
        with self._db.transaction() as conn:
            audit.record(
                conn,
                "access",
                "admin_unlocked" if ok else "admin_unlock_refused",
                detail="" if ok else "wrong passphrase",
                actor=actor,
            )
        if ok:
            self._unlocked_by = actor
            self._last_use = self._clock()
        return ok

    def lock(self, reason: str = "locked by hand") -> None:
        if self._unlocked_by is None:
            return
        actor, self._unlocked_by = self._unlocked_by, None
        with self._db.transaction() as conn:
            audit.record(conn, "access", "admin_locked", detail=reason, actor=actor)

    def touch(self) -> None:
        """Someone used the application: the idle clock starts again."""
        if self._unlocked_by is not None:
            self._last_use = self._clock()

    def check_idle(self) -> bool:
        """Lock when idle too long; returns whether the session is (still) unlocked."""
        if self._unlocked_by is not None and self._clock() - self._last_use >= self._idle:
            self.lock(f"no activity for {self._idle:.0f} s")
        return self._unlocked_by is not None

    @property
    def unlocked(self) -> bool:
        return self.check_idle()

    @property
    def holder(self) -> str | None:
        """Who holds the unlock, without the idle check (which may write the audit log)."""
        return self._unlocked_by

    @property
    def actor(self) -> str | None:
        """Who unlocked (for the audit log of configuration changes), or None."""
        return self._unlocked_by if self.unlocked else None

    def require(self) -> str:
        """The unlocking actor; raises PermissionError when locked."""
        actor = self.actor
        if actor is None:
            raise PermissionError("configuration changes need the administrator passphrase")
        return actor
