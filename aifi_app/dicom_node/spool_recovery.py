"""After an unclean stop: record the spool files whose queue rows a power cut took.

The node answers a C-STORE with success once the instance's file is complete on disk
under its spool name (:func:`aifi_app.dicom_node.spool.durable_move`) and its row is
committed to the queue, but that commit is not flushed to disk
(:class:`aifi_app.store.receiving.GroupRecorder`): one flush an instance fewer. A power
cut (or an operating system crash) can therefore take the last rows with it, never the
files. This module finds those files again:

- :func:`begin_receiving` leaves a marker, ``receiving.open``, in the data directory
  (flushed) when the node starts, and says whether the last run left one behind;
- :func:`end_receiving` flushes the queue's log and removes the marker when the node
  stops cleanly;
- after a run that did not (killed, crashed, a power cut), :func:`recover_unrecorded`
  compares every file in the spool with the queue and records each instance that is
  missing, from its file: the header read with pydicom, the sender from the file meta's
  Sending Application Entity Title (which the node writes). Each recovered study gets an
  audit event.

Safe because a spool file is either whole on disk or says that it is not (its checksum
label, :func:`aifi_app.dicom_node.spool.is_complete`: a file the power cut caught between
its name and its flush, whose sender got no success), and because the queue never
forgets an instance it recorded (retention removes files, not rows); a file that was
moved but whose C-STORE failed (the sender was told so and sends it again) is recorded
too, which the resend then finds as already received. A clean start reads
nothing; the check after an unclean one lists the spool (about a second for 100,000
files).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Final

from pydicom import dcmread

from aifi_app.dicom_node.spool import fsync_dir, is_complete
from aifi_app.fault_logging import log_fault
from aifi_app.store import audit
from aifi_app.store.database import Database
from aifi_app.store.receiving import ReceivedInstance, record_instance

log = logging.getLogger(__name__)

MARKER_NAME: Final = "receiving.open"
_HEADER_TAGS: Final = [
    "SOPClassUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "StudyDescription",
]


def begin_receiving(data_dir: Path) -> bool:
    """Leave the marker (flushed); whether the last run left one (an unclean stop)."""
    marker = data_dir / MARKER_NAME
    if marker.exists():
        return True
    marker.touch()
    fsync_dir(data_dir)
    return False


def end_receiving(db: Database, data_dir: Path) -> None:
    """Flush the queue's log, then remove the marker: every recorded instance is on disk.

    If the log cannot be flushed the marker stays, and the next start checks the spool.
    """
    try:
        db.flush_log()
    except OSError as exc:
        log_fault(log, "the queue's log cannot be flushed; the next start checks the spool", exc)
        return
    with contextlib.suppress(FileNotFoundError):
        (data_dir / MARKER_NAME).unlink()
        fsync_dir(data_dir)


def unrecorded_files(db: Database, data_dir: Path) -> list[Path]:
    """The instance files in the spool that no queue row names, in order."""
    spool = data_dir / "spool"
    if not spool.is_dir():
        return []
    recorded = {r["path"] for r in db.query("SELECT path FROM instances")}
    found = []
    for study in sorted(spool.iterdir()):
        if not study.is_dir():
            continue
        for file in sorted(study.iterdir()):
            if file.suffix == ".dcm" and f"spool/{study.name}/{file.name}" not in recorded:
                found.append(file)
    return found


def _from_file(path: Path, data_dir: Path) -> ReceivedInstance:
    ds = dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    meta = ds.file_meta
    return ReceivedInstance(
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        sop_instance_uid=path.stem,  # the command's Affected SOP Instance UID, as checked
        sop_class_uid=str(ds.get("SOPClassUID") or meta.MediaStorageSOPClassUID),
        transfer_syntax=str(meta.TransferSyntaxUID),
        modality=str(ds.get("Modality") or ""),
        study_description=str(ds.get("StudyDescription") or ""),
        path=path.relative_to(data_dir).as_posix(),
        size=path.stat().st_size,
        calling_ae=str(meta.get("SendingApplicationEntityTitle") or "").strip(),
    )


def recover_unrecorded(
    db: Database,
    data_dir: Path,
    *,
    idle_seconds_for: Callable[[str], float],
    late_policy: str,
) -> int:
    """Record every spool file the queue lacks (see the module); returns how many."""
    files = unrecorded_files(db, data_dir)
    per_study: Counter[int] = Counter()
    unreadable = 0
    for path in files:
        try:
            if not is_complete(path):
                # cut short by the power cut before its flush: its sender got no success
                raise ValueError("the file does not match its checksum")
            inst = _from_file(path, data_dir)
        except Exception as exc:  # a file we cannot read: leave it, say so
            unreadable += 1
            log_fault(log, "a spool file the queue lacks cannot be read", exc)
            continue
        recorded = record_instance(
            db, inst, idle_seconds=idle_seconds_for(inst.modality), late_policy=late_policy
        )
        per_study[recorded.study_id] += 1
    with db.transaction() as conn:
        for study_id, count in per_study.items():
            audit.record(
                conn,
                "receive",
                "instances_recovered",
                study_id=study_id,
                detail=f"{count} instance(s) in the spool but not in the queue after an "
                "unclean stop; recorded from their files",
            )
        if unreadable:
            audit.record(
                conn,
                "receive",
                "recovery_failed",
                detail=f"{unreadable} file(s) in the spool but not in the queue are not whole "
                "or cannot be read; left in place",
            )
    recovered = sum(per_study.values())
    if files:
        log.warning(
            "after an unclean stop: %d instance(s) recorded from the spool, %d unreadable",
            recovered,
            unreadable,
        )
    return recovered
