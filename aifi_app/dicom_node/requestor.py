"""A lean DICOM association requestor: one thread, one blocking socket, whole messages.

Why we own this loop instead of using pynetdicom's requestor: pynetdicom runs every
association on two more threads (the upper layer's reactor and the association's loop)
and hands every PDU between them through queues and its state machine. DCMTK's
``storescp`` accepts PDUs of 16 KiB only, so a 500-slice CT (256 MiB) is some 16,000
P-DATA-TF PDUs; measured on the 100-slice bench CT sent to storescp with TCP_NODELAY,
that hand-off made our send 0.81 s against storescu's 0.23 s (0.28x), nearly all of it
per-PDU Python work in pynetdicom's threads and not in the socket.

Here a C-STORE is: one encoded command set, the file's data set read in blocks of a few
MiB, each block cut into PDVs that respect the peer's maximum PDU length, and all of a
block's PDU headers and data slices handed to the kernel in one ``sendmsg``; then one read
of the response. No copies of the pixel data (over TLS: one, into the TLS layer), no
per-PDU objects or threads. The same CT now takes 0.25 s (storescu 0.23-0.48 s on the same
busy machine): see ``bench/README.md``.

pynetdicom still does what it is good at: the A-ASSOCIATE-RQ is built and encoded with its
PDU classes and primitives, the AC/RJ/ABORT PDUs are decoded by them, and DIMSE command
sets are built with its message classes and encoded/decoded with ``pynetdicom.dsutils``.

The socket gets TCP_NODELAY, and TCP_QUICKACK re-armed before each read
(:func:`~aifi_app.dicom_node.tcp_options.quickack`): hospitals run DCMTK and Orthanc with
Nagle's algorithm on, and a response that waits for our delayed acknowledgement costs
40 ms a file. Every socket operation is bounded by the association's timeout (the socket's
own timeout mode), so a peer that stops reading (send), never answers
(DIMSE, ACSE) or never confirms the release ends the association with an error instead of
a hang.

Runs entirely on the calling thread.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from typing import cast

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext

from aifi_app.dicom_node import upper_layer as ul
from aifi_app.dicom_node.tcp_options import quickack, tune_socket
from aifi_app.net.tls import describe_tls_error

log = logging.getLogger(__name__)

APPLICATION_CONTEXT = UID("1.2.840.10008.3.1.1.1")  # DICOM Application Context (PS3.7 A.2.1)
OUR_MAX_PDU = 131072
"""The largest P-DATA-TF we accept (our Maximum Length Notification)."""
UNLIMITED_PEER_PDU = 1 << 20
"""PDU size we use with a peer that announces no maximum (0)."""
MAX_CONTROL_PDU = 1 << 20
"""The largest association-control PDU (AC, RJ, ...) we read."""
ABORT_WAIT_SECONDS = 1.0
"""How long an A-ABORT we sent waits for the peer to close the connection (ARTIM)."""
IOV_MAX = 1024  # Linux's limit on buffers in one sendmsg

_CONTEXT_RESULTS = {  # PS3.8 9.3.3.2
    1: "user rejection",
    2: "no reason given",
    3: "SOP class not supported",
    4: "transfer syntax not supported",
}
_PDU_HEADER = struct.Struct(">BBL")
_PDV_HEADER = struct.Struct(">BBLLBB")  # PDU type, reserved, PDU length, PDV length, id, flags


@dataclass(frozen=True)
class Peer:
    ae_title: str
    host: str
    port: int
    tls: ssl.SSLContext | None = None
    """DICOM TLS (:func:`aifi_app.net.tls.client_context`); None: plain TCP."""

    @property
    def tls_args(self) -> tuple[ssl.SSLContext, str] | None:
        return (self.tls, self.host) if self.tls is not None else None

    @property
    def where(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


class AssociationFailed(ConnectionError):
    """No association: peer down, refused, or not answering within the timeout."""


class UnreadableFile(OSError):
    """A file to send could not be read before any of it was sent; the link is intact."""


class LinkLost(ConnectionError):
    """The association ended while a message was under way (timeout, abort, closed socket,
    or a peer that broke the protocol); the message says which, in words."""


@dataclass
class Link:
    """An established association (requestor side). Not thread-safe: one caller at a time."""

    sock: socket.socket
    peer: Peer
    timeout: float
    peer_max_pdu: int
    accepted: dict[tuple[str, str], int]
    """(abstract syntax, transfer syntax) -> accepted presentation context ID."""
    refused: dict[tuple[str, str], str]
    """(abstract syntax, transfer syntax) -> why the peer did not accept it, in words
    (``"SOP class not supported"``)."""
    _rx: bytearray = field(default_factory=bytearray)
    open: bool = True

    # -- sending --------------------------------------------------------------------------

    def send_message(
        self,
        context_id: int,
        command: bytes,
        data: Iterable[bytes | memoryview] = (),
        size: int = 0,
    ) -> None:
        """Send one DIMSE message: ``command`` (an encoded command set), then the data set
        from ``data`` (blocks of any length, ``size`` bytes in all; nothing for none).

        Each block goes out as PDVs of the peer's maximum PDU length, all in one
        ``sendmsg``; the command set leaves with the first block. An ``OSError`` raised by
        ``data`` before anything was sent is :class:`UnreadableFile` (the link stays
        usable); later, :class:`LinkLost` (a message cut short cannot be taken back).
        """
        chunk = self.peer_max_pdu - 6  # a PDU holds one PDV: 4 + 1 + 1 bytes of headers
        buffers: list[bytes | memoryview] = []
        for start in range(0, max(len(command), 1), chunk):
            piece = command[start : start + chunk]
            last = start + chunk >= len(command)
            buffers.append(_pdv_header(context_id, len(piece), 0x03 if last else 0x01))
            buffers.append(piece)
        sent = 0
        blocks = iter(data)
        while True:
            try:
                block = next(blocks, None)
            except (OSError, EOFError) as exc:
                if buffers:  # the command set is still here: nothing went out yet
                    raise UnreadableFile(f"the file cannot be read ({type(exc).__name__})") from exc
                raise LinkLost("the file could not be read to its end") from exc
            if block is None:
                break
            view = memoryview(block)
            for start in range(0, len(view), chunk):
                part = view[start : start + chunk]
                sent += len(part)
                buffers.append(_pdv_header(context_id, len(part), 0x02 if sent >= size else 0x00))
                buffers.append(part)
            self._send(buffers)
            buffers = []
        if buffers:
            self._send(buffers)
        if sent != size:
            raise LinkLost(f"the data set had {sent} bytes, not {size}")

    def _send(self, buffers: list[bytes | memoryview]) -> None:
        try:
            if isinstance(self.sock, ssl.SSLSocket):  # no sendmsg on TLS sockets
                self.sock.sendall(b"".join(buffers))
            else:
                _sendmsg_all(self.sock, buffers)
        except TimeoutError as exc:
            raise LinkLost(f"the peer took no data for {self.timeout:g} s") from exc
        except ssl.SSLError as exc:
            raise LinkLost(f"TLS failed: {describe_tls_error(exc)}") from exc
        except OSError as exc:
            raise LinkLost(f"connection lost ({_reason(exc)})") from exc

    # -- receiving ------------------------------------------------------------------------

    def read_pdu(self, limit: int = MAX_CONTROL_PDU) -> tuple[int, bytes]:
        """The next PDU (type, whole PDU) within the timeout; LinkLost otherwise."""
        self._fill(6)
        pdu_type, _, length = _PDU_HEADER.unpack_from(self._rx)
        if length > limit:
            name = ul.PDU_NAMES.get(pdu_type, f"PDU of type 0x{pdu_type:02X}")
            raise LinkLost(f"the peer sent a {name} of {length} bytes, over our maximum of {limit}")
        self._fill(6 + length)
        pdu = bytes(self._rx[: 6 + length])
        del self._rx[: 6 + length]
        return pdu_type, pdu

    def _fill(self, n: int) -> None:
        while len(self._rx) < n:
            quickack(self.sock)
            try:
                got = self.sock.recv(max(65536, n - len(self._rx)))
            except TimeoutError as exc:
                raise LinkLost(f"no answer within {self.timeout:g} s") from exc
            except ssl.SSLError as exc:
                raise LinkLost(f"TLS failed: {describe_tls_error(exc)}") from exc
            except OSError as exc:
                raise LinkLost(f"connection lost ({_reason(exc)})") from exc
            if not got:
                raise LinkLost("the peer closed the connection")
            self._rx += got

    def read_response(self, message_id: int, command_field: int) -> Dataset:
        """The response command set to ``message_id``; LinkLost when the association ends
        or the peer sends something else."""
        command = bytearray()
        while True:
            pdu_type, pdu = self.read_pdu(limit=OUR_MAX_PDU)
            if pdu_type == ul.A_ABORT:
                abort = A_ABORT_RQ()
                abort.decode(pdu)
                raise LinkLost(f"aborted by the peer ({abort.source_str}: {abort.reason_str})")
            if pdu_type != ul.P_DATA_TF:
                name = ul.PDU_NAMES.get(pdu_type, f"0x{pdu_type:02X}")
                raise LinkLost(f"the peer sent an unexpected {name}")
            pdata = P_DATA_TF()
            pdata.decode(pdu)
            for pdv in pdata.presentation_data_value_items:
                value = cast(bytes, pdv.presentation_data_value)
                if value and value[0] & 1:  # a command fragment (data set fragments: none)
                    command += value[1:]
                    if value[0] & 2:
                        return self._response(bytes(command), message_id, command_field)

    def _response(self, encoded: bytes, message_id: int, command_field: int) -> Dataset:
        try:
            rsp = decode(BytesIO(encoded), True, True)
            got_field = int(rsp.CommandField)
            got_id = int(rsp.MessageIDBeingRespondedTo)
            int(rsp.Status)
        except (AttributeError, ValueError, TypeError, KeyError) as exc:
            raise LinkLost("the peer sent a response that cannot be read") from exc
        if got_field != command_field or got_id != message_id:
            raise LinkLost(
                f"the peer answered message {got_id} (command 0x{got_field:04X}),"
                f" not {message_id} (0x{command_field:04X})"
            )
        return rsp

    # -- ending ---------------------------------------------------------------------------

    def release(self) -> None:
        """A-RELEASE-RQ, then wait (within the timeout) for the A-RELEASE-RP; always closes."""
        try:
            self._send([ul.RELEASE_RQ])
            while True:
                pdu_type, _ = self.read_pdu(limit=OUR_MAX_PDU)
                if pdu_type in (ul.A_RELEASE_RP, ul.A_ABORT):  # released, or aborted
                    return
                if pdu_type == ul.A_RELEASE_RQ:  # a collision: the requestor answers first (AR-9)
                    self._send([ul.RELEASE_RP])
        except LinkLost as exc:
            log.warning("release of the association with %s: %s", self.peer.where, exc)
        finally:
            self.close()

    def abort(self) -> None:
        """A-ABORT (as service user), then close once the peer has closed, or after at
        most ``ABORT_WAIT_SECONDS``.

        PS3.8 (AA-1, state 13): whoever sends the A-ABORT waits for the peer to close the
        connection, under the ARTIM timer. Closing at once while the peer's data is still
        unread makes the kernel reset the connection, and a reset can throw away our
        A-ABORT before the peer has read it; so what the peer still sends is read and
        dropped until it closes.
        """
        if self.open:
            with contextlib.suppress(OSError):
                wait = min(self.timeout, ABORT_WAIT_SECONDS)
                self.sock.settimeout(wait)
                self.sock.sendall(ul.encode_abort(ul.SOURCE_SERVICE_USER, 0))
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline and self.sock.recv(65536):
                    pass
        self.close()

    def close(self) -> None:
        self.open = False
        with contextlib.suppress(OSError):
            self.sock.close()


def associate(
    peer: Peer,
    *,
    calling_ae_title: str,
    contexts: Sequence[tuple[str, str]],
    timeout: float,
) -> Link:
    """Connect (TCP, then TLS when ``peer.tls``) and negotiate an association proposing
    ``contexts`` ((abstract syntax, transfer syntax) pairs, one transfer syntax each).

    Raises :class:`AssociationFailed`, with the reason in words, when no association is
    made: nothing listens, TLS fails, the peer rejects or aborts, or no answer in time.
    """
    if not 0 < len(contexts) <= 128:
        raise ValueError(
            f"an association proposes 1 to 128 presentation contexts, not {len(contexts)}"
        )
    where = peer.where
    try:
        raw = socket.create_connection((peer.host, peer.port), timeout=timeout)
    except OSError as exc:
        raise AssociationFailed(f"cannot connect to {where} ({_reason(exc)})") from exc
    tune_socket(raw)
    sock: socket.socket = raw
    if peer.tls is not None:
        try:
            sock = peer.tls.wrap_socket(raw, server_hostname=peer.host)
        except OSError as exc:
            raw.close()
            raise AssociationFailed(f"TLS with {where} failed: {describe_tls_error(exc)}") from exc
    sock.settimeout(timeout)
    ids = {pair: 2 * i + 1 for i, pair in enumerate(contexts)}
    link = Link(sock, peer, timeout, OUR_MAX_PDU, {}, {})
    try:
        link._send([_associate_rq(peer, calling_ae_title, ids)])
        pdu_type, pdu = link.read_pdu()
    except LinkLost as exc:
        link.close()
        if isinstance(exc.__cause__, ssl.SSLError):  # e.g. TLS 1.3: our certificate refused
            why = describe_tls_error(exc.__cause__)
            raise AssociationFailed(f"TLS with {where} failed: {why}") from exc
        raise _no_association(peer, str(exc), timeout) from exc
    if pdu_type == ul.A_ASSOCIATE_RJ:
        rj = A_ASSOCIATE_RJ()
        rj.decode(pdu)
        link.close()
        raise AssociationFailed(f"no association with {where} (rejected: {_rejection(rj)})")
    if pdu_type == ul.A_ABORT:
        abort = A_ABORT_RQ()
        abort.decode(pdu)
        link.close()
        raise _no_association(peer, f"aborted: {abort.source_str}, {abort.reason_str}", timeout)
    if pdu_type != ul.A_ASSOCIATE_AC:
        link.abort()
        name = ul.PDU_NAMES.get(pdu_type, f"0x{pdu_type:02X}")
        raise AssociationFailed(f"no association with {where} (the peer answered {name})")
    ac = A_ASSOCIATE_AC()
    ac.decode(pdu)
    _take_acceptance(link, ac, ids)
    return link


def _associate_rq(peer: Peer, calling_ae_title: str, ids: dict[tuple[str, str], int]) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APPLICATION_CONTEXT
    primitive.calling_ae_title = calling_ae_title
    primitive.called_ae_title = peer.ae_title
    proposed = []
    for (abstract, syntax), context_id in ids.items():
        context = PresentationContext()
        context.context_id = context_id
        context.abstract_syntax = UID(abstract)
        context.transfer_syntax = [UID(syntax)]
        proposed.append(context)
    primitive.presentation_context_definition_list = proposed
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = OUR_MAX_PDU
    class_uid = ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = PYNETDICOM_IMPLEMENTATION_VERSION
    primitive.user_information = [max_length, class_uid, version]
    rq = A_ASSOCIATE_RQ()
    rq.from_primitive(primitive)
    return rq.encode()


def _take_acceptance(link: Link, ac: A_ASSOCIATE_AC, ids: dict[tuple[str, str], int]) -> None:
    results = {item.context_id: item for item in ac.presentation_context}
    for pair, context_id in ids.items():
        item = results.get(context_id)
        if item is None:
            link.refused[pair] = "not answered"
        elif item.result != 0:
            link.refused[pair] = _CONTEXT_RESULTS.get(item.result or 0, f"result {item.result}")
        elif str(item.transfer_syntax) != pair[1]:
            link.refused[pair] = "another transfer syntax chosen"
        else:
            link.accepted[pair] = context_id
    peer_max = ac.user_information.maximum_length if ac.user_information else None
    link.peer_max_pdu = max(int(peer_max or 0), 0) or UNLIMITED_PEER_PDU
    link.peer_max_pdu = max(link.peer_max_pdu, 7)  # room for one byte of data per PDV


def _no_association(peer: Peer, why: str, timeout: float) -> AssociationFailed:
    """The failure in words; over TLS, the peer's refusal of our certificate first.

    With TLS 1.3 the handshake completes before the server has checked our certificate; a
    server that refuses it says so in an alert that may be lost when the connection resets.
    """
    if peer.tls is not None:
        refusal = _tls_refusal(peer, timeout)
        if refusal is not None:
            return AssociationFailed(f"TLS with {peer.where} failed: {refusal}")
    if why.startswith("no answer"):
        why = "no answer"
    return AssociationFailed(f"no association with {peer.where} ({why})")


def _tls_refusal(peer: Peer, timeout: float) -> str | None:
    """Why the peer refused our TLS connection after the handshake, if it did.

    Looked for only once an association failed, so a good link pays nothing.
    """
    assert peer.tls is not None
    try:
        with (
            socket.create_connection((peer.host, peer.port), timeout=timeout) as raw,
            peer.tls.wrap_socket(raw, server_hostname=peer.host) as tls,
        ):
            tls.settimeout(min(timeout, 2.0))
            tls.recv(1)
    except ssl.SSLError as exc:
        return describe_tls_error(exc)
    except OSError:
        return None
    return None


def _rejection(rj: A_ASSOCIATE_RJ) -> str:
    try:
        reason = rj.reason_str
        result = "permanent" if rj.result == 1 else "transient"
    except ValueError:
        return f"result {rj.result}, source {rj.source}, reason {rj.reason_diagnostic}"
    return f"{reason[:1].lower()}{reason[1:]}, {result}"


def command_set(message: DIMSEMessage) -> bytes:
    """A DIMSE message's command set, encoded (implicit VR little endian)."""
    encoded = encode(message.command_set, True, True)
    if encoded is None:
        raise ValueError("the command set cannot be encoded")
    return encoded


def _pdv_header(context_id: int, length: int, flags: int) -> bytes:
    return _PDV_HEADER.pack(ul.P_DATA_TF, 0, length + 6, length + 2, context_id, flags)


def _sendmsg_all(sock: socket.socket, buffers: list[bytes | memoryview]) -> None:
    """Send every buffer, as few ``sendmsg`` calls as the kernel allows."""
    views = [memoryview(b) for b in buffers]
    i = 0
    while i < len(views):
        sent = sock.sendmsg(views[i : i + IOV_MAX])
        while sent and i < len(views):
            n = len(views[i])
            if sent >= n:
                sent -= n
                i += 1
            else:
                views[i] = views[i][sent:]
                sent = 0
        while i < len(views) and not len(views[i]):
            i += 1


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
