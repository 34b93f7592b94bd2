"""Pre-made pseudonymised files: the cache that the background pre-pseudonymiser fills
while a study is still arriving, and that a job's pseudonymisation step takes from.

A pre-made file is the exact file the job's step would write for one received instance
with one set of pseudonymisation options (keyed pseudonyms and derived UIDs make it so),
so a job links it into its work folder instead of pseudonymising the instance again.
It is only a cache, kept for the life of the service process: the index is in memory
(:class:`PremadeIndex`), and the folder is emptied at every start, so files made before
a crash or power cut (not flushed to disk, possibly torn) are never used; the study's
instances are made again, or pseudonymised by the job. An entry is used when it names
the same instance, the same received copy of it (``received_at``: a resent instance is
made again) and the same options key, and its file is there.

The cache writes nothing to the queue database: a write transaction from this side
while a study arrives made the DICOM node's own commits wait for the lock (SQLite's
busy handler sleeps in steps of up to 100 ms), long enough for a 0.1 s idle timer to
split a CT in two.

Files lie in ``premade/<study id>/<options key>/<instance id>.dcm`` under the data
folder: numbers and a keyed hash only, never a UID or a name. Each is written under a
temporary name and then renamed, so a file that is made again replaces the old one's
name without touching a copy a job has already linked. The entries also carry the
pseudonym mappings (kind, original, pseudonym) each file made, which the job records in
``pseudonyms`` when it uses the file. Files and entries are removed once the study has
left ``receiving``/``complete`` and no job of it waits to be pseudonymised (a study that
got no route included).
"""

from __future__ import annotations

import hashlib
import hmac
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


@dataclass(frozen=True)
class Entry:
    """What the pre-pseudonymiser did with one instance for one options key."""

    study_id: int
    received_at: float
    outcome: str
    size: int
    mappings: tuple[Mapping, ...]


def link_into(premade: Path, target: Path) -> None:
    """Put the pre-made file at ``target`` (a hard link; a copy where links fail). The
    caller makes the file and its folder entry durable. Raises OSError when the pre-made
    file is gone."""
    try:
        os.link(premade, target)
    except FileNotFoundError:
        raise
    except OSError:
        shutil.copyfile(premade, target)


def removable_studies(db: Database, study_ids: Iterable[int]) -> list[int]:
    """Those of ``study_ids`` whose pre-made files no job will take any more (read only)."""
    out = []
    for study_id in study_ids:
        keep = db.query(
            "SELECT 1 FROM studies s WHERE s.id = ? AND (s.state IN ('receiving', 'complete')"
            " OR EXISTS (SELECT 1 FROM jobs j WHERE j.study_id = s.id AND j.state = 'queued'))",
            (study_id,),
        )
        if not keep:
            out.append(study_id)
    return out


class PremadeIndex:
    """The cache's index, in memory: (instance id, options key) -> :class:`Entry`, and
    the files under ``data_dir/premade``. Thread-safe (the pre-pseudonymiser fills it,
    the worker's job step reads it)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, str], Entry] = {}
        self._done: dict[int, tuple[int, float, Dataset | None]] = {}
        """instance id -> (study id, received_at of the copy handled for every key of its
        plan, its selection tags as read then)."""

    def purge(self) -> None:
        """Remove every file and entry (at start: files of an earlier run are not used)."""
        with self._lock:
            self._entries.clear()
            self._done.clear()
        shutil.rmtree(self.data_dir / PREMADE_DIR, ignore_errors=True)

    def handled(self, instance_id: int, received_at: float) -> bool:
        with self._lock:
            done = self._done.get(instance_id)
        return done is not None and done[1] == received_at

    def put(
        self, source: SourceInstance, header: Dataset | None, entries: dict[str, Entry]
    ) -> None:
        """Record what was done for one received copy of an instance, per options key, and
        its selection tags (``header``: None when they could not be read)."""
        with self._lock:
            for key, entry in entries.items():
                self._entries[(source.instance_id, key)] = entry
            self._done[source.instance_id] = (source.study_id, source.received_at, header)

    def lookup(self, sources: Sequence[SourceInstance], key: str) -> dict[int, Premade]:
        """The usable pre-made files of ``sources`` for the options ``key``, by instance id."""
        found: dict[int, Premade] = {}
        with self._lock:
            entries = [(s, self._entries.get((s.instance_id, key))) for s in sources]
        for source, entry in entries:
            if entry is None or entry.outcome != MADE:
                continue
            if entry.received_at != source.received_at:
                continue  # made from an earlier copy of a resent instance
            path = premade_file(self.data_dir, entry.study_id, key, source.instance_id)
            if path.is_file():
                found[source.instance_id] = Premade(path, entry.mappings)
        return found

    def header(self, instance_id: int, received_at: float) -> Dataset | None:
        """The selection tags read while pre-making this copy of the instance, if any."""
        with self._lock:
            done = self._done.get(instance_id)
        return done[2] if done is not None and done[1] == received_at else None

    def studies(self) -> set[int]:
        with self._lock:
            return {study_id for study_id, _, _ in self._done.values()}

    def remove_study(self, study_id: int) -> None:
        """Forget a study's entries and remove its files."""
        with self._lock:
            for k in [k for k, e in self._entries.items() if e.study_id == study_id]:
                del self._entries[k]
            for i in [i for i, d in self._done.items() if d[0] == study_id]:
                del self._done[i]
        shutil.rmtree(study_dir(self.data_dir, study_id), ignore_errors=True)

    def stats(self) -> tuple[int, int]:
        """(files, bytes) the cache holds now."""
        with self._lock:
            made = [e for e in self._entries.values() if e.outcome == MADE]
        return len(made), sum(e.size for e in made)
