"""The node's listening socket: accepts connections and serves each on a thread of its own.

The accepting thread only accepts: a TLS listener wraps the accepted socket without its
handshake, which then runs on the association's thread within the network timeout (one
silent client must not hold up the others); a failed handshake is reported through
``on_tls_refused``. :meth:`AssociationListener.stop` closes the listening socket, cuts
every association still open and waits (briefly) for their threads.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable

from aifi_app.dicom_node.tcp_options import tune_socket
from aifi_app.fault_logging import log_fault
from aifi_app.net.tls import describe_tls_error, peer_certificate_subject

log = logging.getLogger(__name__)

TlsRefusedHook = Callable[[str, str], None]
"""(peer IP address, reason in words) for a TLS handshake our listener refused."""

Serve = Callable[[socket.socket, str, "str | None"], None]
"""Serves one connection: (socket, peer IP address, TLS peer's common name or None)."""

HandOff = Callable[[socket.socket, str], bool]
"""Offers an accepted plain connection (socket, peer IP address) to a receiver process
(:mod:`aifi_app.dicom_node.receiver_pool`): True if one took it (the listener then
leaves it alone), False to serve it on a thread here."""

_ACCEPT_POLL_SECONDS = 0.25  # how soon the accepting thread notices stop()


class AssociationListener:
    """Listens on ``address``; each accepted connection is served by ``serve`` on its thread."""

    def __init__(
        self,
        address: tuple[str, int],
        serve: Serve,
        *,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        on_tls_refused: TlsRefusedHook | None = None,
        hand_off: HandOff | None = None,
    ) -> None:
        self._serve = serve
        self._hand_off = hand_off
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._on_tls_refused = on_tls_refused
        self._socket = socket.create_server(address, backlog=64)
        self._socket.settimeout(_ACCEPT_POLL_SECONDS)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._open: dict[threading.Thread, socket.socket] = {}
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"DicomListener@{self.port}", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, address = self._socket.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stopping.is_set():
                    return
                log.warning("accepting a connection failed (%s)", type(exc).__name__)
                self._stopping.wait(_ACCEPT_POLL_SECONDS)  # e.g. out of file descriptors
                continue
            if self._hand_off is not None and self._ssl_context is None:
                try:
                    if self._hand_off(conn, str(address[0])):
                        continue
                except Exception as exc:  # never lose the connection: serve it here
                    log_fault(log, "handing a connection to a receiver process failed", exc)
            thread = threading.Thread(
                target=self._handle, args=(conn, str(address[0])), name="DicomAssociation"
            )
            thread.daemon = True
            with self._lock:
                self._open[thread] = conn
            thread.start()

    def _handle(self, conn: socket.socket, address: str) -> None:
        try:
            conn.settimeout(self._timeout)
            tune_socket(conn)
            tls_peer: str | None = None
            if self._ssl_context is not None:
                tls = self._handshake(conn, address)
                if tls is None:
                    return
                conn, tls_peer = tls, peer_certificate_subject(tls)
            self._serve(conn, address, tls_peer)
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            with self._lock:
                self._open.pop(threading.current_thread(), None)

    def _handshake(self, conn: socket.socket, address: str) -> ssl.SSLSocket | None:
        """The TLS handshake within the network timeout; reports and closes on failure."""
        assert self._ssl_context is not None
        tls: ssl.SSLSocket | None = None
        try:
            with self._lock:  # stop() cuts ``conn`` before this, the TLS socket after
                tls = self._ssl_context.wrap_socket(
                    conn, server_side=True, do_handshake_on_connect=False
                )
                self._open[threading.current_thread()] = tls
            tls.settimeout(self._timeout)
            tls.do_handshake()
        except OSError as exc:  # ssl.SSLError, a timeout or a reset
            reason = describe_tls_error(exc)
            log.warning("TLS handshake from %s refused: %s", address, reason)
            if self._on_tls_refused is not None:
                self._on_tls_refused(address, reason)
            with contextlib.suppress(OSError):
                (tls or conn).close()
            return None
        return tls

    def stop(self, wait_seconds: float = 5.0) -> None:
        """Stop accepting, cut the open associations and wait for their threads."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._socket.close()
        self._thread.join(wait_seconds)
        with self._lock:
            open_now = dict(self._open)
        for conn in open_now.values():
            with contextlib.suppress(OSError):
                # the socket's own shutdown, also for a TLS one: ``SSLSocket.shutdown``
                # drops its TLS object first, and a handshake about to start on another
                # thread then fails with AttributeError instead of a reported refusal
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
        for thread in open_now:
            thread.join(wait_seconds)
