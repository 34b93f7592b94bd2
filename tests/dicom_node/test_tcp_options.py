"""The association sockets' options: the kernel keeps the network timeout on Linux."""

from __future__ import annotations

import socket
import struct
import sys
import time
from collections.abc import Iterator

import pytest

from aifi_app.dicom_node import upper_layer as ul
from aifi_app.dicom_node.tcp_options import set_timeout

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="SO_RCVTIMEO is used on Linux")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


@linux_only
def test_a_plain_socket_stays_blocking_and_the_kernel_keeps_the_time(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    set_timeout(ours, 2.5)
    assert ours.gettimeout() is None  # no poll before each read and write
    seconds, micros = struct.unpack(
        "@ll", ours.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.calcsize("@ll"))
    )
    assert seconds + micros / 1e6 == pytest.approx(2.5, abs=0.01)
    seconds, micros = struct.unpack(
        "@ll", ours.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.calcsize("@ll"))
    )
    assert seconds + micros / 1e6 == pytest.approx(2.5, abs=0.01)


def test_a_silent_peer_still_times_out(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    set_timeout(ours, 0.2)
    theirs.sendall(b"\x04\x00")  # half a header, then nothing
    started = time.monotonic()
    with pytest.raises(ul.PduTimeout):
        ul.PduReader(ours).read(1000)
    assert 0.1 < time.monotonic() - started < 5


def test_a_peer_that_stops_reading_fails_the_write(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    set_timeout(ours, 0.2)
    with pytest.raises(OSError):  # (TimeoutError, or the kernel's EAGAIN)
        ours.sendall(b"x" * (64 << 20))  # more than the socket buffers hold


def test_a_tls_socket_keeps_pythons_timeout() -> None:
    """Anything but a plain socket (an ``ssl.SSLSocket``) gets ``settimeout``."""

    class Wrapped(socket.socket):
        pass

    with Wrapped(socket.AF_INET, socket.SOCK_STREAM) as sock:
        set_timeout(sock, 1.5)
        assert sock.gettimeout() == 1.5
