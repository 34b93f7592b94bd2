"""Socket options for DICOM associations: no waiting on Nagle's algorithm or delayed ACKs.

DCMTK and Orthanc, as hospitals run them, keep Nagle's algorithm on. A C-STORE response
they write in two segments then waits for our acknowledgement of the first, and a Linux
receiver acknowledges late (delayed ACK, up to 40 ms) unless it is in quick-ack mode:
40 ms a file. Both our acceptor (:mod:`~aifi_app.dicom_node.storage_acceptor`) and our
requestor (:mod:`~aifi_app.dicom_node.requestor`) set TCP_NODELAY once and re-arm
TCP_QUICKACK before every read.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys

_HAS_QUICKACK = hasattr(socket, "TCP_QUICKACK")
_KERNEL_TIMEOUTS = sys.platform == "linux"


def tune_socket(sock: socket.socket) -> None:
    """TCP_NODELAY (our writes leave at once) and TCP_QUICKACK (we acknowledge at once).

    Quick-ack mode does not last on Linux: re-arm it before each read (:func:`quickack`).
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    quickack(sock)


def quickack(sock: socket.socket) -> None:
    """Ask the kernel to acknowledge the next segments at once (Linux; no-op elsewhere)."""
    if _HAS_QUICKACK:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def set_timeout(sock: socket.socket, seconds: float) -> None:
    """Each read and write on ``sock`` gives up after ``seconds`` (a read raises
    :class:`TimeoutError`, or on Linux :class:`BlockingIOError`; a write one of them).

    On Linux a plain socket stays blocking and the kernel keeps the time (``SO_RCVTIMEO``,
    ``SO_SNDTIMEO``): Python's own timeout (``settimeout``) makes the socket non-blocking
    and polls before every ``recv`` and ``send``, one more system call each, a dozen an
    instance of a CT slice. A TLS socket, and any socket elsewhere, uses ``settimeout``.
    """
    if not (_KERNEL_TIMEOUTS and type(sock) is socket.socket and seconds > 0):
        sock.settimeout(seconds)
        return
    sock.settimeout(None)
    whole = int(seconds)
    value = struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
