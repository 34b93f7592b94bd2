"""The appliance's own DICOM node: Verification and Storage SCP.

Each association runs on a thread of its own (:mod:`aifi_app.dicom_node.storage_acceptor`,
accepted by :mod:`aifi_app.dicom_node.association_listener`): the data set is written to
a file in the data volume's ``incoming`` folder while it arrives (one of the empty files
made ahead, :mod:`aifi_app.dicom_node.spare_files`), then :meth:`StorageNode.store`
checks its header (scanned from the data set's first bytes in memory,
:mod:`aifi_app.dicom_node.header_scan`, or read with pydicom where that cannot tell),
moves it durably into the spool and records it in the queue, and only then is success
answered. It never waits for downstream work. The queue's commits for received instances
are not flushed to disk one by one: the spool file is, and after an unclean stop the
next start records any spool file the queue lost (:mod:`aifi_app.dicom_node.spool_recovery`).

With ``receive_processes`` (``[node]``), plain-TCP associations are served in receiver
processes instead (:mod:`aifi_app.dicom_node.receiver_pool`), which do the same up to the
durable move (:func:`checked_header`, :func:`keep_checked`) and ask this process to check
the disk floor and record the instance (:meth:`StorageNode.store_kept`) before they answer
success. One difference: where the floor is crossed while an instance arrives, the
receiver has already moved it into the spool, and it is removed from there again
(in-process, the check comes before the move).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from aifi_app.dicom_node.access import CallingAddressPolicy, parse_address_rules
from aifi_app.dicom_node.association_listener import AssociationListener
from aifi_app.dicom_node.header_scan import scan_header
from aifi_app.dicom_node.receiver_pool import ReceiverPool
from aifi_app.dicom_node.spare_files import SPARE_FILES, SPARE_FLOOR, SpareFiles
from aifi_app.dicom_node.spool import durable_move
from aifi_app.dicom_node.spool_recovery import (
    begin_receiving,
    end_receiving,
    recover_unrecorded,
)
from aifi_app.dicom_node.storage_acceptor import (
    AcceptorSettings,
    AssociationSlots,
    DataSetStart,
    StorageAssociation,
    supported_contexts,
)
from aifi_app.dicom_node.studies_in_transfer import StudiesInTransfer
from aifi_app.dicom_node.transfer_syntaxes import (
    ACCEPTED_TRANSFER_SYNTAXES,
    STORAGE_SOP_CLASSES,
)
from aifi_app.failpoints import failpoint
from aifi_app.fault_logging import log_fault
from aifi_app.store import audit
from aifi_app.store.database import Database
from aifi_app.store.disk_space import DiskGuard
from aifi_app.store.receiving import GroupRecorder, ReceivedInstance

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


MAX_ASSOCIATIONS = 16
"""Concurrent associations the node accepts; more are rejected (transient)."""

POOL_START_QUIET_SECONDS = 1.0
"""The receiver processes start once no association has begun or ended for this long
(and not before this long after the port opened) ..."""
POOL_START_AT_LATEST_SECONDS = 10.0
"""... or this long after the port opened, whatever arrives."""
_POOL_START_POLL_SECONDS = 0.1

IMPLEMENTATION_CLASS_UID = PYNETDICOM_IMPLEMENTATION_UID
"""Sent in the A-ASSOCIATE-AC: pynetdicom's, whose PDU classes the node's acceptor uses."""
IMPLEMENTATION_VERSION_NAME = PYNETDICOM_IMPLEMENTATION_VERSION


@dataclass(frozen=True)
class NodeConfig:
    ae_title: str
    bind_address: str
    port: int
    allowed_calling_ae_titles: tuple[str, ...]
    max_pdu_size: int
    network_timeout_seconds: float
    calling_ae_addresses: tuple[str, ...] = ()
    """``AET@address`` / ``AET@network`` pairs (:mod:`aifi_app.dicom_node.access`)."""
    tls_context: ssl.SSLContext | None = None
    """DICOM TLS listener's context (:func:`aifi_app.net.tls.server_context`); None: no TLS."""
    tls_port: int = 2762
    """Port of the TLS listener (when ``tls_context`` is set; 0: any free port)."""
    plain_tcp: bool = True
    """Whether the plain-TCP listener on ``port`` runs (False: TLS only)."""
    receive_processes: int = 0
    """Receiver processes for plain-TCP associations (:mod:`aifi_app.dicom_node.receiver_pool`;
    0: every association on a thread of this process; Windows: always 0)."""
    receive_first_in_process: bool = False
    """With receiver processes: an association that arrives while none is served on this
    process's threads is served here (one association alone saves the hand-over)."""


