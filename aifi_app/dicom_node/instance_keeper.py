"""Keeping one received instance: check its header, the disk floor, move it durably into
the spool, record it in the queue; or refuse it with the C-STORE status to send.

The same steps wherever the association runs: on a thread of the service
(:class:`~aifi_app.dicom_node.storage_scp.StorageNode`) or in a receiver process
(:mod:`aifi_app.dicom_node.receiver_child`), each with an :class:`InstanceKeeper` of its
own on the one queue database (SQLite in WAL mode takes writers from several processes;
each keeper's :class:`~aifi_app.store.receiving.GroupRecorder` shares its commits among
its own associations). Success is answered only once the file is whole under its spool
name and the instance is committed to the queue. What the keeper needs besides the
database, :class:`KeepingRules`, is a plain value that a receiver process is given when
it starts.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import dcmread

from aifi_app.dicom_node.header_scan import scan_header
from aifi_app.dicom_node.spool import StrPath, durable_move
from aifi_app.failpoints import failpoint
from aifi_app.fault_logging import log_fault
from aifi_app.store import audit
from aifi_app.store.database import Database
from aifi_app.store.disk_space import DiskGuard
from aifi_app.store.receiving import GroupRecorder, IdleTimes, ReceivedInstance

if TYPE_CHECKING:
    from aifi_app.dicom_node.storage_acceptor import DataSetStart

log = logging.getLogger(__name__)

# C-STORE statuses (PS3.4 Table B.2-1)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000

_HEADER_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "StudyDescription",
]


class StoreRefused(Exception):
    """An instance that the node will not keep; ``status`` is the C-STORE status to send."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class KeepingRules:
    """What keeping an instance needs besides the database and the data folder (a plain
    value: a receiver process gets it when it starts)."""

    idle_times: IdleTimes
    """The study's completion idle time by modality (recorded with a new study)."""
    late_policy: str
    """``[completion] late_instance_policy``: for an instance of a study already processed."""
    disk_guard: DiskGuard | None = None
    """The data volume's free-space floor (None: no floor)."""


@dataclass(frozen=True)
class HeaderValues:
    """What the keeper checks and records of an instance."""

    study_uid: object
    series_uid: object
    sop_uid: object
    """None: absent; else as pydicom gives it (a MultiValue for several values)."""
    transfer_syntax: str
    sop_class: str
    modality: str
    study_description: str


def _scanned_header(start: DataSetStart | None) -> HeaderValues | None:
    """The header from the data set's beginning in memory, or None: read the file."""
    if start is None:
        return None
    header = scan_header(start.head, start.transfer_syntax, start.complete)
    if header is None or not header.sop_class_uid:
        return None  # (without a SOP Class UID pydicom's reading of the file meta decides)
    return HeaderValues(
        study_uid=header.study_instance_uid,
        series_uid=header.series_instance_uid,
        sop_uid=header.sop_instance_uid,
        transfer_syntax=start.transfer_syntax,
        sop_class=header.sop_class_uid,
        modality=header.modality or "",
        study_description=header.study_description or "",
    )


