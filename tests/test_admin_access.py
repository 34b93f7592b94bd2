"""The administrator passphrase: hashed into the OS keyring, checked by the core, audited."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyrings.alt.file import PlaintextKeyring

from aifi_app import admin_access, cli
from aifi_app.service import open_database
from aifi_app.store.database import Database


@pytest.fixture
def file_keyring(tmp_path: Path) -> Iterator[PlaintextKeyring]:
    """A file keyring in tmp_path (tests only; a real machine uses the OS keyring)."""
    before = keyring.get_keyring()
    ring = PlaintextKeyring()
    ring.file_path = str(tmp_path / "keyring.cfg")  # type: ignore[misc]
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(before)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _events(db: Database) -> list[tuple[str, str, str]]:
    return [
        (r[0], r[1], r[2])
        for r in db.conn.execute(
            "SELECT event, actor, detail FROM audit_events WHERE category = 'access' ORDER BY id"
        )
    ]


def test_hash_is_salted_and_verifies() -> None:
    one = admin_access.hash_passphrase("correct horse battery")
    two = admin_access.hash_passphrase("correct horse battery")
    assert one != two and "correct" not in one
    assert one.startswith("scrypt$")
    assert admin_access.verify_passphrase("correct horse battery", one)
    assert not admin_access.verify_passphrase("correct horse batterY", one)
    assert not admin_access.verify_passphrase("x", "garbage")


def test_cli_sets_the_hash_in_the_keyring_and_the_gui_check_uses_it(
    file_keyring: PlaintextKeyring, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["admin", "set-passphrase", "--stdin", "--data-dir", str(data)]) == 1
    assert not admin_access.passphrase_is_set()
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough passphrase\n"))
    assert cli.main(["admin", "set-passphrase", "--stdin", "--data-dir", str(data)]) == 0
    stored = file_keyring.get_password("aifi-appliance", admin_access.SECRET_NAME)
    assert stored is not None and "long enough" not in stored
    assert "long enough" not in Path(file_keyring.file_path).read_text()
    db = open_database(data)
    try:
        session = admin_access.AdminSession(db)
        assert not session.unlock("wrong passphrase!", actor="gui:anna")
        assert session.actor is None
        assert session.unlock("long enough passphrase", actor="gui:anna")
        assert session.require() == "gui:anna"
        events = _events(db)
        assert [e[0] for e in events] == [
            "admin_passphrase_set",
            "admin_unlock_refused",
            "admin_unlocked",
        ]
    finally:
        db.close()


def test_session_locks_when_idle_and_audits_it(tmp_path: Path) -> None:
    db = Database(tmp_path / "queue.db")
    clock = Clock()
    stored = admin_access.hash_passphrase("application manager")
    session = admin_access.AdminSession(db, idle_seconds=300, read=lambda: stored, clock=clock)
    with pytest.raises(PermissionError):
        session.require()
    assert session.unlock("application manager", actor="gui:piet")
    clock.now += 200
    session.touch()  # someone used the window
    clock.now += 200
    assert session.unlocked  # 200 s since the last use
    clock.now += 100
    assert not session.unlocked
    with pytest.raises(PermissionError):
        session.require()
    assert _events(db)[-1] == ("admin_locked", "gui:piet", "no activity for 300 s")
    assert session.unlock("application manager", actor="gui:piet")
    session.lock()
    assert _events(db)[-1] == ("admin_locked", "gui:piet", "locked by hand")
    db.close()


def test_no_passphrase_set_up_says_how(tmp_path: Path) -> None:
    db = Database(tmp_path / "queue.db")
    session = admin_access.AdminSession(db, read=lambda: None)
    with pytest.raises(admin_access.NoPassphraseError, match="aifi-app admin set-passphrase"):
        session.unlock("anything at all", actor="gui")
    db.close()
