"""Pre-made pseudonymised files: the cache that the background pre-pseudonymiser fills
while a study is still arriving, and that a job's pseudonymisation step takes from.

A pre-made file is the exact file the job's step would write for one received instance
with one set of pseudonymisation options (keyed pseudonyms and derived UIDs make it so),
so a job links it into its work folder instead of pseudonymising the instance again.
It is only a cache: a file is used when its row in ``premade_files`` names the same
instance, the same received copy of it (``received_at``: a resent instance is made
again) and the same options key, and its file is there; anything else is pseudonymised
at job time as before.

Files lie in ``premade/<study id>/<options key>/<instance id>.dcm`` under the data
folder: numbers and a keyed hash only, never a UID or a name. Each is written under a
temporary name, flushed to disk and then renamed, and its row is committed only after
that, so a committed row never names a torn file, and a file that is made again replaces
the old one's name without touching a copy a job has already linked.

The rows also carry the pseudonym mappings (kind, original, pseudonym) the file made,
which the job records in ``pseudonyms`` when it uses the file; they are removed with
the files once the study has left ``receiving``/``complete`` and no job of it waits to
be pseudonymised (a study that got no route included).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset

from aifi_app import __version__
from aifi_app.pseudonymise import BurnedInPolicy, ProfileOption
from aifi_app.store.database import Database

log = logging.getLogger(__name__)

PREMADE_DIR = "premade"
MADE = "made"
"""Outcome of a pre-made file that can be used."""
REFUSED = "refused"
"""The pseudonymiser refused the instance (burned-in text) or failed: the job's own step
meets the same refusal and reports it."""
NO_ROUTE = "none"
"""No route is expected to take the instance's series: nothing was made (key '')."""

Mapping = tuple[str, str, str]


def options_key(secret: bytes, options: frozenset[ProfileOption], burned_in: BurnedInPolicy) -> str:
    """A short keyed name for what decides a pseudonymised file's bytes besides its source:
    the secret, the options, the burned-in policy and this software's version."""
    text = "|".join([__version__, burned_in.value, *sorted(o.name for o in options)])
    return hmac.new(secret, b"premade|" + text.encode(), hashlib.sha256).hexdigest()[:16]


def study_dir(data_dir: Path, study_id: int) -> Path:
    return data_dir / PREMADE_DIR / str(study_id)


def premade_file(data_dir: Path, study_id: int, key: str, instance_id: int) -> Path:
    return study_dir(data_dir, study_id) / key / f"{instance_id}.dcm"


@dataclass(frozen=True)
class SourceInstance:
    """A received instance as the queue knows it."""

    instance_id: int
    study_id: int
    path: Path
    received_at: float


@dataclass(frozen=True)
class Premade:
    path: Path
    mappings: tuple[Mapping, ...]


def lookup(
    db: Database, data_dir: Path, sources: Sequence[SourceInstance], key: str
) -> dict[int, Premade]:
    """The usable pre-made files of ``sources`` for the options ``key``, by instance id."""
    if not sources:
        return {}
    wanted = {s.instance_id: s for s in sources}
    found: dict[int, Premade] = {}
    rows = db.query(
        "SELECT instance_id, study_id, received_at, mappings FROM premade_files"
        " WHERE options_key = ? AND outcome = ?"
        " AND instance_id IN (SELECT value FROM json_each(?))",
        (key, MADE, json.dumps(list(wanted))),
    )
    for row in rows:
        source = wanted[int(row["instance_id"])]
        if float(row["received_at"]) != source.received_at:
            continue  # made from an earlier copy of a resent instance
        path = premade_file(data_dir, int(row["study_id"]), key, source.instance_id)
        if path.is_file():
            mappings = tuple((str(k), str(o), str(p)) for k, o, p in json.loads(row["mappings"]))
            found[source.instance_id] = Premade(path, mappings)
    return found


def link_into(premade: Path, target: Path) -> None:
    """Put the pre-made file at ``target`` (a hard link; a copy where links fail). The
    file is already on disk; the caller makes the folder entry durable."""
    try:
        os.link(premade, target)
    except OSError:
        shutil.copyfile(premade, target)


def removable_studies(db: Database) -> list[int]:
    """Studies whose pre-made files no job will take any more."""
    rows = db.query(
        "SELECT DISTINCT p.study_id FROM premade_files p JOIN studies s ON s.id = p.study_id"
        " WHERE s.state NOT IN ('receiving', 'complete') AND NOT EXISTS"
        " (SELECT 1 FROM jobs j WHERE j.study_id = s.id AND j.state = 'queued')"
    )
    return [int(r["study_id"]) for r in rows]


def remove_study(db: Database, data_dir: Path, study_id: int) -> None:
    """Remove a study's pre-made files and their rows (files first: a crash in between
    leaves rows whose files are gone, which are never used and removed next time)."""
    shutil.rmtree(study_dir(data_dir, study_id), ignore_errors=True)
    with db.transaction() as conn:
        conn.execute("DELETE FROM premade_files WHERE study_id = ?", (study_id,))


def stray_folders(db: Database, data_dir: Path) -> list[int]:
    """Study folders under ``premade/`` that no job will take (e.g. files made just before
    a crash, whose rows were never committed, of a study finished since)."""
    root = data_dir / PREMADE_DIR
    if not root.is_dir():
        return []
    stray = []
    for entry in root.iterdir():
        if not entry.name.isdigit():
            continue
        study_id = int(entry.name)
        row = db.query(
            "SELECT 1 FROM studies s WHERE s.id = ? AND (s.state IN ('receiving', 'complete')"
            " OR EXISTS (SELECT 1 FROM jobs j WHERE j.study_id = s.id AND j.state = 'queued'))",
            (study_id,),
        )
        if not row:
            stray.append(study_id)
    return stray


def cache_bytes(db: Database) -> int:
    """Bytes the pre-made files take now (as recorded)."""
    row = db.query("SELECT COALESCE(SUM(size), 0) AS n FROM premade_files")
    return int(row[0]["n"])


class SelectionHeaders:
    """The selection headers (a few tags, read while pre-making) of received instances,
    kept in memory so that a job's image selection need not read hundreds of files again.
    Keyed by (instance id, received at); never written anywhere. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_instance: dict[tuple[int, float], tuple[int, Dataset]] = {}

    def put(self, source: SourceInstance, header: Dataset) -> None:
        with self._lock:
            self._by_instance[(source.instance_id, source.received_at)] = (
                source.study_id,
                header,
            )

    def get(self, instance_id: int, received_at: float) -> Dataset | None:
        with self._lock:
            found = self._by_instance.get((instance_id, received_at))
        return None if found is None else found[1]

    def forget_studies(self, study_ids: Iterable[int]) -> None:
        drop = set(study_ids)
        if not drop:
            return
        with self._lock:
            self._by_instance = {k: v for k, v in self._by_instance.items() if v[0] not in drop}
