"""The low-latency acceptor: pinned to the pynetdicom code it copies, and working over loopback."""

from __future__ import annotations

import hashlib
import inspect
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pynetdicom
import pytest
from pynetdicom import AE, evt
from pynetdicom.ae import ApplicationEntity
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.sop_class import CTImageStorage, Verification
from pynetdicom.transport import AssociationSocket, RequestHandler

from aifi_app.dicom_node import low_latency
from aifi_app.sample_studies import ct_series, demo_patient
from tests.helpers.ports import free_port

# What low_latency.py was copied from (pynetdicom 3.0.4). A new pynetdicom that changes
# any of these fails here: compare the new code with the copies and carry the change over.
UPSTREAM = {
    "DULServiceProvider.run_reactor": (DULServiceProvider.run_reactor, "e3a10eb3a0931e48"),
    "Association._run_reactor": (Association._run_reactor, "f28838c5559e462a"),
    "RequestHandler._create_association": (
        RequestHandler._create_association,
        "05c8d12b79863cdb",
    ),
    "AssociationSocket.recv": (AssociationSocket.recv, "6bc20a33b1b7cfe7"),
    "DULServiceProvider.send_pdu": (DULServiceProvider.send_pdu, "7cbce5da8594124e"),
    "DULServiceProvider.kill_dul": (DULServiceProvider.kill_dul, "5ceccf8dd01c2072"),
    "ApplicationEntity._create_socket": (
        ApplicationEntity._create_socket,
        "f56bca8888e1ce9f",
    ),
}


def test_pynetdicom_is_the_version_the_copies_were_made_from() -> None:
    assert pynetdicom.__version__.startswith("3.0."), pynetdicom.__version__
    changed = [
        name
        for name, (func, digest) in UPSTREAM.items()
        if hashlib.sha256(inspect.getsource(func).encode()).hexdigest()[:16] != digest
    ]
    assert changed == [], (
        f"pynetdicom changed what aifi_app/dicom_node/low_latency.py copies: {changed}"
    )


@pytest.fixture
def server() -> Iterator[tuple[int, list[Any]]]:
    seen: list[Any] = []

    def on_store(event: Any) -> int:
        sock = event.assoc.dul.socket.socket
        seen.append(
            (
                type(event.assoc),
                type(event.assoc.dul),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
                event.dataset,
            )
        )
        return 0x0000

    ae = AE("LOWLAT")
    ae.acse_timeout = 2  # an acceptor whose peer vanished mid-request gives up after this
    ae.add_supported_context(Verification)
    ae.add_supported_context(CTImageStorage)
    port = free_port()
    srv = low_latency.start_server(
        ae,
        ("127.0.0.1", port),
        [(evt.EVT_C_STORE, on_store), (evt.EVT_C_ECHO, lambda e: 0x0000)],
    )
    yield port, seen
    srv.shutdown()


def _requestor(cls: type[AE] = AE) -> AE:
    ae = cls("SCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    ae.maximum_pdu_size = 16384  # many PDUs per data set
    return ae


def _wait(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_store_echo_and_release(server: tuple[int, list[Any]]) -> None:
    port, seen = server
    slices = list(ct_series(demo_patient(1), 3, size=128))
    assoc = _requestor().associate(
        "127.0.0.1", port, ae_title="LOWLAT", evt_handlers=low_latency.requestor_handlers()
    )
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    for ds in slices:
        assert assoc.send_c_store(ds).Status == 0
    assoc.release()
    assert assoc.is_released
    assert [s[:3] for s in seen] == [
        (low_latency.LowLatencyAssociation, low_latency.LowLatencyDUL, 1)
    ] * 3
    assert [s[3].PixelData for s in seen] == [ds.PixelData for ds in slices]


def test_peer_abort_ends_the_acceptor(server: tuple[int, list[Any]]) -> None:
    port, _ = server
    before = {t for t in threading.enumerate() if t.name.startswith("AcceptorThread")}
    assoc = _requestor().associate("127.0.0.1", port, ae_title="LOWLAT")
    assert assoc.is_established
    assoc.abort()
    _wait(
        lambda: (
            not {t for t in threading.enumerate() if t.name.startswith("AcceptorThread")} - before
        )
    )


def test_peer_closing_the_socket_ends_the_acceptor(server: tuple[int, list[Any]]) -> None:
    port, _ = server
    before = {t for t in threading.enumerate() if t.name.startswith("AcceptorThread")}
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.sendall(b"\x01\x00\x00\x00\x10\x00")  # the start of an A-ASSOCIATE-RQ, then gone
    _wait(
        lambda: (
            not {t for t in threading.enumerate() if t.name.startswith("AcceptorThread")} - before
        )
    )


def test_low_latency_requestor_stores_and_releases(server: tuple[int, list[Any]]) -> None:
    port, seen = server
    slices = list(ct_series(demo_patient(2), 2, size=128))
    assoc = _requestor(low_latency.LowLatencyAE).associate("127.0.0.1", port, ae_title="LOWLAT")
    assert assoc.is_established
    assert isinstance(assoc, low_latency.RequestorOnly)
    assert isinstance(assoc.dul.socket, low_latency.LowLatencySocket)
    assert assoc.dul.socket.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    for ds in slices:
        assert assoc.send_c_store(ds).Status == 0
    assoc.release()
    assert assoc.is_released
    assert [s[3].PixelData for s in seen] == [ds.PixelData for ds in slices]


def test_requestor_socket_gets_nodelay(server: tuple[int, list[Any]]) -> None:
    port, _ = server
    assoc = _requestor().associate(
        "127.0.0.1", port, ae_title="LOWLAT", evt_handlers=low_latency.requestor_handlers()
    )
    try:
        raw = assoc.dul.socket.socket
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        assoc.release()


def test_a_pdu_read_in_pieces_is_whole() -> None:
    # recv_into with short reads: a socketpair that delivers a PDU in small pieces
    a, b = socket.socketpair()
    try:
        payload = bytes(range(256)) * 1000

        def feed() -> None:
            for i in range(0, len(payload), 777):
                b.sendall(payload[i : i + 777])
            b.close()

        feeder = threading.Thread(target=feed)
        feeder.start()
        sock = low_latency.LowLatencySocket.__new__(low_latency.LowLatencySocket)
        sock.socket = a
        assert bytes(sock.recv(len(payload))) == payload
        assert bytes(sock.recv(10)) == b""  # the peer closed: what there is, here nothing
        feeder.join()
    finally:
        a.close()
