"""The listener: a thread per connection, TLS handshakes on that thread, stop cuts all."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aifi_app.dicom_node.association_listener import AssociationListener
from aifi_app.net.tls import TlsIdentity, client_context, server_context
from tests.helpers.file_keyring import file_keyring
from tests.helpers.pki import CertificateAuthority, Issued


class Served:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, str]] = []
        self.refused: list[tuple[str, str]] = []
        self.done = threading.Event()

    def __call__(self, sock: socket.socket, address: str, tls_peer: str | None) -> None:
        data = sock.recv(100)
        self.calls.append((address, tls_peer, data.decode()))
        sock.sendall(b"bye")
        self.done.set()

    def on_tls_refused(self, address: str, reason: str) -> None:
        self.refused.append((address, reason))


@pytest.fixture
def pki(tmp_path: Path) -> Iterator[tuple[CertificateAuthority, Issued, Issued]]:
    ca = CertificateAuthority.create(tmp_path)
    with file_keyring(tmp_path):
        yield ca, ca.issue(tmp_path, "aifi-node"), ca.issue(tmp_path, "modality")


def test_each_connection_is_served_with_the_peer_address() -> None:
    served = Served()
    listener = AssociationListener(("127.0.0.1", 0), served, timeout=5)
    try:
        for n in range(3):
            with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
                sock.sendall(f"hello {n}".encode())
                assert sock.recv(10) == b"bye"
        assert served.calls == [("127.0.0.1", None, f"hello {n}") for n in range(3)]
    finally:
        listener.stop()


def test_tls_handshake_runs_on_the_connection_thread_and_names_the_peer(
    pki: tuple[CertificateAuthority, Issued, Issued],
) -> None:
    ca, node, modality = pki
    served = Served()
    context = server_context(
        TlsIdentity(node.certificate, node.key),
        ca_file=ca.certificate_file,
        require_client_certificate=True,
    )
    listener = AssociationListener(
        ("127.0.0.1", 0),
        served,
        timeout=5,
        ssl_context=context,
        on_tls_refused=served.on_tls_refused,
    )
    try:
        # a client that never starts its handshake does not hold up the next one
        silent = socket.create_connection(("127.0.0.1", listener.port), timeout=5)
        client = client_context(
            ca_file=ca.certificate_file,
            identity=TlsIdentity(modality.certificate, modality.key),
            check_hostname=False,
        )
        raw = socket.create_connection(("127.0.0.1", listener.port), timeout=5)
        with client.wrap_socket(raw) as tls:
            tls.sendall(b"hello")
            assert tls.recv(10) == b"bye"
        assert served.calls == [("127.0.0.1", "modality", "hello")]
        silent.close()
    finally:
        listener.stop()
    assert served.refused and served.refused[0][0] == "127.0.0.1"


def test_stop_cuts_a_connection_still_in_its_handshake(
    pki: tuple[CertificateAuthority, Issued, Issued],
) -> None:
    ca, node, _ = pki
    served = Served()
    context = server_context(
        TlsIdentity(node.certificate, node.key),
        ca_file=ca.certificate_file,
        require_client_certificate=False,
    )
    listener = AssociationListener(
        ("127.0.0.1", 0),
        served,
        timeout=600,
        ssl_context=context,
        on_tls_refused=served.on_tls_refused,
    )
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as silent:
        silent.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        deadline = time.monotonic() + 10
        while not any(t.name == "DicomAssociation" for t in threading.enumerate()):
            assert time.monotonic() < deadline, "the connection was not accepted"
            time.sleep(0.01)
        before = set(threading.enumerate())
        listener.stop(wait_seconds=30)
        # the handshake was cut (not left to its 600 s timeout) and its thread ended
        assert not [t for t in before if t.name == "DicomAssociation" and t.is_alive()]
        assert len(served.refused) == 1
        assert served.calls == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", listener.port), timeout=1).close()


def test_a_plain_client_on_the_tls_listener_is_refused(
    pki: tuple[CertificateAuthority, Issued, Issued],
) -> None:
    ca, node, _ = pki
    served = Served()
    context = server_context(
        TlsIdentity(node.certificate, node.key),
        ca_file=ca.certificate_file,
        require_client_certificate=False,
    )
    listener = AssociationListener(
        ("127.0.0.1", 0),
        served,
        timeout=5,
        ssl_context=context,
        on_tls_refused=served.on_tls_refused,
    )
    try:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
            sock.sendall(b"\x01\x00\x00\x00\x00\x10" + b"\x00" * 16)  # an A-ASSOCIATE-RQ
            with contextlib.suppress(OSError):  # a TLS alert, a close or a reset
                sock.recv(100)
        deadline = time.monotonic() + 10
        while not served.refused and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        listener.stop()
    assert len(served.refused) == 1 and served.refused[0][0] == "127.0.0.1"
    assert served.calls == []
