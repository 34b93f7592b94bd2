"""The appliance's own DICOM node: Verification and Storage SCP.

Each association runs on a thread of its own (:mod:`aifi_app.dicom_node.storage_acceptor`,
accepted by :mod:`aifi_app.dicom_node.association_listener`): the data set is written to
a file in the data volume's ``incoming`` folder while it arrives (one of the empty files
made ahead, :mod:`aifi_app.dicom_node.spare_files`), then :meth:`StorageNode.store`
has it kept (:mod:`aifi_app.dicom_node.instance_keeper`): its header checked (scanned
from the data set's first bytes in memory, :mod:`aifi_app.dicom_node.header_scan`, or
read with pydicom where that cannot tell), the disk floor checked, the file moved durably
into the spool and recorded in the queue, and only then is success answered. It never
waits for downstream work. The queue's commits for received instances are not flushed to
disk one by one: the spool file is, and after an unclean stop the next start records any
spool file the queue lost (:mod:`aifi_app.dicom_node.spool_recovery`).

With ``receive_processes`` (``[node]``), plain-TCP associations are served in receiver
processes instead (:mod:`aifi_app.dicom_node.receiver_pool`), which keep each instance
the same way themselves, with a keeper of their own on the same queue database, and tell
this process afterwards which study it joined (:meth:`StorageNode.instance_stored`).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from aifi_app.dicom_node.access import CallingAddressPolicy, parse_address_rules
from aifi_app.dicom_node.association_listener import AssociationListener
from aifi_app.dicom_node.instance_keeper import InstanceKeeper, KeepingRules
from aifi_app.dicom_node.receiver_pool import ReceiverPool
from aifi_app.dicom_node.spare_files import SPARE_FILES, SPARE_FLOOR, SpareFiles
from aifi_app.dicom_node.spool import StrPath
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
from aifi_app.fault_logging import log_fault
from aifi_app.store import audit
from aifi_app.store.database import Database
from aifi_app.store.disk_space import DiskGuard
from aifi_app.store.receiving import IdleTimes

log = logging.getLogger(__name__)

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


class StorageNode:
    """Runs the Storage/Verification SCP on its own threads (one per association)."""

    def __init__(
        self,
        config: NodeConfig,
        db: Database,
        data_dir: Path,
        *,
        idle_seconds_for: IdleTimes,
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
        self._rules = KeepingRules(idle_seconds_for, late_policy, disk_guard)
        self._on_stored = on_stored
        self._on_association_end = on_association_end
        self.in_transfer = StudiesInTransfer()
        self._server: AssociationListener | None = None
        self._tls_server: AssociationListener | None = None
        self._slots = AssociationSlots(MAX_ASSOCIATIONS)
        self._keeper = InstanceKeeper(db, data_dir, self._rules)
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
                idle_seconds_for=self._rules.idle_times,
                late_policy=self._rules.late_policy,
            )
        self._keeper = InstanceKeeper(self.db, self.data_dir, self._rules)  # (started again)
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
                    db_path=self.db.path,
                    rules=self._rules,
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
            self._keeper.close()  # an association still running gets 0xA700 from here on
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
        path: StrPath | None,
        calling_ae: str,
        sop_instance_uid: str,
        start: DataSetStart | None = None,
    ) -> int:
        """Keep one received instance (the file at ``path``); the C-STORE status to send."""
        status, study_id = self._keeper.store(path, calling_ae, sop_instance_uid, start)
        if study_id is not None:
            self.in_transfer.add(study_id)
            self._on_stored(study_id)
        return status

    def accept_file(
        self,
        tmp: Path,
        calling_ae: str,
        affected_sop_instance_uid: str,
        start: DataSetStart | None = None,
    ) -> int:
        """Check, durably keep and record one received instance; returns its study's row id
        (:meth:`InstanceKeeper.keep`: raises :class:`StoreRefused` with the status to send)."""
        return self._keeper.keep(tmp, calling_ae, affected_sop_instance_uid, start)

    def instance_stored(self, study_id: int, key: int) -> None:
        """A receiver process's association ``key`` kept and recorded an instance of
        ``study_id`` (and answered success): its idle timer waits for the association,
        the workers hear of a new study."""
        self.in_transfer.add(study_id, key)
        self._on_stored(study_id)


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