class StoreRefused(Exception):
    """An instance that the node will not keep; ``status`` is the C-STORE status to send."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class _HeaderValues:
    """What :meth:`StorageNode.accept_file` checks and records of an instance."""

    study_uid: object
    series_uid: object
    sop_uid: object
    """None: absent; else as pydicom gives it (a MultiValue for several values)."""
    transfer_syntax: str
    sop_class: str
    modality: str
    study_description: str


def _scanned_header(start: DataSetStart | None) -> _HeaderValues | None:
    """The header from the data set's beginning in memory, or None: read the file."""
    if start is None:
        return None
    header = scan_header(start.head, start.transfer_syntax, start.complete)
    if header is None or not header.sop_class_uid:
        return None  # (without a SOP Class UID pydicom's reading of the file meta decides)
    return _HeaderValues(
        study_uid=header.study_instance_uid,
        series_uid=header.series_instance_uid,
        sop_uid=header.sop_instance_uid,
        transfer_syntax=start.transfer_syntax,
        sop_class=header.sop_class_uid,
        modality=header.modality or "",
        study_description=header.study_description or "",
    )


def _read_header(path: Path) -> _HeaderValues:
    """The header read from the file with pydicom; StoreRefused (0xC000) if it cannot be."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        return _HeaderValues(
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


def _valid_uid(value: object) -> bool:
    """1 to 64 digits and dots (a regular expression: ten times cheaper than a loop)."""
    return _UID_CHARACTERS.fullmatch(str(value or "")) is not None


class StorageNode:
    """Runs the Storage/Verification SCP on its own threads (one per association)."""

    def __init__(
        self,
        config: NodeConfig,
        db: Database,
        data_dir: Path,
        *,
        idle_seconds_for: Callable[[str], float],
        late_policy: str,
        on_stored: Callable[[int], None] = lambda study_id: None,
        on_association_end: Callable[[], None] = lambda: None,
        disk_guard: DiskGuard | None = None,
    ) -> None:
        """``on_association_end`` is called (on the association's thread) when an
        association that stored instances has ended; :attr:`in_transfer` then no longer
        holds their studies."""
        self.config = config
        self.db = db
        self.data_dir = data_dir
        self.spool = data_dir / "spool"
        self.incoming = data_dir / "incoming"
        self._idle_seconds_for = idle_seconds_for
        self._late_policy = late_policy
        self._on_stored = on_stored
        self._on_association_end = on_association_end
        self.in_transfer = StudiesInTransfer()
        self._server: AssociationListener | None = None
        self._tls_server: AssociationListener | None = None
        self._slots = AssociationSlots(MAX_ASSOCIATIONS)
        self._recorder = GroupRecorder(db)
        self._disk = disk_guard
        self._receiving = False
        self._spare_files: SpareFiles | None = None
        self._pool: ReceiverPool | None = None
        self._pool_starter: threading.Thread | None = None
        self._stopping = threading.Event()
        self._here = 0
        """Plain-TCP associations served on this process's threads now."""
        self._here_lock = threading.Lock()

    # --- life cycle -------------------------------------------------------------------
    def start(self) -> None:
        """Start listening; returns once the socket is bound."""
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.spool.mkdir(parents=True, exist_ok=True)
        opened = time.monotonic()
        processes = self.config.receive_processes if os.name == "posix" else 0
        spare_files = SpareFiles(
            self.incoming,
            # with receiver processes (each makes its own) this process serves only what
            # arrives while none is ready, unless it keeps an association alone here
            keep=SPARE_FILES
            if processes <= 0 or self.config.receive_first_in_process
            else 4 * SPARE_FLOOR,
            quiet_seconds=lambda: min(self._slots.quiet_seconds, time.monotonic() - opened),
        )
        for leftover in spare_files.adopt():  # (the empty files made ahead stay)
            # a transfer cut off by a crash: its sender never got a success status and
            # will send it again, so the partial file is not data we hold
            leftover.unlink(missing_ok=True)
        if begin_receiving(self.data_dir):
            recover_unrecorded(
                self.db,
                self.data_dir,
                idle_seconds_for=self._idle_seconds_for,
                late_policy=self._late_policy,
            )
        self._recorder = GroupRecorder(self.db)  # (a node started again after stop())
        self._stopping.clear()
        self._receiving = True
        self._spare_files = spare_files
        spare_files.start()
        if not self.config.allowed_calling_ae_titles:
            log.warning("no calling AE titles are allowed: every association will be rejected")
        settings = acceptor_settings(self.config, self.incoming, self._spare_files)

        def serve(sock: socket.socket, address: str, tls_peer: str | None) -> None:
            self.in_transfer.begin()
            try:
                StorageAssociation(
                    sock, address, settings, self, self._slots, tls_peer=tls_peer
                ).run()
            finally:
                if self.in_transfer.end():
                    self._on_association_end()  # its studies' idle timers count again

        def serve_plain(sock: socket.socket, address: str, tls_peer: str | None) -> None:
            try:
                serve(sock, address, tls_peer)
            finally:
                with self._here_lock:
                    self._here -= 1

        timeout = self.config.network_timeout_seconds
        if self.config.plain_tcp:
            if processes > 0:
                self._pool = ReceiverPool(
                    self,
                    self.config,
                    self.data_dir,
                    processes=processes,
                    spare_files=SPARE_FILES // processes,
                )
                self._pool_starter = threading.Thread(
                    target=self._start_pool_when_quiet,
                    args=(self._pool, opened),
                    name="aifi-receivers-start",
                    daemon=True,
                )
                self._pool_starter.start()
            self._server = AssociationListener(
                (self.config.bind_address, self.config.port),
                serve_plain,
                timeout=timeout,
                hand_off=self._hand_off,
            )
            log.info(
                "DICOM node %s listening on %s:%d",
                self.config.ae_title,
                self.config.bind_address,
                self.port,
            )
        if self.config.tls_context is not None:
            self._tls_server = AssociationListener(
                (self.config.bind_address, self.config.tls_port),
                serve,
                timeout=timeout,
                ssl_context=self.config.tls_context,
                on_tls_refused=self._handle_tls_refused,
            )
            log.info(
                "DICOM node %s listening with TLS on %s:%d",
                self.config.ae_title,
                self.config.bind_address,
                self.tls_port,
            )

    def _start_pool_when_quiet(self, pool: ReceiverPool, opened: float) -> None:
        """Start the receiver processes once the node has been quiet for a moment.

        Each spawned process imports the node's modules (0.5-1 s of CPU): a study sent
        the moment the port accepts would compete with them (``python -m bench --only
        ingest``, radiograph study sent at once). Until they are ready this process
        serves every association, as with ``receive_processes = 0``.
        """
        while not self._stopping.wait(_POOL_START_POLL_SECONDS):
            since = time.monotonic() - opened
            if since >= POOL_START_AT_LATEST_SECONDS or (
                since >= POOL_START_QUIET_SECONDS
                and self._slots.quiet_seconds >= POOL_START_QUIET_SECONDS
            ):
                pool.start()
                return

    def _hand_off(self, sock: socket.socket, address: str) -> bool:
        """Whether a receiver process takes this plain-TCP connection (else a thread here
        serves it): the first association while none is served here stays here
        (``receive_first_in_process``), and every one while no process is ready."""
        with self._here_lock:
            keep = self._pool is None or (self.config.receive_first_in_process and self._here == 0)
            if keep:
                self._here += 1
                return False
        assert self._pool is not None
        if self._pool.hand_off(sock, address):
            return True
        with self._here_lock:
            self._here += 1
        return False

    def stop(self) -> None:
        """Stop listening; once the last instance is recorded, flush the queue's log."""
        for server in (self._server, self._tls_server):
            if server is not None:
                server.stop()
        self._server = self._tls_server = None
        self._stopping.set()
        if self._pool_starter is not None:
            self._pool_starter.join()
            self._pool_starter = None
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
        if self._spare_files is not None:
            self._spare_files.stop()
            self._spare_files = None
        if self._receiving:
            self._receiving = False
            self._recorder.close()  # an association still running gets 0xA700 from here on
            end_receiving(self.db, self.data_dir)

    @property
    def receiver_pids(self) -> list[int]:
        """The receiver processes' ids (none without ``receive_processes``)."""
        return self._pool.pids if self._pool is not None else []

    @property
    def associations_handed_over(self) -> int:
        """Connections handed to a receiver process since the start."""
        return self._pool.handed_over if self._pool is not None else 0

    @property
    def served_here(self) -> int:
        """Plain-TCP associations served on this process's threads now."""
        with self._here_lock:
            return self._here

    @property
    def receivers_ready(self) -> int:
        """How many receiver processes take connections now."""
        return self._pool.ready if self._pool is not None else 0

    @property
    def quiet_seconds(self) -> float:
        """Seconds since an association last began or ended (since the node was made, if
        none has); 0 while one is in progress."""
        return self._slots.quiet_seconds

    @property
    def port(self) -> int:
        """The plain-TCP port actually bound (useful when configured as 0)."""
        if self._server is None:
            return self.config.port
        return self._server.port

    @property
    def tls_port(self) -> int:
        """The TLS port actually bound."""
        if self._tls_server is None:
            return self.config.tls_port
        return self._tls_server.port

    # --- the association's requests (its own thread; storage_acceptor.StorageService) ---
    def refuse_association(self, calling_ae: str, address: str) -> str | None:
        """Refuse a new association while the data volume is below its free-space floor.

        A transient rejection: the modality keeps the study and tries again later, as it
        does when the node is busy. Refused before the calling AE title is checked, so an
        unknown caller learns nothing more than that we are full.
        """
        shortfall = self._disk.shortfall() if self._disk is not None else None
        if shortfall is None:
            return None
        log.error("association from %s refused: %s", calling_ae, shortfall)
        try:
            with self.db.transaction() as conn:
                audit.record(
                    conn,
                    "receive",
                    "association_refused",
                    detail=f"calling AE {calling_ae!r}: {shortfall} (A-ASSOCIATE-RJ, transient, "
                    "local limit exceeded)",
                )
        except Exception as exc:  # a full disk may refuse the audit write too
            log_fault(log, "could not write the audit event for a refused association", exc)
        return shortfall

    def association_rejected(
        self, calling_ae: str, address: str, reason: str, tls_peer: str | None
    ) -> None:
        log.warning("association from calling AE %r rejected: %s", calling_ae, reason)
        if tls_peer is not None:
            reason = f"{reason} (over TLS, certificate {tls_peer or 'none'!r})"
        self._audit_security("association_rejected", reason)

    # --- a receiver process's associations (receiver_pool.PoolService) -------------------
    def association_began(self, key: int) -> bool:
        self.in_transfer.begin(key)
        self._slots.enter()
        return self._slots.over_limit

    def association_left(self, key: int) -> None:
        self._slots.leave()

    def association_ended(self, key: int) -> None:
        if self.in_transfer.end(key):
            self._on_association_end()  # its studies' idle timers count again

    def receiver_died(self, pid: int, exitcode: int | None, cut_off: int) -> None:
        self._audit(
            "receive",
            "receiver_process_died",
            f"receiver process {pid} ended unexpectedly (exit code {exitcode}); "
            f"{cut_off} association(s) aborted, their unacknowledged instances not kept; "
            "another process started",
        )

    def _audit(self, category: str, event: str, detail: str) -> None:
        try:
            with self.db.transaction() as conn:
                audit.record(conn, category, event, detail=detail)
        except Exception as exc:
            log_fault(log, "could not write the audit event %s", exc, event)

    def _handle_tls_refused(self, address: str, reason: str) -> None:
        self._audit_security("tls_refused", f"TLS connection from {address} refused: {reason}")

    def _audit_security(self, event: str, detail: str) -> None:
        try:
            with self.db.transaction() as conn:
                audit.record(conn, "security", event, detail=detail)
        except Exception as exc:
            log_fault(log, "could not write the audit event %s", exc, event)

    def store(
        self,
        path: Path | None,
        calling_ae: str,
        sop_instance_uid: str,
        start: DataSetStart | None = None,
    ) -> int:
        """Keep one received instance (the file at ``path``); the C-STORE status to send."""
        try:
            if path is None:
                raise StoreRefused(OUT_OF_RESOURCES, "the received data set cannot be written")
            study_id = self.accept_file(path, calling_ae, sop_instance_uid, start)
        except StoreRefused as exc:
            log.error("C-STORE from %s refused (0x%04X): %s", calling_ae, exc.status, exc.reason)
            self._audit_refusal(calling_ae, exc)
            if path is not None:
                path.unlink(missing_ok=True)
            return exc.status
        except Exception as exc:
            # never log the exception itself: its message may quote the data
            log_fault(log, "C-STORE from %s failed unexpectedly", exc, calling_ae)
            self._audit_refusal(
                calling_ae, StoreRefused(OUT_OF_RESOURCES, f"internal error ({type(exc).__name__})")
            )
            if path is not None:
                path.unlink(missing_ok=True)
            return OUT_OF_RESOURCES
        self.in_transfer.add(study_id)
        self._on_stored(study_id)
        return SUCCESS

    def _audit_refusal(self, calling: str, exc: StoreRefused) -> None:
        try:
            with self.db.transaction() as conn:
                audit.record(
                    conn,
                    "receive",
                    "store_refused",
                    detail=f"from {calling}: status 0x{exc.status:04X}: {exc.reason}",
                )
        except Exception as audit_exc:  # the refusal may be because the database is unwritable
            log_fault(log, "could not write the audit event for a refused C-STORE", audit_exc)

    # --- the work ----------------------------------------------------------------------
    def accept_file(
        self,
        tmp: Path,
        calling_ae: str,
        affected_sop_instance_uid: str,
        start: DataSetStart | None = None,
    ) -> int:
        """Check, durably keep and record one received instance; returns its study's row id.

        ``start``: the data set's beginning in memory, scanned for the header values
        (:func:`scan_header`); where that cannot tell, the file is read with pydicom.
        Raises :class:`StoreRefused` with the status to send when it cannot be kept.
        """
        header = checked_header(tmp, affected_sop_instance_uid, start)
        self._check_disk()
        kept = keep_checked(
            self.data_dir, tmp, header, affected_sop_instance_uid, start, calling_ae
        )
        return self.record_kept(kept)

    def _check_disk(self) -> None:
        shortfall = self._disk.shortfall() if self._disk is not None else None
        if shortfall is not None:
            # nothing has reached the spool or the queue yet; the sender keeps the instance
            raise StoreRefused(OUT_OF_RESOURCES, shortfall)

    def record_kept(self, kept: ReceivedInstance) -> int:
        """Record an instance already durable in the spool; returns its study's row id."""
        try:
            recorded = self._recorder.record(
                kept,
                idle_seconds=self._idle_seconds_for(kept.modality),
                late_policy=self._late_policy,
            )
        except Exception as exc:
            # the file is on disk but not in the queue: the sender must not think we hold it
            log_fault(log, "could not record a received instance in the queue", exc)
            raise StoreRefused(
                OUT_OF_RESOURCES, f"queue database error ({type(exc).__name__})"
            ) from exc
        failpoint("receive.after_record")
        return recorded.study_id

    def store_kept(self, kept: ReceivedInstance, key: int) -> int:
        """An instance a receiver process kept in the spool (association ``key``): check
        the disk floor, record it; the C-STORE status (success only once recorded)."""
        try:
            self._check_disk()
        except Exception as exc:
            # the floor was crossed while it arrived (or the disk could not be read): it
            # leaves the spool, unrecorded, and the sender keeps it
            (self.data_dir / kept.path).unlink(missing_ok=True)
            if not isinstance(exc, StoreRefused):
                log_fault(log, "could not check the disk for a received instance", exc)
                exc = StoreRefused(OUT_OF_RESOURCES, f"disk check failed ({type(exc).__name__})")
            return self.refused(kept.calling_ae, exc.status, exc.reason)
        try:
            study_id = self.record_kept(kept)
        except StoreRefused as exc:
            return self.refused(kept.calling_ae, exc.status, exc.reason)
        try:  # recorded: what follows only hastens its study's completion
            self.in_transfer.add(study_id, key)
            self._on_stored(study_id)
        except Exception as exc:
            log_fault(log, "a recorded instance's study could not be woken", exc)
        return SUCCESS

    def refused(self, calling_ae: str, status: int, reason: str) -> int:
        """Log and audit a refused C-STORE; returns ``status``."""
        log.error("C-STORE from %s refused (0x%04X): %s", calling_ae, status, reason)
        self._audit_refusal(calling_ae, StoreRefused(status, reason))
        return status


def acceptor_settings(
    config: NodeConfig, incoming: Path, spare_files: SpareFiles | None
) -> AcceptorSettings:
    """What every association of the node shares (in the service or a receiver process)."""
    contexts = {str(Verification): [str(ts) for ts in ACCEPTED_TRANSFER_SYNTAXES]}
    for sop_class in STORAGE_SOP_CLASSES:
        contexts[sop_class] = [str(ts) for ts in ACCEPTED_TRANSFER_SYNTAXES]
    return AcceptorSettings(
        ae_title=config.ae_title,
        max_pdu_size=config.max_pdu_size,
        timeout=config.network_timeout_seconds,
        allowed_calling_ae_titles=frozenset(t.strip() for t in config.allowed_calling_ae_titles),
        supported_contexts=supported_contexts(contexts),
        implementation_class_uid=IMPLEMENTATION_CLASS_UID,
        implementation_version_name=IMPLEMENTATION_VERSION_NAME,
        incoming=incoming,
        spare_files=spare_files,
        address_check=CallingAddressPolicy(parse_address_rules(config.calling_ae_addresses)),
    )


def checked_header(
    tmp: Path, affected_sop_instance_uid: str, start: DataSetStart | None
) -> _HeaderValues:
    """The instance's header values, checked; raises :class:`StoreRefused` (0xA900,
    0xC000) when the instance cannot be kept."""
    header = _scanned_header(start) or _read_header(tmp)
    if not _valid_uid(header.study_uid) or not _valid_uid(header.series_uid):
        raise StoreRefused(
            DATA_SET_DOES_NOT_MATCH_SOP_CLASS, "Study or Series Instance UID missing or invalid"
        )
    if header.sop_uid is not None and str(header.sop_uid) != affected_sop_instance_uid:
        raise StoreRefused(
            DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            "SOP Instance UID differs from the command's Affected SOP Instance UID",
        )
    if not _valid_uid(affected_sop_instance_uid):
        raise StoreRefused(DATA_SET_DOES_NOT_MATCH_SOP_CLASS, "SOP Instance UID is invalid")
    return header


def keep_checked(
    data_dir: Path,
    tmp: Path,
    header: _HeaderValues,
    affected_sop_instance_uid: str,
    start: DataSetStart | None,
    calling_ae: str,
) -> ReceivedInstance:
    """Move the checked instance durably into the spool (0xA700 when it cannot be); the
    instance as the queue records it (a receiver process hands it to the service)."""
    relative = Path("spool") / str(header.study_uid) / f"{affected_sop_instance_uid}.dcm"
    try:
        size = durable_move(
            tmp,
            data_dir / relative,
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
        path=relative.as_posix(),
        size=size,
        calling_ae=calling_ae,
    )
