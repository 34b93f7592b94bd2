"""The DICOM upper layer's framing (PS3.8 section 9): whole PDUs read off a socket.

A PDU is a 6-byte header (type, reserved, 4-byte big-endian length) and its variable
field. :class:`PduReader` reads the header and then the whole variable field with
``recv_into`` into one buffer that it reuses for every PDU of the association (it only
grows), and hands out a ``memoryview`` of it: no per-PDU allocation, no copy. The view is
valid until the next read. A P-DATA-TF PDU's presentation data values are parsed in place
by :func:`pdv_items` (offsets into that view).

The socket's timeout (:func:`~aifi_app.dicom_node.tcp_options.set_timeout`) is the upper
layer's timer: the ARTIM timer while an A-ASSOCIATE-RQ is awaited, the network (idle)
timer afterwards. A read that runs past
it raises :class:`PduTimeout`; a peer that closes raises :class:`PeerClosed`.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import Final

from pynetdicom import pdu as pdu_classes

from aifi_app.dicom_node.tcp_options import quickack

A_ASSOCIATE_RQ: Final = 0x01
A_ASSOCIATE_AC: Final = 0x02
A_ASSOCIATE_RJ: Final = 0x03
P_DATA_TF: Final = 0x04
A_RELEASE_RQ: Final = 0x05
A_RELEASE_RP: Final = 0x06
A_ABORT: Final = 0x07
KNOWN_PDU_TYPES: Final = frozenset(range(0x01, 0x08))

HEADER_LENGTH: Final = 6
ASSOCIATION_PDU_LIMIT: Final = 1 << 20
"""Largest A-ASSOCIATE-RQ we read (a request proposing 128 contexts is some tens of KiB)."""
UNLIMITED_PDATA_LIMIT: Final = 1 << 26
"""Largest P-DATA-TF we read when our maximum PDU length is 0 (no limit announced)."""

# A-ABORT sources (PS3.8 Table 9-26)
SOURCE_SERVICE_USER: Final = 0x00
SOURCE_SERVICE_PROVIDER: Final = 0x02
# A-ABORT reasons when the source is the service provider
REASON_NOT_SPECIFIED: Final = 0x00
REASON_UNRECOGNIZED_PDU: Final = 0x01
REASON_UNEXPECTED_PDU: Final = 0x02
REASON_UNRECOGNIZED_PARAMETER: Final = 0x04
REASON_UNEXPECTED_PARAMETER: Final = 0x05
REASON_INVALID_PARAMETER: Final = 0x06

_HEADER = struct.Struct(">BxL")
_ITEM_LENGTH = struct.Struct(">L")


class UpperLayerError(Exception):
    """The association cannot go on; ``reason`` is the A-ABORT reason to send (or None)."""

    def __init__(self, message: str, reason: int | None = REASON_NOT_SPECIFIED) -> None:
        super().__init__(message)
        self.reason = reason


class PeerClosed(UpperLayerError):
    """The peer closed the connection (or reset it)."""

    def __init__(self, message: str = "the peer closed the connection") -> None:
        super().__init__(message, None)


class PduTimeout(UpperLayerError):
    """Nothing (or not the whole PDU) came within the socket's timeout."""

    def __init__(self, message: str = "the peer sent nothing within the timeout") -> None:
        super().__init__(message, REASON_NOT_SPECIFIED)