def _read_header(path: StrPath) -> HeaderValues:
    """The header read from the file with pydicom; StoreRefused (0xC000) if it cannot be."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        return HeaderValues(
            study_uid=ds.get("StudyInstanceUID"),
            series_uid=ds.get("SeriesInstanceUID"),
            sop_uid=ds.get("SOPInstanceUID"),
            transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
            sop_class=str(ds.get("SOPClassUID") or ds.file_meta.MediaStorageSOPClassUID),
            modality=str(ds.get("Modality") or ""),
            study_description=str(ds.get("StudyDescription") or ""),
        )
    except Exception as exc:
        # whatever a malformed data set makes the parser raise (InvalidDicomError,
        # ValueError, a RecursionError for sequences nested thousands deep, ...) means
        # we cannot understand it: 0xC000, not an internal error (fuzz campaign)
        raise StoreRefused(
            CANNOT_UNDERSTAND, f"data set cannot be parsed ({type(exc).__name__})"
        ) from exc


_UID_CHARACTERS = re.compile(r"[0-9.]{1,64}")
_DOTS_ONLY = re.compile(r"\.+")


def valid_uid(value: object) -> bool:
    """1 to 64 digits and dots, at least one of them a digit (a regular expression: ten
    times cheaper than a loop). The Study Instance UID names the study's folder in the
    spool: made of dots only ("." or "..") it would name the spool itself or the data
    folder above it."""
    text = str(value or "")
    return _UID_CHARACTERS.fullmatch(text) is not None and not _DOTS_ONLY.fullmatch(text)


def checked_header(
    tmp: StrPath, affected_sop_instance_uid: str, start: DataSetStart | None
) -> HeaderValues:
    """The instance's header values, checked; raises :class:`StoreRefused` (0xA900,
    0xC000) when the instance cannot be kept."""
    header = _scanned_header(start) or _read_header(tmp)
    if not valid_uid(header.study_uid) or not valid_uid(header.series_uid):
        raise StoreRefused(
            DATA_SET_DOES_NOT_MATCH_SOP_CLASS, "Study or Series Instance UID missing or invalid"
        )
    if header.sop_uid is not None and str(header.sop_uid) != affected_sop_instance_uid:
        raise StoreRefused(
            DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            "SOP Instance UID differs from the command's Affected SOP Instance UID",
        )
    if not valid_uid(affected_sop_instance_uid):
        raise StoreRefused(DATA_SET_DOES_NOT_MATCH_SOP_CLASS, "SOP Instance UID is invalid")
    return header


def keep_checked(
    data_dir: Path,
    tmp: StrPath,
    header: HeaderValues,
    affected_sop_instance_uid: str,
    start: DataSetStart | None,
    calling_ae: str,
) -> ReceivedInstance:
    """Move the checked instance durably into the spool (0xA700 when it cannot be); the
    instance as the queue records it."""
    study, name = str(header.study_uid), f"{affected_sop_instance_uid}.dcm"
    try:
        size = durable_move(
            tmp,
            os.path.join(data_dir, "spool", study, name),
            flushed=start is not None and start.flushed,
            checksummed=start is not None and start.checksummed,
        )
    except OSError as exc:
        raise StoreRefused(OUT_OF_RESOURCES, f"cannot write to the spool: {exc.strerror}") from exc
    failpoint("receive.after_move")
    return ReceivedInstance(
        study_uid=str(header.study_uid),
        series_uid=str(header.series_uid),
        sop_instance_uid=affected_sop_instance_uid,
        sop_class_uid=header.sop_class,
        transfer_syntax=header.transfer_syntax,
        modality=header.modality or "",
        study_description=header.study_description or "",
        path=f"spool/{study}/{name}",
        size=size,
        calling_ae=calling_ae,
    )


class InstanceKeeper:
    """Keeps received instances in ``data_dir``'s spool and ``db``'s queue (any thread)."""

    def __init__(self, db: Database, data_dir: Path, rules: KeepingRules) -> None:
        self.db = db
        self.data_dir = data_dir
        self.rules = rules
        self._recorder = GroupRecorder(db)

    def close(self) -> None:
        """Record no more (a store from now on gets 0xA700); returns after the last commit."""
        self._recorder.close()

    def store(
        self,
        path: StrPath | None,
        calling_ae: str,
        sop_instance_uid: str,
        start: DataSetStart | None = None,
    ) -> tuple[int, int | None]:
        """Keep the instance in the file at ``path`` (``None``: it could not be written);
        the C-STORE status and, on success, its study's queue id. A refused instance's
        file is removed, and the refusal logged and audited."""
        try:
            if path is None:
                raise StoreRefused(OUT_OF_RESOURCES, "the received data set cannot be written")
            study_id = self.keep(path, calling_ae, sop_instance_uid, start)
        except StoreRefused as exc:
            if path is not None:
                Path(path).unlink(missing_ok=True)  # (a refusal: not the hot path)
            return self.refused(calling_ae, exc.status, exc.reason), None
        except Exception as exc:
            # never log the exception itself: its message may quote the data
            log_fault(log, "C-STORE from %s failed unexpectedly", exc, calling_ae)
            if path is not None:
                Path(path).unlink(missing_ok=True)  # (a refusal: not the hot path)
            reason = f"internal error ({type(exc).__name__})"
            return self.refused(calling_ae, OUT_OF_RESOURCES, reason), None
        return SUCCESS, study_id

    def keep(
        self,
        tmp: StrPath,
        calling_ae: str,
        affected_sop_instance_uid: str,
        start: DataSetStart | None = None,
    ) -> int:
        """Check, durably keep and record one received instance; returns its study's row id.

        ``start``: the data set's beginning in memory, scanned for the header values
        (:func:`~aifi_app.dicom_node.header_scan.scan_header`); where that cannot tell, the
        file is read with pydicom. Raises :class:`StoreRefused` with the status to send
        when it cannot be kept.
        """
        header = checked_header(tmp, affected_sop_instance_uid, start)
        self._check_disk()
        kept = keep_checked(
            self.data_dir, tmp, header, affected_sop_instance_uid, start, calling_ae
        )
        return self._record(kept)

    def _check_disk(self) -> None:
        """With the received bytes already on the volume (in ``incoming``); nothing has
        reached the spool or the queue yet, the sender keeps the instance."""
        guard = self.rules.disk_guard
        try:
            shortfall = guard.shortfall() if guard is not None else None
        except Exception as exc:
            log_fault(log, "could not check the disk for a received instance", exc)
            raise StoreRefused(
                OUT_OF_RESOURCES, f"disk check failed ({type(exc).__name__})"
            ) from exc
        if shortfall is not None:
            raise StoreRefused(OUT_OF_RESOURCES, shortfall)

    def _record(self, kept: ReceivedInstance) -> int:
        """Record an instance already durable in the spool; returns its study's row id."""
        try:
            recorded = self._recorder.record(
                kept,
                idle_seconds=self.rules.idle_times(kept.modality),
                late_policy=self.rules.late_policy,
            )
        except Exception as exc:
            # the file is on disk but not in the queue: the sender must not think we hold
            # it (it sends it again; the next unclean start would record the file)
            log_fault(log, "could not record a received instance in the queue", exc)
            raise StoreRefused(
                OUT_OF_RESOURCES, f"queue database error ({type(exc).__name__})"
            ) from exc
        failpoint("receive.after_record")
        return recorded.study_id

    def refused(self, calling_ae: str, status: int, reason: str) -> int:
        """Log and audit a refused C-STORE; returns ``status``."""
        log.error("C-STORE from %s refused (0x%04X): %s", calling_ae, status, reason)
        try:
            with self.db.transaction() as conn:
                audit.record(
                    conn,
                    "receive",
                    "store_refused",
                    detail=f"from {calling_ae}: status 0x{status:04X}: {reason}",
                )
        except Exception as exc:  # the refusal may be because the database is unwritable
            log_fault(log, "could not write the audit event for a refused C-STORE", exc)
        return status
