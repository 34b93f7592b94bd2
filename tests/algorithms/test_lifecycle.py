"""Installing, updating, removing, enabling and disabling packages; the service's catalogue
follows through the generation counter."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aifi_app.algorithms import lifecycle
from aifi_app.algorithms.package import PackageError
from aifi_app.algorithms.signing import TrustPolicy, public_key_text
from aifi_app.cli import main
from aifi_app.store import algorithm_state
from aifi_app.store.database import Database
from tests.helpers.packages import make_package, zip_package

BUILTIN = {"pneumonia-cxr", "ct-lung-volume"}
KEY = Ed25519PrivateKey.from_private_bytes(b"\x03" * 32)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "data" / "db.sqlite3")
    yield database
    database.close()


def _catalog(
    db: Database, data: Path, trust: TrustPolicy | None = None
) -> lifecycle.PackageCatalog:
    return lifecycle.PackageCatalog(db, data, (), trust or TrustPolicy())


@pytest.mark.parametrize("top_folder", [False, True])
def test_install_from_zip_then_update_then_remove(
    tmp_path: Path, db: Database, top_folder: bool
) -> None:
    data = tmp_path / "data"
    catalog = _catalog(db, data)
    assert set(catalog.enabled()) == BUILTIN
    archive = zip_package(make_package(tmp_path / "v2"), tmp_path / "v2.zip", top_folder=top_folder)
    package, previous = lifecycle.install(archive, data, db, TrustPolicy())
    assert (package.identity.version, previous) == ("2.0.0", None)
    assert catalog.refresh()
    assert set(catalog.enabled()) == {*BUILTIN, "vendor-cxr"}
    assert not catalog.refresh()  # nothing changed since

    newer = make_package(tmp_path / "v3", version="3.0.0")
    package, previous = lifecycle.install(newer, data, db, TrustPolicy())
    assert (package.identity.version, previous) == ("3.0.0", "2.0.0")
    assert catalog.refresh()
    assert catalog.enabled()["vendor-cxr"].identity.version == "3.0.0"
    assert not list((data / "algorithms" / ".staging").iterdir())

    lifecycle.remove("vendor-cxr", data, db)
    assert catalog.refresh()
    assert set(catalog.enabled()) == BUILTIN
    events = [r["event"] for r in db.query("SELECT event FROM audit_events ORDER BY id")]
    assert events == ["installed", "installed", "removed"]


def test_refused_package_changes_nothing(tmp_path: Path, db: Database) -> None:
    data = tmp_path / "data"
    lifecycle.install(make_package(tmp_path / "good"), data, db, TrustPolicy())
    bad = make_package(tmp_path / "bad", version="9.0.0")
    (bad / "model.onnx").write_bytes(b"tampered")
    before = algorithm_state.generation(db)
    with pytest.raises(PackageError, match="does not match its SHA-256"):
        lifecycle.install(bad, data, db, TrustPolicy())
    assert algorithm_state.generation(db) == before
    assert _catalog(db, data).enabled()["vendor-cxr"].identity.version == "2.0.0"


def test_archive_members_that_leave_the_package_are_refused(tmp_path: Path, db: Database) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("manifest.toml", "id = 'x'\n")
        zf.writestr("../../escape.txt", "x")
    with pytest.raises(PackageError, match="leaves it"):
        lifecycle.install(archive, tmp_path / "data", db, TrustPolicy())
    assert not (tmp_path / "escape.txt").exists()
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(PackageError, match="not a zip archive"):
        lifecycle.install(tmp_path / "junk.zip", tmp_path / "data", db, TrustPolicy())


def test_signed_only_install(tmp_path: Path, db: Database) -> None:
    trust = TrustPolicy(trusted_keys=(public_key_text(KEY.public_key()),), signed_only=True)
    with pytest.raises(PackageError, match="signed packages only"):
        lifecycle.install(make_package(tmp_path / "u"), tmp_path / "data", db, trust)
    package, _ = lifecycle.install(
        make_package(tmp_path / "s", key=KEY), tmp_path / "data", db, trust
    )
    assert package.signed_by


def test_disable_and_enable(tmp_path: Path, db: Database) -> None:
    catalog = _catalog(db, tmp_path / "data")
    algorithm_state.set_enabled(db, "pneumonia-cxr", False, actor="test")
    assert catalog.refresh()
    assert set(catalog.enabled()) == BUILTIN - {"pneumonia-cxr"}
    assert "pneumonia-cxr" in catalog.known_ids()
    algorithm_state.set_enabled(db, "pneumonia-cxr", True, actor="test")
    assert catalog.refresh()
    assert set(catalog.enabled()) == BUILTIN


def test_builtin_cannot_be_removed(tmp_path: Path, db: Database) -> None:
    with pytest.raises(PackageError, match="built in; disable it"):
        lifecycle.remove("pneumonia-cxr", tmp_path / "data", db)
    with pytest.raises(PackageError, match="no installed algorithm package nothing"):
        lifecycle.remove("nothing", tmp_path / "data", db)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "aifi.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    archive = zip_package(make_package(tmp_path / "p"), tmp_path / "p.zip")
    assert main(["algorithms", "install", str(archive), "--config", str(config)]) == 0
    assert "vendor-cxr installed 2.0.0 (Example Vendor B.V.; unsigned)" in capsys.readouterr().out
    assert main(["algorithms", "disable", "vendor-cxr", "--config", str(config)]) == 0
    assert main(["algorithms", "list", "--config", str(config)]) == 0
    listing = capsys.readouterr().out
    assert "vendor-cxr" in listing and "disabled" in listing and "built-in" in listing
    assert main(["algorithms", "enable", "nothing", "--config", str(config)]) == 1
    assert "no usable algorithm package nothing" in capsys.readouterr().err
    assert main(["algorithms", "remove", "vendor-cxr", "--config", str(config)]) == 0
    assert main(["algorithms", "list", "--json", "--config", str(config)]) == 0
    assert '"vendor-cxr"' not in capsys.readouterr().out
