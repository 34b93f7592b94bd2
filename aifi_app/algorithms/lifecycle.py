"""Installing, updating and removing algorithm packages, and the catalogue the service uses.

Installed packages live in ``<data_dir>/algorithms/<id>/``. An install unpacks and checks
the package in a staging folder on the same file system and only then moves it into
place, so a half-copied or refused package is never seen. Enabled state and a generation
counter live in the database (``store.algorithm_state``); the running service compares
the generation on each worker pass and reloads when it changed, so the CLI works while
the appliance runs.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aifi_app.algorithms.package import (
    MANIFEST,
    AlgorithmPackage,
    PackageError,
    builtin_package_dir,
    load_package,
    package_roots,
    read_manifest,
)
from aifi_app.algorithms.signing import TrustPolicy
from aifi_app.store import algorithm_state
from aifi_app.store.database import Database

log = logging.getLogger(__name__)

MAX_UNPACKED_BYTES = 8 << 30
"""An archive that unpacks to more than this is refused (a zip bomb, or not a package)."""


def installed_dir(data_dir: Path) -> Path:
    return data_dir / "algorithms"


def _unpack_zip(archive: Path, into: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            total = sum(m.file_size for m in members)
            if total > MAX_UNPACKED_BYTES:
                raise PackageError(f"{archive.name}: unpacks to {total} bytes, more than allowed")
            for member in members:
                name = PurePosixPath(member.filename)
                if name.is_absolute() or ".." in name.parts or "\\" in member.filename:
                    raise PackageError(f"{archive.name}: member {member.filename!r} leaves it")
                if (member.external_attr >> 16) & 0o170000 == 0o120000:
                    raise PackageError(f"{archive.name}: member {member.filename!r} is a link")
            zf.extractall(into)
    except zipfile.BadZipFile as exc:
        raise PackageError(f"{archive.name}: not a zip archive ({exc})") from exc


def _package_root(unpacked: Path, source: Path) -> Path:
    """The folder holding the manifest: the top, or the one folder at the top."""
    if (unpacked / MANIFEST).is_file():
        return unpacked
    entries = [p for p in unpacked.iterdir() if p.name != "__MACOSX"]
    if len(entries) == 1 and (entries[0] / MANIFEST).is_file():
        return entries[0]
    raise PackageError(f"{source.name}: no {MANIFEST} at the top of the package")


def install(
    source: Path, data_dir: Path, db: Database, trust: TrustPolicy, *, actor: str = "cli"
) -> tuple[AlgorithmPackage, str | None]:
    """Check and install (or update) the package in ``source`` (a folder or a .zip).

    Returns the installed package and the version it replaced (None if new). Raises
    :class:`PackageError` with the reason when the package is refused; nothing changes then.
    """
    base = installed_dir(data_dir)
    staging = base / ".staging" / uuid.uuid4().hex
    staging.mkdir(parents=True)
    try:
        if source.is_dir():
            shutil.copytree(source, staging / "package", symlinks=False)
            root = staging / "package"
        elif source.is_file():
            _unpack_zip(source, staging / "package")
            root = _package_root(staging / "package", source)
        else:
            raise PackageError(f"{source}: no such file or folder")
        checked = load_package(root, trust)
        package_id = checked.identity.algorithm_id
        target = base / package_id
        previous: str | None = None
        if target.exists():
            try:
                previous = str(read_manifest(target)[1].get("version", "(unknown)"))
            except PackageError:
                previous = "(unusable)"
            trash = base / ".trash" / uuid.uuid4().hex
            trash.parent.mkdir(parents=True, exist_ok=True)
            target.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
        root.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    package = load_package(target, trust)
    signed = f", signed by {package.signed_by}" if package.signed_by else ", unsigned"
    what = f"updated from {previous}" if previous else "installed"
    algorithm_state.record_installed(
        db,
        package_id,
        package.identity.version,
        f"{package_id} {package.identity.version} {what}{signed}",
        actor=actor,
    )
    log.info("algorithm %s %s %s", package_id, package.identity.version, what)
    return package, previous


def remove(algorithm_id: str, data_dir: Path, db: Database, *, actor: str = "cli") -> None:
    """Remove an installed package. Raises :class:`PackageError` when there is none (a
    built-in package cannot be removed; disable it instead)."""
    target = installed_dir(data_dir) / algorithm_id
    if not (target / MANIFEST).is_file() or algorithm_id.startswith("."):
        if any(r.name == algorithm_id for r in package_roots(builtin_package_dir())):
            raise PackageError(f"{algorithm_id} is built in; disable it instead of removing it")
        raise PackageError(f"no installed algorithm package {algorithm_id}")
    trash = installed_dir(data_dir) / ".trash" / uuid.uuid4().hex
    trash.parent.mkdir(parents=True, exist_ok=True)
    target.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)
    algorithm_state.record_removed(db, algorithm_id, actor=actor)


@dataclass(frozen=True)
class CatalogEntry:
    """One package folder as found: usable (``package``) or not (``error``)."""

    root: Path
    source: str
    """built-in, installed, or the configured directory it came from."""
    package: AlgorithmPackage | None
    error: str
    enabled: bool


class PackageCatalog:
    """Every package the appliance knows, and which are enabled. Thread-safe.

    ``enabled()`` is what the pipeline uses; ``refresh()`` reloads when another process
    changed packages (call it from the worker, once a pass).
    """

    def __init__(
        self, db: Database, data_dir: Path, extra_dirs: tuple[str, ...], trust: TrustPolicy
    ) -> None:
        self.db = db
        self.data_dir = data_dir
        self.extra_dirs = extra_dirs
        self.trust = trust
        self._lock = threading.Lock()
        self._generation = -1
        self._entries: list[CatalogEntry] = []
        self._enabled: dict[str, AlgorithmPackage] = {}
        self.refresh()

    def _bases(self) -> list[tuple[Path, str]]:
        return [
            (builtin_package_dir(), "built-in"),
            (installed_dir(self.data_dir), "installed"),
            *((Path(d), d) for d in self.extra_dirs),
        ]

    def scan(self) -> list[CatalogEntry]:
        """Load every package folder now (does not change what the service uses)."""
        disabled = algorithm_state.disabled_ids(self.db)
        entries = []
        for base, source in self._bases():
            for root in package_roots(base):
                try:
                    package = load_package(root, self.trust, builtin=source == "built-in")
                except PackageError as exc:
                    entries.append(CatalogEntry(root, source, None, str(exc), False))
                    continue
                enabled = package.identity.algorithm_id not in disabled
                entries.append(CatalogEntry(root, source, package, "", enabled))
        return entries

    def refresh(self) -> bool:
        """Reload if the generation changed; True when it did."""
        current = algorithm_state.generation(self.db)
        with self._lock:
            if current == self._generation:
                return False
        entries = self.scan()
        enabled: dict[str, AlgorithmPackage] = {}
        for entry in entries:  # a later directory overrides an earlier one's id
            if entry.package is not None:
                enabled.pop(entry.package.identity.algorithm_id, None)
                if entry.enabled:
                    enabled[entry.package.identity.algorithm_id] = entry.package
            else:
                log.error("%s", entry.error)
        with self._lock:
            self._generation = current
            self._entries = entries
            self._enabled = enabled
        log.info("algorithm packages (generation %d): %s", current, ", ".join(sorted(enabled)))
        return True

    def enabled(self) -> dict[str, AlgorithmPackage]:
        with self._lock:
            return dict(self._enabled)

    def known_ids(self) -> set[str]:
        with self._lock:
            return {e.package.identity.algorithm_id for e in self._entries if e.package}
