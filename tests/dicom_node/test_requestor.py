"""The lean requestor on its own: what it negotiates, and the socket it sends on."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from aifi_app.dicom_node.requestor import (
    OUR_MAX_PDU,
    UNLIMITED_PEER_PDU,
    Link,
    LinkLost,
    Peer,
    associate,
)
from tests.helpers.ports import free_port


def _scp(max_pdu: int) -> Iterator[Peer]:
    ae = AE(ae_title="SCP")
    ae.maximum_pdu_size = max_pdu
    ae.add_supported_context(Verification, ImplicitVRLittleEndian)
    ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
    port = free_port()
    server: Any = ae.start_server(("127.0.0.1", port), block=False)
    try:
        yield Peer("SCP", "127.0.0.1", port)
    finally:
        server.shutdown()


@pytest.fixture
def scp() -> Iterator[Peer]:
    yield from _scp(16384)


@pytest.fixture
def unlimited_scp() -> Iterator[Peer]:
    yield from _scp(0)


def test_accepted_and_refused_contexts_and_the_peers_pdu_size(scp: Peer) -> None:
    ct_implicit = (str(CTImageStorage), str(ImplicitVRLittleEndian))
    ct_explicit = (str(CTImageStorage), str(ExplicitVRLittleEndian))
    verify = (str(Verification), str(ImplicitVRLittleEndian))
    link = associate(
        scp, calling_ae_title="AIFI", contexts=[ct_implicit, ct_explicit, verify], timeout=10
    )
    try:
        assert link.accepted == {ct_explicit: 3, verify: 5}
        assert link.refused == {ct_implicit: "transfer syntax not supported"}
        assert link.peer_max_pdu == 16384
        assert link.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert link.sock.gettimeout() == 10
    finally:
        link.release()
    assert not link.open


def test_a_peer_without_a_maximum_gets_our_default(unlimited_scp: Peer) -> None:
    verify = (str(Verification), str(ImplicitVRLittleEndian))
    link = associate(unlimited_scp, calling_ae_title="AIFI", contexts=[verify], timeout=10)
    assert link.peer_max_pdu == UNLIMITED_PEER_PDU
    link.release()


def test_a_peer_that_closes_mid_message_is_a_lost_link() -> None:
    a, b = socket.socketpair()
    link = Link(a, Peer("X", "127.0.0.1", 1), 5.0, OUR_MAX_PDU, {}, {})
    b.sendall(bytes([0x04, 0, 0, 0, 0x10, 0]) + b"\0" * 10)  # a P-DATA-TF cut short
    b.close()
    with pytest.raises(LinkLost, match="closed the connection"):
        link.read_pdu()
    link.close()


def test_proposing_nothing_is_a_programming_error(scp: Peer) -> None:
    with pytest.raises(ValueError, match="1 to 128"):
        associate(scp, calling_ae_title="AIFI", contexts=[], timeout=10)
