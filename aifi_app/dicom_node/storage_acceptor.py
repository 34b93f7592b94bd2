"""One association of our Storage/Verification SCP, served on one thread, start to end.

Why we own this loop rather than use pynetdicom's acceptor: pynetdicom runs every
association as two threads (the upper layer's reactor and the association's loop) with
queues between them; each PDU passes through its state machine, is decoded into a PDU
object, copied into a P-DATA primitive, queued, reassembled by the DIMSE layer, written
through a NamedTemporaryFile and announced by events. Measured on a 100-slice CT from
DCMTK ``storescu`` (``python -m bench --quick --only ingest``) that came to about 10 ms an
instance, where DCMTK's ``storescp`` needs 2.5 ms and a durable store (file fsync, queue
commit) about 1.5 ms: most of our time went to those per-PDU hand-offs, even after
our earlier subclasses of its loops had removed pynetdicom's polling sleeps. Here one
thread reads whole PDUs with blocking ``recv_into`` into one reused buffer
(:mod:`aifi_app.dicom_node.upper_layer`), parses each P-DATA-TF in place and writes the
data set's fragments straight to the instance's file, whose file meta (pydicom) was
written first from the command and the presentation context.

pynetdicom and pydicom still do what they are good at and what is not per PDU: decoding
the A-ASSOCIATE-RQ and encoding the A-ASSOCIATE-AC/RJ and A-ABORT/A-RELEASE-RP
(:mod:`pynetdicom.pdu`), presentation context and SCP/SCU role negotiation
(:func:`pynetdicom.presentation.negotiate_as_acceptor`) and decoding the peer's DIMSE
command sets when they are not in the plain encoding (:mod:`pynetdicom.dsutils`). Our two
fixed-layout encodings per instance, the file meta and the response, are packed directly
and the plain command set is read directly (:mod:`aifi_app.dicom_node.command_sets`,
tested against pydicom's), which saves about 2 ms of pydicom per instance. The data set's
first :data:`~aifi_app.dicom_node.header_scan.HEAD_BYTES` are kept in memory as they arrive,
for the node's header checks (:mod:`aifi_app.dicom_node.header_scan`).

Write-back while the data arrives: the file's dirty pages are queued for writing
(``sync_file_range``, asynchronous) each time another :data:`WRITEBACK_AFTER_BYTES`
arrived, so the disk writes while the rest of the data set is still on the network and the
fsync after the last fragment waits for little more than the last PDU. Measured on the
bench's 4 MiB radiographs with 1 MiB steps: the durable move fell from about 5 to under
2 ms an instance. With 128 KiB steps a 0.5 MiB CT slice gets it too: the 500-slice CT
over one association gained (0.50-0.56x -> 0.67-0.72x ``storescp``), four at once did
not (there the two cores are the limit, and the earlier write-back costs system time);
the alternating series are in ``bench/README.md``, "Where we stand".

A file up to 1 MiB has its CRC-32 computed as it is written (ISA-L or zlib, outside the
interpreter's lock; 0.06 ms for a 0.5 MB slice with ISA-L, 0.2-0.5 ms with zlib) and set
on it as an extended attribute after the last fragment
(:func:`aifi_app.dicom_node.spool.set_checksum`): then
:func:`~aifi_app.dicom_node.spool.durable_move` may give it its spool name before the one
flush that makes data and name durable together, and a start after a power cut can still
tell a whole file from one cut short. Where no attribute can be set (Windows, a file
system without them), and for larger files, the file is flushed through its descriptor
before it is closed, and moved after that. Measured (in-process node, 200-slice CT,
alternating runs; bench-like runs, 500 slices): about even with flushing every file
first when the disk is quiet; one journal commit an instance fewer, which is what costs
when other processes keep the disk busy (3.3 + 2.1 ms against 3.8 + 3.9 ms for file and
folder flush, `spool.durable_move`).

The file meta names the calling AE title (Sending Application Entity Title) and ours
(Receiving), so that the file alone says where it came from
(:mod:`aifi_app.dicom_node.spool_recovery` records it from the file after a power cut).

The upper layer's states collapse to: awaiting the A-ASSOCIATE-RQ (ARTIM: the network
timeout), established (the network timeout between reads is the idle timer), and after
an A-RELEASE-RP or a rejection awaiting the peer's close (ARTIM again). Anything the peer
sends that the state does not expect, or that cannot be parsed, ends the association
with an A-ABORT; a partial instance file is removed and nothing is recorded.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import logging
import os
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, cast

from pynetdicom import pdu as pdu_classes
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor

from aifi_app.dicom_node import command_sets
from aifi_app.dicom_node import upper_layer as ul
from aifi_app.dicom_node.header_scan import HEAD_BYTES
from aifi_app.dicom_node.plain_negotiation import Negotiated, negotiate_plain
from aifi_app.dicom_node.spare_files import CREATE_FLAGS, SpareFiles
from aifi_app.dicom_node.spool import StrPath, crc32, set_checksum
from aifi_app.dicom_node.tcp_options import set_timeout
from aifi_app.fault_logging import log_fault

log = logging.getLogger(__name__)

APPLICATION_CONTEXT_NAME: Final = "1.2.840.10008.3.1.1.1"

# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 Table 9-21
REJECT_CALLING_AE_NOT_RECOGNIZED: Final = (0x01, 0x01, 0x03)
REJECT_LOCAL_LIMIT_EXCEEDED: Final = (0x02, 0x03, 0x02)

# DIMSE command fields (PS3.7 Annex E)
C_STORE_RQ: Final = 0x0001
C_ECHO_RQ: Final = 0x0030
C_STORE_RSP, C_ECHO_RSP, NO_DATA_SET = (
    command_sets.C_STORE_RSP,
    command_sets.C_ECHO_RSP,
    command_sets.NO_DATA_SET,
)

PDATA_SLACK: Final = 4
"""A P-DATA-TF may be up to this many times our maximum PDU length before we abort."""

_PREAMBLE: Final = b"\x00" * 128 + b"DICM"
_names = itertools.count()


class AssociationSlots:
    """Associations in progress, counted against a limit (shared by the node's listeners)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._active = 0
        self._changed = time.monotonic()
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self._active += 1
            self._changed = time.monotonic()

    def leave(self) -> None:
        with self._lock:
            self._active -= 1
            self._changed = time.monotonic()

    @property
    def quiet_seconds(self) -> float:
        """Seconds since the last association began or ended; 0 while one is in progress."""
        with self._lock:
            return 0.0 if self._active > 0 else time.monotonic() - self._changed

    @property
    def over_limit(self) -> bool:
        with self._lock:
            return self._active > self.limit


class StorageService(Protocol):
    """What the node does with an association's requests (:class:`StorageNode`)."""

    def refuse_association(self, calling_ae: str, address: str) -> str | None:
        """Why a new association is refused for now (transient), or None; audits it."""

    def association_rejected(
        self, calling_ae: str, address: str, reason: str, tls_peer: str | None
    ) -> None:
        """A request that was rejected (permanent or over the limit); audits it."""

    def store(
        self,
        path: StrPath | None,
        calling_ae: str,
        sop_instance_uid: str,
        start: DataSetStart | None = None,
    ) -> int:
        """Keep the instance in the file at ``path`` (or remove it); the C-STORE status.

        ``path`` None: the data set arrived but could not be written (disk); audit it.
        ``start``: the data set's beginning, in memory (None: read the file).
        """


CallingAddressCheck = Callable[[str, str], str | None]
"""(calling AE title, peer IP address) -> why the pair is refused, or None to go on."""


@dataclass(frozen=True)
class AcceptorSettings:
    """What every association of a node shares."""

    ae_title: str
    max_pdu_size: int
    """The maximum length of P-DATA-TF variable fields we receive (0: no limit)."""
    timeout: float
    """ARTIM and network (idle) timeout, seconds."""
    allowed_calling_ae_titles: frozenset[str]
    supported_contexts: tuple[PresentationContext, ...]
    implementation_class_uid: str
    implementation_version_name: str
    incoming: Path
    """Where data sets are written while they arrive (on the spool's file system)."""
    address_check: CallingAddressCheck | None = None
    spare_files: SpareFiles | None = field(default=None, compare=False)
    """Empty files made ahead in ``incoming`` (:mod:`aifi_app.dicom_node.spare_files`)."""

    @functools.cached_property
    def supported_by_abstract_syntax(self) -> dict[str, list[str]]:
        """``supported_contexts`` as abstract syntax -> transfer syntaxes, in order."""
        return {
            str(cx.abstract_syntax): [str(ts) for ts in cx.transfer_syntax]
            for cx in self.supported_contexts
        }

    negotiations: NegotiationCache = field(
        default_factory=lambda: NegotiationCache(), compare=False
    )


def supported_contexts(abstract_syntaxes: dict[str, list[str]]) -> tuple[PresentationContext, ...]:
    """Acceptor contexts for ``{abstract syntax: [transfer syntaxes]}`` (no roles set)."""
    contexts = []
    for abstract_syntax, transfer_syntaxes in abstract_syntaxes.items():
        cx = PresentationContext()
        cx.abstract_syntax = abstract_syntax
        cx.transfer_syntax = list(transfer_syntaxes)
        contexts.append(cx)
    return tuple(contexts)


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` (Linux), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], func)


_SYNC_FILE_RANGE: Final = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE: Final = 2
WRITEBACK_AFTER_BYTES = 1 << 17
"""Start writing a data set to disk while it arrives, each time this much more came
(0: never): every one or two PDUs at the node's default 128 KiB maximum PDU size, so that
a 0.5 MiB CT slice is mostly on disk when its last fragment comes (64 and 256 KiB measured
about the same; 1 MiB never reached a slice)."""
CHECKSUM_UP_TO_BYTES = 1 << 20
"""Files up to this size are checksummed and named before their one flush; larger ones
(already mostly on disk, :data:`WRITEBACK_AFTER_BYTES`) are flushed before they are
named, which costs less than the checksum (4 ms for a 4 MiB radiograph on a busy CPU)."""


@dataclass(frozen=True)
class DataSetStart:
    """A received data set's transfer syntax and first bytes, kept in memory."""

    transfer_syntax: str
    head: bytes
    complete: bool
    """``head`` is the whole data set."""
    flushed: bool = False
    """The file is complete on disk (fsynced) under its incoming name."""
    checksummed: bool = False
    """The file carries its CRC-32 and size (:func:`~aifi_app.dicom_node.spool.set_checksum`)."""


class _Incoming:
    """One data set being written to its file while it arrives."""

    def __init__(
        self,
        folder: Path,
        file_meta: bytes,
        transfer_syntax: str,
        spare: SpareFiles | None = None,
    ) -> None:
        taken = spare.take() if spare is not None else None
        if taken is not None:
            self.path, fd = taken
        else:
            name = f"{os.getpid()}-{threading.get_ident()}-{next(_names)}.dcm"
            self.path = os.path.join(folder, name)
            fd = os.open(self.path, CREATE_FLAGS, 0o600)
        self.fd: int | None = fd
        self.transfer_syntax = transfer_syntax
        self.head = bytearray()
        """The data set's first :data:`HEAD_BYTES` (for :func:`scan_header`)."""
        self.data_set_bytes = -len(_PREAMBLE) - len(file_meta)
        self._unflushed = 0
        self._crc: int | None = 0
        """The CRC-32 so far; None: larger than :data:`CHECKSUM_UP_TO_BYTES`."""
        self._size = 0
        self.write(_PREAMBLE + file_meta)

    def start(self, *, flushed: bool, checksummed: bool) -> DataSetStart:
        """The data set's beginning, as received (after the last fragment)."""
        return DataSetStart(
            self.transfer_syntax,
            bytes(self.head),
            len(self.head) == self.data_set_bytes,
            flushed,
            checksummed,
        )

    def write(self, data: bytes | memoryview) -> None:
        fd = self.fd
        assert fd is not None
        view = memoryview(data)
        if self.data_set_bytes >= 0 and len(self.head) < HEAD_BYTES:
            self.head += view[: HEAD_BYTES - len(self.head)]
        self.data_set_bytes += len(view)
        self._unflushed += len(view)
        self._size += len(view)
        if self._crc is not None:
            if self._size <= CHECKSUM_UP_TO_BYTES:
                self._crc = crc32(view, self._crc)
            else:
                self._crc = None
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if 0 < WRITEBACK_AFTER_BYTES <= self._unflushed and _SYNC_FILE_RANGE is not None:
            # asynchronous: queues the dirty pages for writing, returns at once
            _SYNC_FILE_RANGE(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)
            self._unflushed = 0

    def close(self, *, flush: bool = False) -> None:
        """Close the file; ``flush``: first flush it to disk (raises OSError if that fails)."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                if flush:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def finish(self) -> DataSetStart:
        """After the last fragment: label the file with its checksum (or, where that cannot
        be, flush it) and close it; the data set's beginning. Raises OSError (disk)."""
        fd = self.fd
        assert fd is not None
        checksummed = self._crc is not None and set_checksum(fd, self._crc, self._size)
        self.close(flush=not checksummed)
        return self.start(flushed=not checksummed, checksummed=checksummed)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def negotiate(request_pdu: bytes, settings: AcceptorSettings) -> Negotiated:
    """Decode an A-ASSOCIATE-RQ, negotiate its contexts and roles, encode our AC: a plain
    request directly (:mod:`aifi_app.dicom_node.plain_negotiation`), others by pynetdicom."""
    plain = negotiate_plain(
        request_pdu,
        settings.supported_by_abstract_syntax,
        max_pdu_size=settings.max_pdu_size,
        implementation_class_uid=settings.implementation_class_uid,
        implementation_version_name=settings.implementation_version_name,
    )
    if plain is not None:
        return plain
    return negotiate_with_pynetdicom(request_pdu, settings)


def negotiate_with_pynetdicom(request_pdu: bytes, settings: AcceptorSettings) -> Negotiated:
    """:func:`negotiate` by pynetdicom's PDU classes and negotiation (any request)."""
    try:
        rq = pdu_classes.A_ASSOCIATE_RQ()
        rq.decode(request_pdu)
        request = rq.to_primitive()
        calling = str(request.calling_ae_title).strip()
    except Exception as exc:
        raise ul.UpperLayerError(
            f"A-ASSOCIATE-RQ cannot be decoded ({type(exc).__name__})",
            ul.REASON_INVALID_PARAMETER,
        ) from exc
    peer_max_pdu = 0
    rq_roles: dict[Any, tuple[bool | None, bool | None]] = {}
    for item in request.user_information:
        if isinstance(item, MaximumLengthNotification):
            peer_max_pdu = int(item.maximum_length_received or 0)
        elif isinstance(item, SCP_SCU_RoleSelectionNegotiation):
            rq_roles[item.sop_class_uid] = (item.scu_role, item.scp_role)
    results, ac_roles = negotiate_as_acceptor(
        request.presentation_context_definition_list,
        list(settings.supported_contexts),
        rq_roles or None,
    )
    accept = A_ASSOCIATE()
    accept.application_context_name = APPLICATION_CONTEXT_NAME
    accept.calling_ae_title = request.calling_ae_title
    accept.called_ae_title = request.called_ae_title
    accept.result = 0x00
    accept.result_source = 0x01
    accept.presentation_context_definition_results_list = results
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = settings.max_pdu_size
    class_uid = ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = settings.implementation_class_uid
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = settings.implementation_version_name
    accept.user_information = [max_length, class_uid, version, *ac_roles]
    ac = pdu_classes.A_ASSOCIATE_AC()
    ac.from_primitive(accept)
    return Negotiated(
        calling_ae=calling,
        peer_max_pdu=peer_max_pdu,
        accepted={
            int(cx.context_id): str(cx.transfer_syntax[0])
            for cx in results
            if cx.result == 0 and cx.context_id
        },
        proposed=len(results),
        accept_pdu=ac.encode(),
    )


class NegotiationCache:
    """The last requests' negotiations, by the request's bytes.

    pynetdicom's decoding and encoding validate every UID: a request proposing 128
    contexts (DCMTK ``storescu``'s default) costs about 20 ms. A modality sends the same
    request for each association, and the outcome depends on nothing else (the calling
    AE title and address checks run for every association), so it is worked out once;
    associations that bring the same request at the same time wait for the first one's
    negotiation rather than each doing it (four at once cost 80 ms of the interpreter).
    """

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._entries: OrderedDict[bytes, Negotiated] = OrderedDict()
        self._running: dict[bytes, threading.Event] = {}
        self._lock = threading.Lock()

    def negotiate(self, request_pdu: bytes, settings: AcceptorSettings) -> Negotiated:
        while True:
            with self._lock:
                found = self._entries.get(request_pdu)
                if found is not None:
                    self._entries.move_to_end(request_pdu)
                    return found
                running = self._running.get(request_pdu)
                if running is None:
                    done = self._running[request_pdu] = threading.Event()
                    break
            # another association negotiates this request now; if that fails, try again
            running.wait()
        try:
            negotiated = negotiate(request_pdu, settings)
            with self._lock:
                self._entries[request_pdu] = negotiated
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
        finally:
            with self._lock:
                del self._running[request_pdu]
            done.set()
        return negotiated


class StorageAssociation:
    """Serves one accepted connection: negotiation, C-STORE/C-ECHO, release or abort."""

    def __init__(
        self,
        sock: socket.socket,
        address: str,
        settings: AcceptorSettings,
        service: StorageService,
        slots: AssociationSlots,
        *,
        tls_peer: str | None = None,
    ) -> None:
        self._sock = sock
        self._address = address
        self._settings = settings
        self._service = service
        self._slots = slots
        self._tls_peer = tls_peer
        self._reader = ul.PduReader(sock)
        self._calling = ""
        self._peer_max_pdu = 0
        self._accepted: dict[int, str] = {}
        # the DIMSE message being received
        self._command_bytes = bytearray()
        self._context_id: int | None = None
        self._command: command_sets.Command | None = None
        self._incoming: _Incoming | None = None
        self._in_slot = False

    # --- life cycle -------------------------------------------------------------------
    def run(self) -> None:
        """Serve the association until it ends; never raises."""
        self._slots.enter()
        self._in_slot = True
        try:
            set_timeout(self._sock, self._settings.timeout)
            if self._negotiate():
                self._serve()
        except ul.UpperLayerError as exc:
            log.info("association from %s ended: %s", self._calling or self._address, exc)
            if exc.reason is not None:
                self._send_quietly(ul.encode_abort(ul.SOURCE_SERVICE_PROVIDER, exc.reason))
        except Exception as exc:
            log_fault(log, "association from %s failed unexpectedly", exc, self._address)
            self._send_quietly(ul.encode_abort(ul.SOURCE_SERVICE_PROVIDER, ul.REASON_NOT_SPECIFIED))
        finally:
            if self._incoming is not None:
                self._incoming.discard()
                self._incoming = None
            self._leave_slot()
            with contextlib.suppress(OSError):
                self._sock.close()

    def _leave_slot(self) -> None:
        if self._in_slot:
            self._in_slot = False
            self._slots.leave()

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:  # a timeout (the peer stopped reading), a reset
            raise ul.PeerClosed(f"sending failed ({type(exc).__name__})") from exc

    def _send_quietly(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self._sock.sendall(data)

    def _await_close(self) -> None:
        """After our last PDU: let the peer close first (ARTIM), so that it reads it all."""
        self._leave_slot()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(ul.UpperLayerError):
            while True:
                self._reader.read(ul.UNLIMITED_PDATA_LIMIT)

    # --- association establishment ------------------------------------------------------
    def _negotiate(self) -> bool:
        try:
            pdu_type, body = self._reader.read(ul.ASSOCIATION_PDU_LIMIT)
        except ul.PduTimeout as exc:  # ARTIM expired: close, without an A-ABORT (AA-2)
            raise ul.UpperLayerError("no A-ASSOCIATE-RQ within the timeout", None) from exc
        if pdu_type != ul.A_ASSOCIATE_RQ:
            raise ul.UpperLayerError(
                f"PDU type 0x{pdu_type:02X} before an A-ASSOCIATE-RQ", ul.REASON_UNEXPECTED_PDU
            )
        settings = self._settings
        negotiated = settings.negotiations.negotiate(self._reader.header() + bytes(body), settings)
        calling = self._calling = negotiated.calling_ae

        refused = self._service.refuse_association(calling, self._address)
        if refused is not None:
            self._reject(REJECT_LOCAL_LIMIT_EXCEEDED)
            self._await_close()
            return False
        reason = None
        rejection = REJECT_CALLING_AE_NOT_RECOGNIZED
        if settings.address_check is not None:
            reason = settings.address_check(calling, self._address)
        if reason is None and calling not in settings.allowed_calling_ae_titles:
            reason = f"calling AE {calling!r} from {self._address} is not allowed"
        if reason is None and self._slots.over_limit:
            reason = f"association limit ({self._slots.limit}) reached"
            rejection = REJECT_LOCAL_LIMIT_EXCEEDED
        if reason is not None:
            self._reject(rejection)
            self._service.association_rejected(calling, self._address, reason, self._tls_peer)
            self._await_close()
            return False

        self._peer_max_pdu = negotiated.peer_max_pdu
        self._accepted = negotiated.accepted
        self._send(negotiated.accept_pdu)
        log.info(
            "association from %s accepted (%d of %d contexts)",
            calling,
            len(self._accepted),
            negotiated.proposed,
        )
        return True

    def _reject(self, rejection: tuple[int, int, int]) -> None:
        primitive = A_ASSOCIATE()
        primitive.result, primitive.result_source, primitive.diagnostic = rejection
        rj = pdu_classes.A_ASSOCIATE_RJ()
        rj.from_primitive(primitive)
        self._leave_slot()  # before the peer can hear of it and call again
        self._send_quietly(rj.encode())

    # --- established ----------------------------------------------------------------------
    def _serve(self) -> None:
        # A P-DATA-TF longer than the maximum we announced breaks PS3.8, but some senders
        # overshoot it a little and pynetdicom's acceptor took them: we take up to four
        # times it (memory stays bounded) and abort beyond that.
        limit = PDATA_SLACK * self._settings.max_pdu_size or ul.UNLIMITED_PDATA_LIMIT
        read = self._reader.read
        while True:
            pdu_type, body = read(limit)
            if pdu_type == ul.P_DATA_TF:
                self._p_data(body)
            elif pdu_type == ul.A_RELEASE_RQ:
                if self._incoming is not None or self._command_bytes:
                    log.warning("association from %s released mid-message", self._calling)
                self._leave_slot()  # before the peer can hear of it and call again
                self._send(ul.RELEASE_RP)
                self._await_close()
                return
            elif pdu_type == ul.A_ABORT:
                log.info("association from %s aborted by the peer", self._calling)
                return
            else:
                raise ul.UpperLayerError(
                    f"unexpected PDU type 0x{pdu_type:02X}", ul.REASON_UNEXPECTED_PDU
                )

    def _p_data(self, body: memoryview) -> None:
        for context_id, control, start, end in ul.pdv_items(body):
            if context_id not in self._accepted:
                raise ul.UpperLayerError(
                    f"data on presentation context {context_id}, which was not accepted",
                    ul.REASON_INVALID_PARAMETER,
                )
            if self._context_id is None:
                self._context_id = context_id
            elif context_id != self._context_id:
                raise ul.UpperLayerError(
                    "a message's fragments on two presentation contexts",
                    ul.REASON_INVALID_PARAMETER,
                )
            if control & 0x01:  # command
                if self._command is not None:
                    raise ul.UpperLayerError(
                        "a command fragment where the data set was expected",
                        ul.REASON_UNEXPECTED_PARAMETER,
                    )
                self._command_bytes += body[start:end]
                if control & 0x02:
                    self._on_command(context_id)
            else:
                incoming = self._incoming
                if incoming is None:
                    raise ul.UpperLayerError(
                        "a data set fragment without its command", ul.REASON_UNEXPECTED_PARAMETER
                    )
                try:
                    incoming.write(body[start:end])
                except OSError:
                    # the disk refuses the data: keep reading the message, answer 0xA700
                    log.error("cannot write a received data set (disk)")
                    incoming.discard()
                    self._incoming = _Discarded(incoming.path)
                if control & 0x02:
                    self._on_data_set(context_id)

    def _on_command(self, context_id: int) -> None:
        try:
            command = command_sets.read_command(bytes(self._command_bytes))
            field, message_id, has_data_set = (
                command.field,
                command.message_id,
                command.has_data_set,
            )
        except Exception as exc:
            raise ul.UpperLayerError(
                f"DIMSE command cannot be decoded ({type(exc).__name__})",
                ul.REASON_INVALID_PARAMETER,
            ) from exc
        if field == C_ECHO_RQ and not has_data_set:
            self._respond(context_id, C_ECHO_RSP, message_id, command, 0x0000)
        elif field == C_STORE_RQ and has_data_set:
            self._command = command
            self._command_bytes = bytearray()
            transfer_syntax = self._accepted[context_id]
            meta = command_sets.file_meta(
                command.sop_class_uid,
                command.sop_instance_uid,
                transfer_syntax,
                self._settings.implementation_class_uid,
                self._settings.implementation_version_name,
                sending_ae_title=self._calling,
                receiving_ae_title=self._settings.ae_title,
            )
            try:
                settings = self._settings
                self._incoming = _Incoming(
                    settings.incoming, meta, transfer_syntax, settings.spare_files
                )
            except OSError:
                log.error("cannot create a file for a received data set (disk)")
                self._incoming = _Discarded(os.path.join(self._settings.incoming, "-"))
        else:
            raise ul.UpperLayerError(
                f"DIMSE command 0x{field:04X} is not supported here",
                ul.REASON_UNEXPECTED_PARAMETER,
            )

    def _on_data_set(self, context_id: int) -> None:
        command, incoming = self._command, self._incoming
        assert command is not None and incoming is not None
        self._incoming = None
        sop_instance_uid = command.sop_instance_uid
        start = None
        if not isinstance(incoming, _Discarded):
            try:
                start = incoming.finish()
            except OSError:
                log.error("cannot write a received data set to disk")
                incoming.discard()
        if start is not None:
            status = self._service.store(incoming.path, self._calling, sop_instance_uid, start)
        else:
            status = self._service.store(None, self._calling, sop_instance_uid)
        self._respond(context_id, C_STORE_RSP, command.message_id, command, status)

    def _respond(
        self,
        context_id: int,
        field: int,
        message_id: int,
        request: command_sets.Command,
        status: int,
    ) -> None:
        command = command_sets.response(
            field,
            message_id,
            status,
            request.sop_class_uid,
            request.sop_instance_uid if field == C_STORE_RSP else None,
        )
        self._command_bytes = bytearray()
        self._context_id = None
        self._command = None
        self._send(fragments(context_id, command, self._peer_max_pdu))


class _Discarded(_Incoming):
    """A data set the disk would not take: read to its end, written nowhere."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = None

    def write(self, data: bytes | memoryview) -> None:
        return None

    def discard(self) -> None:
        return None


def fragments(context_id: int, command: bytes, peer_max_pdu: int) -> bytes:
    """``command`` as P-DATA-TF PDUs, none longer than the peer's maximum (0: no limit)."""
    if peer_max_pdu <= 0 or len(command) + 6 <= peer_max_pdu:
        return ul.encode_p_data(context_id, 0x03, command)
    size = max(peer_max_pdu - 6, 1)
    pieces = [command[i : i + size] for i in range(0, len(command), size)]
    return b"".join(
        ul.encode_p_data(context_id, 0x03 if n == len(pieces) - 1 else 0x01, piece)
        for n, piece in enumerate(pieces)
    )
