"""Pre-made pseudonymised files: the cache that the pre-pseudonymiser fills while a study
is still arriving (:mod:`aifi_app.pipeline.pre_pseudonymise`), and that a job's
pseudonymisation step takes from.

A pre-made file is the exact file the job's step would write for one received instance
with one set of pseudonymisation options (keyed pseudonyms and derived UIDs make it so),
so a job links it into its work folder instead of pseudonymising the instance again.
It is only a cache: the folder is emptied at every start of the service, so files made
before a crash or power cut (not flushed to disk, possibly torn) are never used; the
study's instances are made again, or pseudonymised by the job. An entry is used when it
names the same instance, the same received copy of it (``received_at``: a resent
instance is pseudonymised by the job) and the same options key, and its file is there.

The cache writes nothing to the queue database: a write transaction from the
pre-pseudonymiser while a study arrives would make the DICOM node's commits wait for
the lock. Its index is files instead, one per batch, written (under a temporary name,
then renamed) after the batch's files: ``premade/<study id>/index-<first id>.json``
(``index-<first id>-<n>.json`` for a batch stopped at its first instance, whose rest the
next batch indexes) holds per instance its received copy, its selection tags (for the job's image
selection) and per options key the outcome, the file's size and the pseudonym mappings
(kind, original, pseudonym) the file made, which the job records in ``pseudonyms`` when
it uses the file. ``premade/<study id>/busy`` exists while a batch is being made.

Files lie in ``premade/<study id>/<options key>/<instance id>.dcm`` under the data
folder: numbers and a keyed hash only, never a UID or a name (the index files hold
patient data, as the received files beside them do; they are removed with them). Each
file is written under a temporary name and then renamed, so a file that is made again
replaces the old one's name without touching a copy a job has already linked. Files and
index are removed once the study has left ``receiving``/``complete`` and no job of it
waits to be pseudonymised (a study that got no route included).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from pydicom import Dataset
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.jsonrep import JSON_VALUE_KEYS
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import FLOAT_VR, INT_VR, VR

from aifi_app import __version__
from aifi_app.pseudonymise import BurnedInPolicy, ProfileOption


class Reader(Protocol):
    def query(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]: ...


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


def busy_file(data_dir: Path, study_id: int) -> Path:
    return study_dir(data_dir, study_id) / "busy"


PRE_OWNER = "pre"
"""Who holds a claim taken by the pre-pseudonymiser (:func:`take`); a job's claims name
the job and its attempt."""


def take(data_dir: Path, study_id: int, key: str, instance_id: int, owner: str) -> str | None:
    """Take an instance for making it for the options ``key`` now: None for the first to
    ask, the holder's ``owner`` for every later one. The pre-pseudonymiser's process
    takes each instance before it makes it (:data:`PRE_OWNER`), while the study arrives
    and after, and a job takes each image it makes itself, so nothing is made twice;
    a job that meets the process's claim waits for what the process made, one that
    meets another job's (an earlier attempt's) makes the image itself.

    The claim is a hard link, named by the instance, to the owner's badge: a file in the
    claims folder that holds the owner's name (:func:`_badge`, made once per owner).
    A link makes no inode: on ext4 without a journal (the bench machine) each new inode
    costs ~1.2 ms of CPU (the allocator steps over the inodes freed in the last minutes),
    and a symbolic link per claim was half of the pre-pseudonymiser's time a CT slice.
    The link is made and named in one step, so a reader never sees a claim without its
    owner. Where hard links cannot be made (or the badge has as many as the file system
    allows) the claim is a symbolic link whose target is the owner, and where neither
    can be made (no child process runs there: Windows) an empty file whose owner is
    unknown (``""``)."""
    folder = study_dir(data_dir, study_id) / "claims" / key
    path = folder / str(instance_id)
    for _ in range(3):
        try:
            os.link(_badge(folder, owner), path)
        except FileNotFoundError:  # the first claim of this study and key, or of the owner
            _BADGES.discard((folder, owner))
            folder.mkdir(parents=True, exist_ok=True)
            continue
        except FileExistsError:
            return holder(path)
        except OSError:  # no hard links here
            return _take_by_symbolic_link(path, owner)
        return None
    raise FileNotFoundError(path)


def holder(claim: Path) -> str:
    """Who holds the claim at ``claim`` (see :func:`take`; ``""``: not known)."""
    try:
        return str(claim.readlink())
    except OSError:  # not a symbolic link: a hard link to its owner's badge, or empty
        pass
    try:
        return claim.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return ""


_BADGE_PREFIX: Final = "owner-"
_BADGES: set[tuple[Path, str]] = set()
"""The badges this process made (claims folder, owner)."""


def _badge(folder: Path, owner: str) -> Path:
    """The owner's badge in a claims folder (made when this process has not made it yet:
    written under a temporary name, then renamed, so that it always holds the name)."""
    badge = folder / f"{_BADGE_PREFIX}{owner}"
    if (folder, owner) not in _BADGES:
        if not badge.is_file():
            temporary = folder / f".{_BADGE_PREFIX}{owner}-{os.getpid()}.tmp"
            temporary.write_text(owner, encoding="utf-8")  # FileNotFoundError: no folder
            temporary.replace(badge)
        _BADGES.add((folder, owner))
    return badge


def _take_by_symbolic_link(path: Path, owner: str) -> str | None:
    """:func:`take` where hard links cannot be made."""
    try:
        path.symlink_to(owner)
    except FileExistsError:
        return holder(path)
    except OSError:  # no symbolic links either
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return holder(path)
    return None


def help_index(data_dir: Path, study_id: int, request: str) -> Path:
    """The index file a helping pass writes for its request (see :func:`write_index`)."""
    return study_dir(data_dir, study_id) / f"index-{request}.json"


def write_index(
    data_dir: Path, study_id: int, instances: list[dict[str, Any]], name: str | None = None
) -> None:
    """Write one batch's index file (after its files); see the module's description.
    ``name``: the file's name after ``index-`` (by default the first instance's id)."""
    path = study_dir(data_dir, study_id) / f"index-{name or instances[0]['id']}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"instances": instances}))
    temporary.replace(path)


def remove_study(data_dir: Path, study_id: int) -> None:
    shutil.rmtree(study_dir(data_dir, study_id), ignore_errors=True)


def remove_all(data_dir: Path) -> None:
    shutil.rmtree(data_dir / PREMADE_DIR, ignore_errors=True)


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


def removable_studies(db: Reader, study_ids: Iterable[int]) -> list[int]:
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


def header_from_json(header: dict[str, Any], elements: dict[str, DataElement]) -> Dataset:
    """``Dataset.from_json(header)``, each element made once per distinct JSON value
    (``elements``: the memo, by tag and value): the instances of a series share most of
    their selection tags, and a job of a 500-slice CT reads 500 headers (0.4 ms each by
    ``from_json``, a tenth of that here). The elements are shared: read only."""
    found: dict[BaseTag, DataElement | RawDataElement] = {}
    for tag, mapping in header.items():
        key = tag + repr(mapping)  # equal keys: equal JSON, the same element
        element = elements.get(key)
        if element is None:
            element = _element_from_json(tag, mapping)
            elements[key] = element
        found[element.tag] = element
    return Dataset(found)  # the elements by tag, as Dataset.add would keep them


_PLAIN_JSON_VRS: Final = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "SH", "SL", "SS", "TM", "UI"}
    | {"UL", "US"}
)
"""VRs whose JSON values (strings or numbers) ``DataElement.from_json`` takes as they are,
numbers made ``int`` or ``float`` by VR (see :func:`_element_from_json`)."""
_NUMBER_TYPES: Final[dict[str, type[int] | type[float]]] = {
    **{str(vr): int for vr in (INT_VR - {VR.AT}) | {VR.US_SS}},
    **{str(vr): float for vr in FLOAT_VR},
}
"""``pydicom.jsonrep.convert_to_python_number``'s number type by VR (calling it costs an
import statement per element)."""


def _element_from_json(tag: str, mapping: dict[str, Any]) -> DataElement:
    """One element of a DICOM JSON data set, as ``Dataset.from_json`` makes it.

    A plain one (a VR of :data:`_PLAIN_JSON_VRS` with a ``Value`` list of strings and
    numbers) is made directly, as ``from_json`` makes it without its converter's steps
    (a quarter of the time: a CT's instance numbers and positions differ from image to
    image, so each image's are made anew)."""
    vr = mapping["vr"]
    values = mapping.get("Value")
    if (
        vr in _PLAIN_JSON_VRS
        and isinstance(values, list)
        and values
        and all(type(v) in (str, int, float) for v in values)
        and not any(k in mapping for k in ("InlineBinary", "BulkDataURI"))
    ):
        value = values[0] if len(values) == 1 else list(values)
        number = _NUMBER_TYPES.get(vr)  # convert_to_python_number's conversion
        if number is not None:
            value = [number(v) for v in value] if isinstance(value, list) else number(value)
        return DataElement(Tag(tag), vr, value)
    keys = [k for k in JSON_VALUE_KEYS if k in mapping]
    value_key = keys[0] if keys else None
    value = mapping[value_key] if value_key else [""]
    return DataElement.from_json(Dataset, tag, vr, value, value_key)


class PremadeIndex:
    """What was pre-made for some studies, read from their index files at job time:
    (instance id, options key) -> :class:`Entry`, and the instances' selection tags."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._entries: dict[tuple[int, str], Entry] = {}
        self._headers: dict[int, tuple[float, dict[str, Any] | None]] = {}
        self._elements: dict[str, DataElement] = {}
        self._read_files: set[Path] = set()

    @classmethod
    def load(cls, data_dir: Path, study_ids: Iterable[int]) -> PremadeIndex:
        index = cls(data_dir)
        for study_id in study_ids:
            for path in sorted(study_dir(data_dir, study_id).glob("index-*.json")):
                index._read(study_id, path)
        return index

    def _read(self, study_id: int, path: Path) -> None:
        try:
            instances = json.loads(path.read_text())["instances"]
        except (OSError, ValueError, KeyError):
            return  # removed meanwhile, or unreadable: those are made by the job
        for item in instances:
            instance_id = int(item["id"])
            received_at = float(item["received_at"])
            if item["header"] is not None or instance_id not in self._headers:
                self._headers[instance_id] = (received_at, item["header"])
            for key, made in item["made"].items():
                self._entries[(instance_id, key)] = Entry(
                    study_id,
                    received_at,
                    str(made["outcome"]),
                    int(made["size"]),
                    tuple((str(k), str(o), str(p)) for k, o, p in made["mappings"]),
                )

    def read_new(self, study_id: int) -> None:
        """Read the study's index files not read yet by :meth:`read_new` (those written
        since: each is written whole under a temporary name, then renamed)."""
        for path in sorted(study_dir(self.data_dir, study_id).glob("index-*.json")):
            if path not in self._read_files:
                self._read_files.add(path)
                self._read(study_id, path)

    def known(self, instance_id: int, key: str) -> bool:
        """True when an index file says what became of the instance for ``key`` (made,
        refused or failed, of any received copy)."""
        return (instance_id, key) in self._entries

    @classmethod
    def load_file(cls, data_dir: Path, study_id: int, path: Path) -> PremadeIndex:
        """What one index file (a help request's) says was made."""
        index = cls(data_dir)
        index._read(study_id, path)
        return index

    def lookup(self, sources: Sequence[SourceInstance], key: str) -> dict[int, Premade]:
        """The usable pre-made files of ``sources`` for the options ``key``, by instance id."""
        found: dict[int, Premade] = {}
        for source in sources:
            entry = self._entries.get((source.instance_id, key))
            if entry is None or entry.outcome != MADE:
                continue
            if entry.received_at != source.received_at:
                continue  # made from an earlier copy of a resent instance
            path = premade_file(self.data_dir, entry.study_id, key, source.instance_id)
            if path.is_file():
                found[source.instance_id] = Premade(path, entry.mappings)
        return found

    def header(self, instance_id: int, received_at: float) -> Dataset | None:
        """The selection tags read while pre-making this copy of the instance, if any
        (read only: its elements are shared with other instances' headers that hold the
        same value, see :func:`header_from_json`)."""
        found = self._headers.get(instance_id)
        if found is None or found[0] != received_at or found[1] is None:
            return None
        return header_from_json(found[1], self._elements)

    def stats(self) -> tuple[int, int]:
        """(files, bytes) made, as the index says."""
        made = [e for e in self._entries.values() if e.outcome == MADE]
        return len(made), sum(e.size for e in made)
