"""PDU framing: whole PDUs from a socket however the bytes arrive, and P-DATA-TF items."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from pynetdicom import pdu as pdu_classes

from aifi_app.dicom_node import upper_layer as ul


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    yield ours, theirs
    ours.close()
    theirs.close()


def _pdv(context_id: int, control: int, data: bytes) -> bytes:
    return struct.pack(">L", len(data) + 2) + bytes((context_id, control)) + data


def test_a_pdu_sent_byte_by_byte_is_read_whole(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    body = _pdv(1, 0x02, bytes(range(256)) * 300)  # larger than the initial buffer
    wire = ul.encode_pdu(ul.P_DATA_TF, body) + ul.RELEASE_RP

    def drip() -> None:
        for i in range(0, len(wire), 997):
            theirs.sendall(wire[i : i + 997])

    sender = threading.Thread(target=drip)
    sender.start()
    reader = ul.PduReader(ours, initial_size=64)
    pdu_type, got = reader.read(1 << 20)
    assert pdu_type == ul.P_DATA_TF and bytes(got) == body
    assert reader.header() == struct.pack(">BxL", ul.P_DATA_TF, len(body))
    pdu_type, got = reader.read(1 << 20)
    assert (pdu_type, bytes(got)) == (ul.A_RELEASE_RP, b"\x00" * 4)
    sender.join()


class _CountingSocket:
    """A socket whose reads are counted (the reader's own calls)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reads = 0

    def recv_into(self, buffer: memoryview, nbytes: int) -> int:
        self.reads += 1
        return self.sock.recv_into(buffer, nbytes)

    def setsockopt(self, *args: int) -> None:
        self.sock.setsockopt(*args)


def test_a_header_already_sent_costs_no_read_of_its_own(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """PDUs the peer sent back to back: each body's read takes the next header along,
    and each PDU still gets its own header (:meth:`PduReader.header`)."""
    ours, theirs = pair
    bodies = [_pdv(1, 0x00, b"a" * 5000), _pdv(1, 0x02, b"b" * 300), b"\x00" * 4]
    types = [ul.P_DATA_TF, ul.P_DATA_TF, ul.A_RELEASE_RQ]
    theirs.sendall(b"".join(ul.encode_pdu(t, b) for t, b in zip(types, bodies, strict=True)))
    counting = _CountingSocket(ours)
    reader = ul.PduReader(counting, initial_size=64)  # type: ignore[arg-type]
    for pdu_type, body in zip(types, bodies, strict=True):
        got_type, got = reader.read(1 << 20)
        assert (got_type, bytes(got)) == (pdu_type, body)
        assert reader.header() == struct.pack(">BxL", pdu_type, len(body))
    assert counting.reads == 1 + len(bodies)  # the first header, then one read a PDU


def test_a_next_header_read_in_part_is_completed(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """The bytes after a body are the next header's first few: the rest is read later."""
    ours, theirs = pair
    first = ul.encode_pdu(ul.P_DATA_TF, _pdv(1, 0x02, b"x" * 100))
    second = ul.encode_pdu(ul.A_RELEASE_RQ, b"\x00" * 4)
    theirs.sendall(first + second[:3])
    reader = ul.PduReader(ours)
    assert reader.read(1000)[0] == ul.P_DATA_TF
    theirs.sendall(second[3:])
    pdu_type, body = reader.read(1000)
    assert (pdu_type, bytes(body)) == (ul.A_RELEASE_RQ, b"\x00" * 4)
    assert reader.header() == second[:6]


def test_pdu_longer_than_the_limit_is_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(ul.encode_pdu(ul.P_DATA_TF, _pdv(1, 0, b"x" * 100)))
    with pytest.raises(ul.UpperLayerError) as refused:
        ul.PduReader(ours).read(50)
    assert refused.value.reason == ul.REASON_INVALID_PARAMETER


def test_unknown_pdu_type_is_unrecognized(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(b"\x09\x00\x00\x00\x00\x00")
    with pytest.raises(ul.UpperLayerError) as refused:
        ul.PduReader(ours).read(1000)
    assert refused.value.reason == ul.REASON_UNRECOGNIZED_PDU


def test_peer_closing_mid_pdu(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(ul.encode_pdu(ul.P_DATA_TF, _pdv(1, 0, b"x" * 100))[:50])
    theirs.close()
    with pytest.raises(ul.PeerClosed) as closed:
        ul.PduReader(ours).read(1000)
    assert closed.value.reason is None  # nobody to send an A-ABORT to


def test_silent_peer_times_out(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    ours.settimeout(0.2)
    theirs.sendall(b"\x04\x00")  # half a header, then nothing
    with pytest.raises(ul.PduTimeout):
        ul.PduReader(ours).read(1000)


def test_several_pdvs_in_one_pdu() -> None:
    body = _pdv(1, 0x03, b"command") + _pdv(1, 0x00, b"data 1") + _pdv(3, 0x02, b"")
    items = [
        (cx, ctl, bytes(memoryview(body)[a:b])) for cx, ctl, a, b in ul.pdv_items(memoryview(body))
    ]
    assert items == [(1, 0x03, b"command"), (1, 0x00, b"data 1"), (3, 0x02, b"")]


@pytest.mark.parametrize(
    "body",
    [
        b"",  # no item at all
        struct.pack(">L", 1) + b"\x01",  # too short for context ID and control header
        struct.pack(">L", 50) + b"\x01\x00abc",  # runs past the PDU
        _pdv(1, 0, b"ok") + b"\x00\x00",  # a truncated second item
    ],
)
def test_malformed_pdv_items_are_refused(body: bytes) -> None:
    with pytest.raises(ul.UpperLayerError) as refused:
        list(ul.pdv_items(memoryview(body)))
    assert refused.value.reason == ul.REASON_INVALID_PARAMETER


def test_encoded_pdus_decode_with_pynetdicom() -> None:
    abort = pdu_classes.A_ABORT_RQ()
    abort.decode(ul.encode_abort(ul.SOURCE_SERVICE_PROVIDER, ul.REASON_UNEXPECTED_PDU))
    assert (abort.source, abort.reason_diagnostic) == (0x02, 0x02)
    release = pdu_classes.A_RELEASE_RP()
    release.decode(ul.RELEASE_RP)
    data = pdu_classes.P_DATA_TF()
    data.decode(ul.encode_p_data(5, 0x03, b"\x01\x02"))
    assert data.presentation_data_value_items[0].presentation_context_id == 5
    assert data.presentation_data_value_items[0].presentation_data_value == b"\x03\x01\x02"
