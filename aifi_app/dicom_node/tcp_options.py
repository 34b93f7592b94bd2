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

_HAS_QUICKACK = hasattr(socket, "TCP_QUICKACK")


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