class PduReader:
    """Reads whole PDUs from ``sock`` into one reused buffer.

    Each body's last read also asks for the next PDU's header (up to 6 bytes more, kept
    for the next :meth:`read`): when the peer has already sent it, as a sender streaming
    a data set has, that header costs no read of its own. A read never waits for those
    bytes: ``recv_into`` returns what is there.
    """

    def __init__(self, sock: socket.socket, *, initial_size: int = 1 << 16) -> None:
        self._sock = sock
        self._header = bytearray(HEADER_LENGTH)
        self._header_view = memoryview(self._header)
        self._next = bytearray(HEADER_LENGTH)
        self._next_length = 0
        """Bytes of the next PDU's header read with the last body (0-6)."""
        self._buffer = bytearray(initial_size + HEADER_LENGTH)
        self._view = memoryview(self._buffer)

    def _fill(self, view: memoryview, wanted: int) -> int:
        """Read at least ``wanted`` bytes into ``view`` (up to its length); the count."""
        sock = self._sock
        room = len(view)
        done = 0
        while done < wanted:
            try:
                n = sock.recv_into(view[done:], room - done)
            except (TimeoutError, BlockingIOError) as exc:  # (the kernel's timeout: EAGAIN)
                raise PduTimeout() from exc
            except (ConnectionError, OSError) as exc:
                raise PeerClosed(f"the connection failed ({type(exc).__name__})") from exc
            if not n:
                raise PeerClosed()
            done += n
        return done

    def read(self, limit: int) -> tuple[int, memoryview]:
        """The next PDU's type and its variable field (valid until the next read).

        A PDU longer than ``limit`` (or of an unknown type) ends the association.
        """
        quickack(self._sock)  # acknowledge at once: a peer with Nagle on does not wait on us
        have = self._next_length
        if have:
            self._header[:have] = self._next[:have]
            self._next_length = 0
        if have < HEADER_LENGTH:
            self._fill(self._header_view[have:], HEADER_LENGTH - have)
        pdu_type, length = _HEADER.unpack(self._header)
        if pdu_type not in KNOWN_PDU_TYPES:
            raise UpperLayerError(
                f"unrecognized PDU type 0x{pdu_type:02X}", REASON_UNRECOGNIZED_PDU
            )
        if length > limit:
            raise UpperLayerError(
                f"PDU of type 0x{pdu_type:02X} is {length} bytes long, more than {limit}",
                REASON_INVALID_PARAMETER,
            )
        if length + HEADER_LENGTH > len(self._buffer):
            self._view.release()
            self._buffer = bytearray(length + HEADER_LENGTH)
            self._view = memoryview(self._buffer)
        done = self._fill(self._view[: length + HEADER_LENGTH], length) if length else 0
        extra = done - length
        if extra:
            self._next[:extra] = self._view[length:done]
            self._next_length = extra
        return pdu_type, self._view[:length]

    def header(self) -> bytes:
        """The last PDU's header (pynetdicom's PDU classes decode header and body together)."""
        return bytes(self._header)


def pdv_items(body: memoryview) -> Iterator[tuple[int, int, int, int]]:
    """The presentation data values of a P-DATA-TF's variable field, in order.

    Each as ``(context_id, message_control_header, start, end)``: the fragment is
    ``body[start:end]``. Raises :class:`UpperLayerError` for an item that overruns the
    PDU or is too short to hold its context ID and control header.
    """
    offset = 0
    total = len(body)
    if total == 0:
        raise UpperLayerError(
            "P-DATA-TF without presentation data values", REASON_INVALID_PARAMETER
        )
    while offset < total:
        if total - offset < 6:
            raise UpperLayerError(
                "truncated presentation data value item", REASON_INVALID_PARAMETER
            )
        (length,) = _ITEM_LENGTH.unpack_from(body, offset)
        end = offset + 4 + length
        if length < 2 or end > total:
            raise UpperLayerError(
                "presentation data value item length is invalid", REASON_INVALID_PARAMETER
            )
        yield body[offset + 4], body[offset + 5], offset + 6, end
        offset = end


def encode_pdu(pdu_type: int, body: bytes) -> bytes:
    """A PDU of ``pdu_type`` with ``body`` as its variable field."""
    return _HEADER.pack(pdu_type, len(body)) + body


def encode_p_data(context_id: int, control: int, fragment: bytes) -> bytes:
    """A P-DATA-TF PDU holding one presentation data value."""
    item = _ITEM_LENGTH.pack(len(fragment) + 2) + bytes((context_id, control)) + fragment
    return encode_pdu(P_DATA_TF, item)


def encode_abort(source: int, reason: int) -> bytes:
    """An A-ABORT PDU (PS3.8 section 9.3.8), by pynetdicom's PDU class."""
    pdu = pdu_classes.A_ABORT_RQ()
    pdu.source = source
    pdu.reason_diagnostic = reason if source == SOURCE_SERVICE_PROVIDER else 0
    return pdu.encode()


RELEASE_RQ: Final = pdu_classes.A_RELEASE_RQ().encode()
"""The A-RELEASE-RQ PDU (always the same bytes)."""
RELEASE_RP: Final = pdu_classes.A_RELEASE_RP().encode()
"""The A-RELEASE-RP PDU (always the same bytes)."""
PDU_NAMES: Final = {
    A_ASSOCIATE_RQ: "A-ASSOCIATE-RQ",
    A_ASSOCIATE_AC: "A-ASSOCIATE-AC",
    A_ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
    P_DATA_TF: "P-DATA-TF",
    A_RELEASE_RQ: "A-RELEASE-RQ",
    A_RELEASE_RP: "A-RELEASE-RP",
    A_ABORT: "A-ABORT",
}
